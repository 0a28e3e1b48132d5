"""The service end to end on the real stack (Ray Jobs + Tune, MLflow server, uvicorn): no mocks."""

from __future__ import annotations

import os
import signal
import time

import pytest
from ray.job_submission import JobSubmissionClient

from service.stack.secret_files import ray_auth_headers
from tests.e2e.conftest import done, get, runs_of, tiny_spec, trials, wait_for
from trainer.warm_start import WARM_START_EXPERIMENT

pytestmark = pytest.mark.slow

GRID = tiny_spec(
    "grid", 16, design="factorial",
    factors={
        "ITC": {"path": "objectives.itc.enabled", "levels": [False, True]},
        "HN": {"path": "objectives.itm.hard_negatives", "levels": [False, True]},
    },
)


def test_grid_runs_to_finished_then_resubmit_is_cached(api, mlflow):
    r = api.post("/experiments", json=GRID)
    assert r.status_code == 201, r.text
    created = r.json()
    assert created["trials"] == 4 and created["cached"] == 0
    assert created["variants"] == ["ITC=off,HN=off", "ITC=off,HN=on", "ITC=on,HN=off",
                                   "ITC=on,HN=on"]
    assert created["job_submission_id"] == created["id"]

    exp = wait_for(api, created["id"], done)
    assert exp["status"] == "finished", exp
    ts = trials(exp)
    assert all(t["state"] == "finished" and t["attempts"] == 1 for t in ts)
    assert all(t["metrics"]["mean_recall"] >= 0 and t["mlflow_url"] for t in ts)

    # MLflow: exactly one FINISHED run per trial, tagged and named after its variant and seed.
    runs = runs_of(mlflow, exp)
    assert len(runs) == 4
    by_key = {r.data.tags["trial_key"]: r for r in runs}
    assert set(by_key) == {t["trial_key"] for t in ts}
    for t in ts:
        run = by_key[t["trial_key"]]
        assert run.info.status == "FINISHED"
        assert run.info.run_id == t["mlflow_run_id"]
        assert run.data.tags["variant"] == t["variant"]
        assert run.data.tags["seed"] == str(t["seed"])
        assert run.data.tags["ablate.experiment_id"] == exp["id"]
        assert run.info.run_name == f"{t['variant']} seed={t['seed']}"
        assert run.data.tags["mlflow.parentRunId"]
    parent = [r for r in mlflow.search_runs([exp["mlflow_experiment_id"]])
              if r.data.tags.get("ablate.role") == "parent"]
    assert len(parent) == 1
    # one warm start, computed once before the arms, shared by all four and logged as its own run
    assert len({r.data.tags["warm_start_key"] for r in runs}) == 1
    warm_exp = mlflow.get_experiment_by_name(WARM_START_EXPERIMENT)
    warm_runs = mlflow.search_runs(
        [warm_exp.experiment_id],
        filter_string=f"tags.warm_start_key = '{runs[0].data.tags['warm_start_key']}'",
    )
    assert len(warm_runs) == 1 and warm_runs[0].info.status == "FINISHED"
    assert_nothing_left_running(mlflow, exp)
    parent = mlflow.get_run(parent[0].info.run_id)
    assert parent.info.status == "FINISHED"

    cmp = api.get(f"/experiments/{exp['id']}/compare").json()
    assert [v["name"] for v in cmp["variants"]] == created["variants"]
    cells = [v["cells"]["mean_recall"] for v in cmp["variants"]]
    assert all(c["n"] == 1 and c["mean"] is not None and c["ci"] is None for c in cells)
    assert len(cmp["curves"]) == 4  # the trials' learning curves reached the store
    # every trial recorded its cost and fingerprints; same seed in every arm: pairing holds
    assert [c["variant"] for c in cmp["cost"]] == created["variants"]
    assert all(c["flops"] > 0 and c["samples"] > 0 for c in cmp["cost"])
    pairings = {c["pairing"] for v in cmp["variants"] for c in v["vs_baseline"].values()}
    assert pairings == {"verified"}, pairings
    md = api.get(f"/experiments/{exp['id']}/compare", params={"format": "markdown"})
    assert md.status_code == 200 and "| ITC=on,HN=on" in md.text
    png = api.get(f"/experiments/{exp['id']}/compare", params={"format": "png"})
    assert png.headers["content-type"] == "image/png" and png.content.startswith(b"\x89PNG")
    # the table and plots are on the parent run, once
    arts = {f.path for f in mlflow.list_artifacts(parent.info.run_id, "compare")}
    assert {"compare/analysis.json", "compare/table.md", "compare/table.csv",
            "compare/bars.png"} <= arts, arts

    # The same spec again: every trial is reused, nothing is submitted or trained.
    again = api.post("/experiments", json=GRID).json()
    assert again["cached"] == 4 and again["job_submission_id"] is None
    exp2 = get(api, again["id"])
    assert exp2["status"] == "finished"
    assert {t["mlflow_run_id"] for t in trials(exp2)} == {t["mlflow_run_id"] for t in ts}
    assert all(t["state"] == "cached" and t["attempts"] == 0 for t in trials(exp2))
    assert len(runs_of(mlflow, exp)) == 4
    cmp2 = api.get(f"/experiments/{again['id']}/compare").json()
    assert cmp2["variants"][0]["cells"] == cmp["variants"][0]["cells"]
    # No job ran it, yet it gets its own MLflow experiment with a finished parent run holding
    # the comparison (the controller's reconciler, woken by the POST), and no trial runs.
    exp2 = wait_for(api, again["id"], lambda e: e["mlflow_experiment_id"] is not None,
                    timeout=60)
    deadline = time.monotonic() + 60
    while True:
        runs2 = mlflow.search_runs([exp2["mlflow_experiment_id"]])
        if runs2 and runs2[0].info.status == "FINISHED" or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert len(runs2) == 1 and runs2[0].data.tags["ablate.role"] == "parent"
    assert runs2[0].info.status == "FINISHED"
    arts2 = {f.path for f in mlflow.list_artifacts(runs2[0].info.run_id, "compare")}
    assert "compare/table.md" in arts2, arts2


