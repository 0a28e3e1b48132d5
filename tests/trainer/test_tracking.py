"""Tracking against a real MLflow store (SQLite in tmp_path): experiments created race-safely
and marked as model training."""

from __future__ import annotations

import threading
from pathlib import Path

from mlflow.tracking import MlflowClient

from trainer.tracking import (
    EXPERIMENT_KIND_TAG,
    MODEL_TRAINING_KIND,
    ensure_experiment,
)


def _uri(tmp: Path) -> str:
    return f"sqlite:///{tmp / 'mlflow.db'}"


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
