"""The shared warm start: content-addressed, computed once, crash-safe, loaded into every arm,
and invisible to the trial's own random stream."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from mlflow.tracking import MlflowClient

from trainer.config import ConfigError, TrainConfig, build_config
from trainer.loop import Trainer, train
from trainer.warm_start import (
    WARM_START_EXPERIMENT,
    ensure_warm_start,
    warm_start_key,
    warm_start_path,
)

SMALL = {
    "data.num_train_images": 60, "data.num_val_images": 10, "data.num_test_images": 20,
    "data.captions_per_image": 2, "data.batch_size": 16, "schedule.steps": 6,
    "schedule.warmup_steps": 1, "eval.rerank_k": 4, "runtime.threads": 1,
    "init.warm_start": True, "init.steps": 8, "init.batch_size": 16,
}


def config(root: Path, **dotted: object) -> TrainConfig:
    return build_config("tiny", dotted={**SMALL, "data.root": str(root / "data"), **dotted})


def test_key_covers_what_shapes_the_weights_and_nothing_else(tmp_path: Path) -> None:
    base = warm_start_key(config(tmp_path))
    for same in ({"objectives.itc.enabled": False}, {"optim.lr": 5e-4},
                 {"model.text.pooling": "cls"}, {"schedule.steps": 99}, {"data.batch_size": 8},
                 {"model.embed_dim": 32}):
        assert warm_start_key(config(tmp_path, **same)) == base, same
    for other in ({"init.seed": 1}, {"init.steps": 9}, {"init.lr": 3e-3},
                  {"data.num_train_images": 61}, {"data.benchmark_seed": 2},
                  {"model.vision.num_layers": 1}, {"model.text.hidden_size": 32,
                                                    "model.vision.hidden_size": 32}):
        assert warm_start_key(config(tmp_path, **other)) != base, other


def test_every_arm_and_seed_starts_from_the_same_encoders(tmp_path: Path) -> None:
    warm = ensure_warm_start(config(tmp_path))
    assert warm.state and all(n.startswith(("vision.", "text.")) for n in warm.state)
    a = Trainer(config(tmp_path), 0, checkpoint_dir=None)
    b = Trainer(config(tmp_path, **{"objectives.mlm.enabled": False}), 1, checkpoint_dir=None,
                benchmark=a.bench)
    for t in (a, b):
        params = dict(t.pretrainer.model.named_parameters())
        for name, value in warm.state.items():
            assert torch.equal(params[name], value), name
        if t.pretrainer.model_m is not None:  # the EMA copy starts equal to the online model
            for (n, p), (_, p_m) in zip(t.pretrainer.model.named_parameters(),
                                        t.pretrainer.model_m.named_parameters(), strict=True):
                assert torch.equal(p, p_m), n
    # what the stage did not train keeps each trial's own random init
    fusion_a = next(a.pretrainer.model.fusion.parameters())
    fusion_b = next(b.pretrainer.model.fusion.parameters())
    assert not torch.equal(fusion_a, fusion_b)
    # and the warm start did change the encoders from a plain random init
    cold = Trainer(config(tmp_path, **{"init.warm_start": False}), 0, checkpoint_dir=None,
                   benchmark=a.bench)
    name = next(iter(warm.state))
    assert not torch.equal(dict(cold.pretrainer.model.named_parameters())[name], warm.state[name])


def test_a_missing_warm_start_does_not_shift_the_trial_stream(tmp_path: Path) -> None:
    cfg = config(tmp_path)
    first = train(cfg, seed=2)  # computes the warm start
    assert warm_start_path(cfg).exists()
    second = train(cfg, seed=2)  # reads it
    assert first.metrics == second.metrics


def test_computed_once_with_one_mlflow_run_holding_the_weights(tmp_path: Path) -> None:
    cfg = config(tmp_path)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    warm = ensure_warm_start(cfg, tracking_uri=uri)
    mtime = warm.path.stat().st_mtime_ns
    again = ensure_warm_start(cfg, tracking_uri=uri)
    assert again.path.stat().st_mtime_ns == mtime
    client = MlflowClient(uri)
    exp = client.get_experiment_by_name(WARM_START_EXPERIMENT)
    runs = client.search_runs([exp.experiment_id])
    assert len(runs) == 1 and runs[0].info.status == "FINISHED"
    assert runs[0].data.tags["warm_start_key"] == warm.key
    assert runs[0].data.metrics["warm_acc_colour"] > 0
    names = {a.path for a in client.list_artifacts(runs[0].info.run_id)}
    assert warm.path.name in names


def _compute_in_child(cfg: TrainConfig, cwd: Path) -> subprocess.Popen:
    code = ("import sys; from trainer.config import TrainConfig;"
            "from trainer.warm_start import ensure_warm_start;"
            "ensure_warm_start(TrainConfig.model_validate_json(sys.argv[1]))")
    return subprocess.Popen([sys.executable, "-c", code, cfg.model_dump_json()], cwd=cwd,
                            env={**os.environ, "PYTHONPATH": str(Path.cwd())},
                            stderr=subprocess.DEVNULL)


def test_two_processes_compute_it_once(tmp_path: Path) -> None:
    cfg = config(tmp_path, **{"init.steps": 40})
    procs = [_compute_in_child(cfg, tmp_path) for _ in range(2)]
    assert [p.wait(timeout=300) for p in procs] == [0, 0]
    files = list(warm_start_path(cfg).parent.glob("*.pt"))
    assert files == [warm_start_path(cfg)]
    assert not list(warm_start_path(cfg).parent.glob("*.tmp"))


def test_a_crash_while_computing_leaves_nothing_a_trial_would_load(tmp_path: Path) -> None:
    cfg = config(tmp_path, **{"init.steps": 300})
    path = warm_start_path(cfg)
    proc = _compute_in_child(cfg, tmp_path)
    deadline = time.monotonic() + 120
    while not path.with_suffix(".lock").exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    time.sleep(2)  # inside the stage: the lock is held, nothing is written yet
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not path.exists()
    # the lock died with its holder: the next caller computes the same key in full
    warm = ensure_warm_start(cfg)
    assert warm.path == path and warm.summary["recipe"]["steps"] == 300
    assert [p.name for p in path.parent.glob("*.pt")] == [path.name]


def test_unsupported_data_is_refused_naming_the_field(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as err:  # at validation, before any worker sees it
        config(tmp_path, **{"data.dataset": "coco"})
    assert err.value.field == "init.warm_start"
    with pytest.raises(ConfigError) as err:
        config(tmp_path, **{"model.text.pretrained": str(tmp_path)})
    assert err.value.field == "init.warm_start"
