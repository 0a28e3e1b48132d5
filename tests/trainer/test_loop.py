"""The loop end to end on a small `shapes` benchmark: determinism, exact resume after SIGKILL,
one MLflow run per trial key, divergence, atomic checkpoints, memory of a tiny trial."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
import torch
from mlflow.tracking import MlflowClient

from trainer.checkpoint import CHECKPOINT_NAME, load_latest, save_atomic
from trainer.config import TrainConfig, build_config
from trainer.keys import trial_key
from trainer.loop import TrialDiverged, train
from trainer.trial import run_trial

SMALL = {
    "data.num_train_images": 120, "data.num_val_images": 20, "data.num_test_images": 30,
    "data.captions_per_image": 2, "data.batch_size": 16, "schedule.steps": 24,
    "schedule.warmup_steps": 4, "runtime.checkpoint_every": 8, "runtime.log_every": 4,
    "eval.rerank_k": 4, "runtime.threads": 1, "objectives.itc.queue_size": 64,
    "init.warm_start": False,
}


def small_config(tmp: Path, **dotted: object) -> TrainConfig:
    return build_config("tiny", dotted={**SMALL, "data.root": str(tmp / "data"), **dotted})


def test_same_seed_same_metrics_and_seed_matters(tmp_path: Path) -> None:
    cfg = small_config(tmp_path)
    a = train(cfg, seed=3)
    b = train(cfg, seed=3)
    c = train(cfg, seed=4)
    assert a.metrics == b.metrics
    timing = {"samples_per_s"}
    assert {k: v for k, v in a.history.items() if k not in timing} == {
        k: v for k, v in b.history.items() if k not in timing
    }
    assert a.history["loss"] != c.history["loss"]
    assert a.protocol == "itc+itm_rerank@4"


def _uri(tmp: Path) -> str:
    return f"sqlite:///{tmp / 'mlflow.db'}"


def _child(cfg: TrainConfig, seed: int, uri: str, ckpt: Path) -> subprocess.Popen:
    code = (
        "import sys; from trainer.config import TrainConfig;"
        "from trainer.trial import run_trial;"
        "cfg=TrainConfig.model_validate_json(sys.argv[1]);"
        "run_trial(cfg, int(sys.argv[2]), tracking_uri=sys.argv[3], experiment_name='resume',"
        " checkpoint_dir=sys.argv[4])"
    )
    return subprocess.Popen(
        [sys.executable, "-c", code, cfg.model_dump_json(), str(seed), uri, str(ckpt)],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )


def test_killed_and_resumed_run_matches_uninterrupted_and_keeps_one_mlflow_run(
    tmp_path: Path,
) -> None:
    cfg = small_config(tmp_path, **{"schedule.steps": 40, "runtime.checkpoint_every": 10})
    uri = _uri(tmp_path)
    reference = train(cfg, seed=1)

    ckpt = tmp_path / "ckpt"
    child = _child(cfg, 1, uri, ckpt)
    deadline = time.monotonic() + 240
    while not (ckpt / CHECKPOINT_NAME).exists():
        assert child.poll() is None, child.stderr.read().decode()[-3000:]
        assert time.monotonic() < deadline, "no checkpoint appeared"
        time.sleep(0.02)
    os.kill(child.pid, signal.SIGKILL)
    child.wait()
    killed_at = load_latest(ckpt)["step"]
    assert 0 < killed_at < 40, "the child must die mid-run"

    client = MlflowClient(uri)
    exp = client.get_experiment_by_name("resume")
    (orphan,) = client.search_runs([exp.experiment_id])
    assert orphan.info.status == "RUNNING"  # what a SIGKILL leaves behind

    resumed = run_trial(cfg, 1, tracking_uri=uri, experiment_name="resume", checkpoint_dir=ckpt)
    assert resumed.metrics == reference.metrics
    runs = client.search_runs(
        [exp.experiment_id], filter_string=f"tags.trial_key = '{trial_key(cfg, 1)}'"
    )
    assert len(runs) == 1
    assert runs[0].info.run_id == orphan.info.run_id
    assert runs[0].info.status == "FINISHED"
    assert runs[0].data.metrics["mean_recall"] == pytest.approx(reference.metrics["mean_recall"])
    assert runs[0].data.tags["config_hash"] == cfg.config_hash()
    # the loss curve has each step once, even across the kill
    steps = [m.step for m in client.get_metric_history(orphan.info.run_id, "loss")]
    assert steps == sorted(set(steps))

    again = run_trial(cfg, 1, tracking_uri=uri, experiment_name="resume", checkpoint_dir=ckpt)
    assert again.metrics == reference.metrics  # finished: returned, not retrained
    assert len(client.search_runs([exp.experiment_id])) == 1


def test_divergence_names_the_step_and_fails_the_run(tmp_path: Path) -> None:
    cfg = small_config(tmp_path, **{"optim.lr": 1e12, "schedule.warmup_steps": 0})
    uri = _uri(tmp_path)
    with pytest.raises(TrialDiverged, match=r"diverged at step \d+"):
        run_trial(cfg, 0, tracking_uri=uri, experiment_name="nan", checkpoint_dir=tmp_path / "c")
    client = MlflowClient(uri)
    (run,) = client.search_runs([client.get_experiment_by_name("nan").experiment_id])
    assert run.info.status == "FAILED"


class _Unpicklable:
    def __reduce__(self):  # noqa: ANN204
        raise RuntimeError("crash while writing")


def test_checkpoint_write_is_atomic(tmp_path: Path) -> None:
    save_atomic({"step": 1, "w": torch.ones(3)}, tmp_path)
    with pytest.raises(RuntimeError, match="crash while writing"):
        save_atomic({"step": 2, "w": torch.zeros(1000), "bad": _Unpicklable()}, tmp_path)
    assert load_latest(tmp_path)["step"] == 1
    assert [p.name for p in tmp_path.iterdir()] == [CHECKPOINT_NAME]


def test_tiny_trial_stays_under_1_5_gib_rss(tmp_path: Path) -> None:
    """The real tiny preset (its full data, its warm start, shortened), a short run, as the CLI
    runs it."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "trainer", "tiny", "--set", "schedule.steps=10",
         "--set", "runtime.threads=1", "--set", "init.steps=30",
         "--set", f"data.root={tmp_path / 'data'}", "--tracking-uri", _uri(tmp_path),
         "--checkpoint-dir", str(tmp_path / "ckpt")],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
    )
    peak = 0
    watched = psutil.Process(proc.pid)
    while proc.poll() is None:
        try:
            peak = max(peak, watched.memory_info().rss)
        except psutil.NoSuchProcess:
            break
        time.sleep(0.05)
    out = proc.stdout.read().decode()
    assert proc.returncode == 0
    assert json.loads(out)["steps"] == 10
    assert peak < 1.5 * 2**30, f"peak RSS {peak / 2**30:.2f} GiB"
