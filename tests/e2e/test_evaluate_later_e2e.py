"""Evaluate later, end to end through the real stack (Ray Jobs + Tune, MLflow, uvicorn): a
finished experiment evaluated on one more task runs only the new evaluations, in the trials'
own MLflow runs, and /compare then shows the task's block."""

from __future__ import annotations

import time

import pytest

from service.states import EvaluationState
from service.store import Store
from tests.e2e.conftest import done, runs_of, trials, wait_for

pytestmark = pytest.mark.slow

TASK_DATA = {"num_train": 48, "num_val": 16, "num_test": 16}
SMALL = {  # tests/trainer/downstream/test_finetune.py::small
    "init.warm_start": False, "data.num_train_images": 32, "data.num_val_images": 8,
    "data.num_test_images": 16, "data.captions_per_image": 2, "data.batch_size": 8,
    "schedule.steps": 3, "schedule.warmup_steps": 0, "runtime.log_every": 1,
    "runtime.checkpoint_every": 3, "eval.rerank_k": 2, "runtime.threads": 1,
    "objectives.itc.queue_size": 16, "eval.downstream.tasks": ["minimal_pairs"],
    **{f"eval.downstream.ve.data.{k}": v for k, v in TASK_DATA.items()},
    "eval.downstream.ve.finetune.steps": 4, "eval.downstream.ve.finetune.batch_size": 8,
    "eval.downstream.ve.finetune.eval_every": 2,
}
SPEC = {
    "name": "evaluate-later", "design": "explicit", "base": {"preset": "tiny", "set": SMALL},
    "variants": [{"name": "full", "set": {}},
                 {"name": "no-itm", "set": {"objectives.itm.enabled": False}}],
    "seeds": 1, "resources": {"cpus": 1},
    "metrics": {"primary": "mean_recall", "reported": ["minimal_pairs_group"]},
}


def test_a_finished_experiment_evaluated_on_one_more_task(stack, api, mlflow) -> None:
    r = api.post("/experiments", json=SPEC)
    assert r.status_code == 201, r.text
    exp_id = r.json()["id"]
    exp = wait_for(api, exp_id, done, timeout=400)
    assert exp["status"] == "finished", exp
    keys = {t["id"]: t["trial_key"] for t in trials(exp)}
    store = Store(stack.settings.db_url, run_migrations=False)
    try:
        # the task named at POST was recorded with each trial, done
        first = store.evaluations.for_experiment(exp_id)
        assert sorted((e.trial_id, e.task, e.state) for e in first) == sorted(
            (tid, "minimal_pairs", EvaluationState.DONE) for tid in keys)

        r = api.post(f"/experiments/{exp_id}/evaluate", json={"tasks": ["ve"]})
        assert r.status_code == 202, r.text
        assert r.json()["added"] == 2 and r.json()["job_submission_id"]
        deadline = time.monotonic() + 400
        while True:
            rows = [e for e in store.evaluations.for_experiment(exp_id) if e.task == "ve"]
            if rows and all(e.state in (EvaluationState.DONE, EvaluationState.FAILED)
                            for e in rows):
                break
            assert time.monotonic() < deadline, rows
            time.sleep(1.0)
        assert [e.state for e in rows] == [EvaluationState.DONE] * 2, [e.error for e in rows]
        assert all(e.attempts == 1 for e in rows)
        # only the new evaluations ran: minimal pairs' rows are untouched
        assert [e for e in store.evaluations.for_experiment(exp_id)
                if e.task == "minimal_pairs"] == first
        wait_for(api, exp_id, lambda e: store.get_experiment(exp_id).finalized_at is not None,
                 timeout=120)
    finally:
        store.close()

    exp = api.get(f"/experiments/{exp_id}").json()
    assert {t["id"]: t["trial_key"] for t in trials(exp)} == keys  # the same trials
    assert all(0.0 <= t["metrics"]["ve_accuracy"] <= 1.0 for t in trials(exp))
    # one MLflow run per trial still, now holding both evaluations
    runs = runs_of(mlflow, exp)
    assert len(runs) == 2 and {r.data.tags["trial_key"] for r in runs} == set(keys.values())
    for run in runs:
        assert run.info.status == "FINISHED"
        assert {"evaluation.ve", "evaluation.minimal_pairs"} <= set(run.data.tags)
        assert "ve_accuracy" in run.data.metrics
    a = api.get(f"/experiments/{exp_id}/compare").json()
    assert [b["task"] for b in a["downstream"]["tasks"]] == ["ve", "minimal_pairs"]
    assert a["downstream"]["meta_sum"] == "meta_sum"
    assert all(v["cells"]["ve_accuracy"]["n"] == 1 for v in a["variants"])
    # the same request again: nothing new stored or run
    again = api.post(f"/experiments/{exp_id}/evaluate", json={"tasks": ["ve"]})
    assert again.status_code == 200 and again.json()["added"] == 0
