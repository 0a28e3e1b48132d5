"""A data-parallel trial through the real service: ``resources.workers: 2`` runs each trial as
a Ray Train ``TorchTrainer`` of 2 gloo workers (1 CPU each) from its Tune trial, rank 0 reporting
progress to the store and logging the trial's one MLflow run."""

from __future__ import annotations

import pytest

from tests.e2e.conftest import done, runs_of, tiny_spec, trials, wait_for

pytestmark = pytest.mark.slow


def test_a_two_worker_trial_finishes_with_one_mlflow_run(stack, api, mlflow):
    spec = tiny_spec("data-parallel", 8, resources={"workers": 2, "cpus_per_worker": 1},
                     design="explicit", variants=[{"name": "dp"}])
    spec["base"]["set"]["data.batch_size"] = 16
    r = api.post("/experiments", json=spec)
    assert r.status_code == 201, r.text
    exp = wait_for(api, r.json()["id"], done, timeout=420)
    assert exp["status"] == "finished", exp
    (trial,) = trials(exp)
    assert trial["state"] == "finished" and trial["step"] == 8, trial
    assert trial["metrics"]["mean_recall"] >= 0
    # Ray Train ran it: one Train run (its storage holds rank 0's report) for the one attempt
    (train_run,) = (stack.settings.data_dir / "train").glob(
        f"{exp['id']}-trial_{trial['id']}-attempt_*")
    assert list(train_run.glob("checkpoint_*/report.json"))
    runs = runs_of(mlflow, exp)
    assert len(runs) == 1 and runs[0].info.status == "FINISHED"
    assert runs[0].info.run_id == trial["mlflow_run_id"]
    losses = mlflow.get_metric_history(runs[0].info.run_id, "loss")
    assert [m.step for m in losses] == [2, 4, 6, 8]  # rank 0 alone logs: each step once