def test_killed_worker_is_retried_from_its_checkpoint(api, mlflow):
    spec = tiny_spec("worker-kill", 60, design="explicit", variants={"ALBEF": {}})
    exp_id = api.post("/experiments", json=spec).json()["id"]
    exp = wait_for(api, exp_id, lambda e: trials(e)[0]["step"] >= 15
                   and trials(e)[0]["worker_pid"] is not None, interval=0.1)
    trial = trials(exp)[0]
    os.kill(trial["worker_pid"], signal.SIGKILL)

    exp = wait_for(api, exp_id, done)
    t = trials(exp)[0]
    assert exp["status"] == "finished", t
    assert t["attempts"] == 2
    assert t["resumed_from_step"] is not None and t["resumed_from_step"] >= 10, t
    runs = runs_of(mlflow, exp)
    assert len(runs) == 1 and runs[0].info.status == "FINISHED"
    assert runs[0].info.run_id == t["mlflow_run_id"]


@pytest.mark.parametrize("lose_job", [False, True], ids=["job-survives", "job-lost"])
def test_controller_sigkill_and_restart(stack, api, mlflow, lose_job):
    spec = tiny_spec(
        f"controller-kill-{lose_job}", 40 + 2 * lose_job, design="factorial",
        factors={"ITC": {"path": "objectives.itc.enabled", "levels": [False, True]}},
    )
    created = api.post("/experiments", json=spec).json()
    exp_id = created["id"]
    wait_for(api, exp_id, lambda e: any(t["step"] >= 12 for t in trials(e)))

    stack.children["controller"].kill()  # SIGKILL, mid-training
    if lose_job:  # as if the Ray head had lost the job too: its trials die mid-run
        jobs = JobSubmissionClient(stack.settings.ray_address,
                                   headers=ray_auth_headers(stack.settings))
        jobs.stop_job(created["job_submission_id"])
        while not jobs.get_job_status(created["job_submission_id"]).is_terminal():
            time.sleep(0.2)
        time.sleep(1.0)
    stack.start_controller()

    exp = wait_for(api, exp_id, done)
    assert exp["status"] == "finished", exp
    ts = trials(exp)
    if lose_job:
        assert exp["job_submission_id"] == f"{exp_id}-r1"
        assert any(t["attempts"] == 2 and t["resumed_from_step"] for t in ts), ts
    else:
        assert exp["job_submission_id"] == exp_id
        assert all(t["attempts"] == 1 for t in ts)
    # nothing ran twice: one MLflow run per trial, all FINISHED, none left RUNNING
    runs = runs_of(mlflow, exp)
    assert sorted(r.data.tags["trial_key"] for r in runs) == sorted(t["trial_key"] for t in ts)
    assert {r.info.status for r in runs} == {"FINISHED"}
    assert_nothing_left_running(mlflow, exp)


