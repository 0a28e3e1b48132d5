"""Tracking against a real MLflow store (SQLite in tmp_path): the stack tags every trial run
carries, and experiments created race-safely and marked as model training."""

from __future__ import annotations

import threading
from importlib import metadata
from pathlib import Path

import torch
from mlflow.tracking import MlflowClient

from trainer.config import build_config
from trainer.environment import (
    CPU_COUNT_TAG,
    CPU_TAG,
    CUDA_TAG,
    GPU_TAG,
    STACK_PACKAGES,
    TORCH_THREADS_TAG,
    VERSION_TAG_PREFIX,
    stack_tags,
)
from trainer.tracking import (
    EXPERIMENT_KIND_TAG,
    MODEL_TRAINING_KIND,
    TrialRun,
    ensure_experiment,
)
from trainer.trial import run_trial


def _uri(tmp: Path) -> str:
    return f"sqlite:///{tmp / 'mlflow.db'}"


def _assert_stack(tags: dict[str, str]) -> None:
    for name in STACK_PACKAGES:
        assert tags[f"{VERSION_TAG_PREFIX}{name}"] == metadata.version(name)
    assert tags[f"{VERSION_TAG_PREFIX}python"].count(".") == 2
    assert tags[CPU_TAG] and tags[CPU_TAG] != "unknown"
    assert int(tags[CPU_COUNT_TAG]) >= 1
    expected_gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none"
    assert tags[GPU_TAG] == expected_gpu
    assert tags[CUDA_TAG] == (torch.version.cuda or "none")


def test_stack_tags_hold_versions_and_hardware_but_no_path() -> None:
    tags = stack_tags()
    _assert_stack(tags)
    assert tags[TORCH_THREADS_TAG] == str(torch.get_num_threads())
    assert stack_tags(torch_threads=3)[TORCH_THREADS_TAG] == "3"
    paths = [str(Path(__file__).resolve().parents[2]), str(Path.home()), str(Path.cwd())]
    assert not any(p in v for p in paths if len(p) > 1 for v in tags.values())


def test_trial_run_records_its_stack_and_refreshes_it_on_resume(tmp_path: Path) -> None:
    uri = _uri(tmp_path)
    run = TrialRun(uri, trial_key="k1", experiment_name="stack", tags={"seed": "0"})
    run_id = run.open({"a": 1})
    run.close(False)
    client = MlflowClient(uri)
    tags = client.get_run(run_id).data.tags
    _assert_stack(tags)
    assert tags["seed"] == "0" and tags["trial_key"] == "k1"

    client.set_tag(run_id, f"{VERSION_TAG_PREFIX}torch", "another-machine")
    again = TrialRun(uri, trial_key="k1", experiment_name="stack", torch_threads=5)
    assert again.open({"a": 1}) == run_id  # resumed, not duplicated
    again.close(True)
    tags = client.get_run(run_id).data.tags
    assert tags[f"{VERSION_TAG_PREFIX}torch"] == metadata.version("torch")
    assert tags[TORCH_THREADS_TAG] == "5"


def test_run_trial_tags_its_run_with_the_stack_and_its_thread_count(tmp_path: Path) -> None:
    cfg = build_config("tiny", dotted={
        "data.image_size": 32, "data.root": str(tmp_path / "data"), "init.warm_start": False,
        "data.num_train_images": 32, "data.num_val_images": 8, "data.num_test_images": 8,
        "data.captions_per_image": 1, "data.batch_size": 8, "schedule.steps": 2,
        "schedule.warmup_steps": 0, "runtime.log_every": 1, "runtime.checkpoint_every": 2,
        "eval.rerank_k": 2, "runtime.threads": 1, "objectives.itc.queue_size": 16,
    })
    uri = _uri(tmp_path)
    result = run_trial(cfg, 0, tracking_uri=uri, experiment_name="stack-trial",
                       checkpoint_dir=tmp_path / "ckpt")
    client = MlflowClient(uri)
    run = client.get_run(result.mlflow_run_id)
    assert run.info.status == "FINISHED"
    _assert_stack(run.data.tags)
    assert run.data.tags[TORCH_THREADS_TAG] == "1"  # runtime.threads, what the loop trains with
    experiment = client.get_experiment(run.info.experiment_id)
    assert experiment.tags[EXPERIMENT_KIND_TAG] == MODEL_TRAINING_KIND


def test_ensure_experiment_creates_with_tags_and_the_model_training_kind(
    tmp_path: Path,
) -> None:
    client = MlflowClient(_uri(tmp_path))
    eid = ensure_experiment(client, "fresh", tags={"team": "vlp"})
    tags = client.get_experiment(eid).tags
    assert tags[EXPERIMENT_KIND_TAG] == MODEL_TRAINING_KIND
    assert tags["team"] == "vlp"
    assert ensure_experiment(client, "fresh") == eid


def test_ensure_experiment_marks_an_existing_experiment_that_lacks_the_kind(
    tmp_path: Path,
) -> None:
    client = MlflowClient(_uri(tmp_path))
    eid = client.create_experiment("older", tags={"team": "vlp"})
    assert EXPERIMENT_KIND_TAG not in client.get_experiment(eid).tags
    assert ensure_experiment(client, "older", tags={"other": "x"}) == eid
    tags = client.get_experiment(eid).tags
    assert tags[EXPERIMENT_KIND_TAG] == MODEL_TRAINING_KIND
    assert tags["team"] == "vlp"
    assert "other" not in tags  # creation tags are for creation only


def test_ensure_experiment_keeps_a_chosen_kind_but_replaces_an_inferred_one(
    tmp_path: Path,
) -> None:
    client = MlflowClient(_uri(tmp_path))
    chosen = client.create_experiment("chosen", tags={EXPERIMENT_KIND_TAG: "genai_development"})
    inferred = client.create_experiment(
        "inferred", tags={EXPERIMENT_KIND_TAG: "genai_development_inferred"}
    )
    ensure_experiment(client, "chosen")
    ensure_experiment(client, "inferred")
    assert client.get_experiment(chosen).tags[EXPERIMENT_KIND_TAG] == "genai_development"
    assert client.get_experiment(inferred).tags[EXPERIMENT_KIND_TAG] == MODEL_TRAINING_KIND


def test_concurrent_ensure_experiment_gives_one_experiment(tmp_path: Path) -> None:
    uri, threads = _uri(tmp_path), 4
    MlflowClient(uri).search_experiments()  # the store's schema exists before the race
    barrier = threading.Barrier(threads)
    ids: list[str] = []
    errors: list[BaseException] = []

    def create() -> None:
        client = MlflowClient(uri)
        barrier.wait()
        try:
            ids.append(ensure_experiment(client, "raced", tags={"team": "vlp"}))
        except Exception as e:  # reported by the assertion below
            errors.append(e)

    workers = [threading.Thread(target=create) for _ in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(timeout=60)
    assert not errors, errors
    assert len(ids) == threads and len(set(ids)) == 1
    client = MlflowClient(uri)
    named = [e for e in client.search_experiments() if e.name == "raced"]
    assert len(named) == 1
    assert named[0].tags[EXPERIMENT_KIND_TAG] == MODEL_TRAINING_KIND
