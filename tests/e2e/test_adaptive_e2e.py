"""Adaptive seeds through the real service (Ray Jobs + Tune, MLflow, uvicorn): an experiment
that stops at its first look, one that runs every look to max, and one whose job is lost and
controller killed between looks; never a seed run twice, one MLflow run per trial."""

from __future__ import annotations

import time
from collections import Counter

import pytest
from ray.job_submission import JobSubmissionClient

from service.stack.secret_files import ray_auth_headers
from tests.e2e.conftest import done, runs_of, tiny_spec, trials, wait_for

pytestmark = pytest.mark.slow

TWO_ARMS = {"design": "explicit", "variants": {"ALBEF": {}, "no ITC": {
    "objectives.itc.enabled": False}}, "baseline": "ALBEF"}


def seeds_per_arm(exp: dict) -> dict[str, list[int]]:
    return {v["name"]: sorted(t["seed"] for t in v["trials"]) for v in exp["variants"]}


def one_run_per_trial(mlflow, exp: dict) -> None:
    runs = runs_of(mlflow, exp)
    keys = Counter(r.data.tags["trial_key"] for r in runs)
    assert sorted(keys) == sorted(t["trial_key"] for t in trials(exp)) and set(keys.values()) \
        == {1}
    assert {r.info.status for r in runs} == {"FINISHED"}


def test_a_comparison_decided_at_the_first_look_stops_there(api, mlflow) -> None:
    """A futility margin no recall difference can reach (1000 points): the repeated CI lies
    inside it at the first look, so the comparison is decided and no seed is added."""
    spec = tiny_spec("adaptive-stops", 7, seeds={"initial": 2, "max": 4},
                     stopping={"method": "pocock", "min_effect": 1000.0}, **TWO_ARMS)
    r = api.post("/experiments", json=spec)
    assert r.status_code == 201, r.text
    exp = wait_for(api, r.json()["id"], done)
    assert exp["status"] == "finished", exp
    assert seeds_per_arm(exp) == {"ALBEF": [0, 1], "no ITC": [0, 1]}
    seq = api.get(f"/experiments/{exp['id']}/compare").json()["sequential"]
    (c,) = seq["comparisons"]
    assert c["decision"] == "no_effect" and c["seeds"] == 2 and seq["looks_taken"] == 1
    one_run_per_trial(mlflow, exp)


def test_a_job_lost_between_looks_is_continued_to_max_not_rerun(stack, api, mlflow) -> None:
    """Looks at 3 and 4 seeds with alpha 0.001: only three identical differences could cross
    the first bound, so the comparison goes on to max. The job is stopped and the controller
    killed once the first look's trials are done; the restarted controller's reconciler
    continues the experiment from the store."""
    spec = tiny_spec("adaptive-lost", 8, seeds={"initial": 3, "max": 4},
                     stopping={"alpha": 0.001}, **TWO_ARMS)
    created = api.post("/experiments", json=spec).json()
    exp_id = created["id"]
    wait_for(api, exp_id, lambda e: all(t["state"] == "finished" for t in trials(e)
                                        if t["seed"] < 3) and len(trials(e)) >= 6)
    stack.children["controller"].kill()
    jobs = JobSubmissionClient(stack.settings.ray_address,
                               headers=ray_auth_headers(stack.settings))
    jobs.stop_job(created["job_submission_id"])
    while not jobs.get_job_status(created["job_submission_id"]).is_terminal():
        time.sleep(0.2)
    stack.start_controller()
    exp = wait_for(api, exp_id, lambda e: done(e) and len(trials(e)) == 8)
    assert exp["status"] == "finished", exp
    assert seeds_per_arm(exp) == {"ALBEF": [0, 1, 2, 3], "no ITC": [0, 1, 2, 3]}
    assert all(t["attempts"] <= 2 for t in trials(exp))
    seq = api.get(f"/experiments/{exp_id}/compare").json()["sequential"]
    assert seq["looks_taken"] == 2 and seq["planned_looks"] == [3, 4]
    assert seq["comparisons"][0]["looks_taken"] == 2
    one_run_per_trial(mlflow, exp)