def assert_nothing_left_running(mlflow, exp, timeout=60.0):
    """No run stays RUNNING; the parent run ends when the job's driver finishes, which may be
    a moment after the store says the last trial finished."""
    deadline = time.monotonic() + timeout
    while True:
        running = mlflow.search_runs([exp["mlflow_experiment_id"]],
                                     filter_string="attributes.status = 'RUNNING'")
        assert all(r.data.tags.get("ablate.role") == "parent" for r in running), running
        if not running:
            return
        assert time.monotonic() < deadline, "the parent run was left RUNNING"
        time.sleep(0.5)


def test_cancel_stops_the_job_and_ends_runs(api, mlflow):
    spec = tiny_spec("cancel", 400, design="explicit", variants={"ALBEF": {}})
    exp_id = api.post("/experiments", json=spec).json()["id"]
    wait_for(api, exp_id, lambda e: trials(e)[0]["step"] >= 2)
    r = api.post(f"/experiments/{exp_id}/cancel")
    assert r.status_code == 200 and r.json()["status"] == "cancelled"
    exp = get(api, exp_id)
    assert trials(exp)[0]["state"] == "cancelled"
    running = mlflow.search_runs([exp["mlflow_experiment_id"]],
                                 filter_string="attributes.status = 'RUNNING'")
    assert running == []
    assert api.post(f"/experiments/{exp_id}/retry").status_code == 409


def test_bad_spec_over_http_changes_nothing(api):
    before = api.get("/experiments").json()
    r = api.post("/experiments", json=tiny_spec("bad", 10, factors={}))
    assert r.status_code == 422
    assert r.json() == {"detail": [{"field": "factors",
                                    "reason": "design 'factorial' needs at least one factor"}]}
    assert api.get("/experiments").json() == before


def test_a_trial_no_node_can_hold_fails_with_the_reason(api, mlflow):
    """``resources.gpus: 1`` on this CPU-only Ray cluster: not pending forever, but failed with
    a reason the API shows, once the job has waited ``unschedulable_after_s`` for a node."""
    spec = tiny_spec("needs-a-gpu", 10, design="explicit", variants={"ALBEF": {}},
                     resources={"cpus": 1, "gpus": 1})
    r = api.post("/experiments", json=spec)
    assert r.status_code == 201, r.text
    exp = wait_for(api, r.json()["id"], done, timeout=120)
    assert exp["status"] == "failed"
    (trial,) = trials(exp)
    assert trial["state"] == "failed" and trial["attempts"] == 0
    assert trial["error"].startswith("unschedulable: each trial asks for cpus=1, gpus=1")
    assert "GPU 0" in trial["error"] and "waited 3 s" in trial["error"]
    assert runs_of(mlflow, exp) == []  # nothing ran
