"""Power before running, through the real API: the dry run answers the seeds per arm that
detect a difference, from a stated spread or from a prior experiment's paired differences.
Reference: Cohen (1988) / G*Power, paired t test, two-sided alpha 0.05, power 0.8:
d = 0.5 -> 34 pairs, d = 0.8 -> 15, d = 1.0 -> 10."""

from __future__ import annotations

import math
import os

import pytest

from tests.service.api_client import JSON, make_client

ITC = {"ITC": {"path": "objectives.itc.enabled", "levels": [False, True]}}
HN = {"HN": {"path": "objectives.itm.hard_negatives", "levels": [False, True]}}
SPEC = {"name": "plan", "base": {"preset": "tiny", "set": {"schedule.steps": 10}},
        "design": "leave_one_out", "seeds": 2}


@pytest.fixture
def client(tmp_path):
    with make_client(tmp_path) as c:
        yield c


def dry(client, spec, **params):
    return client.post("/experiments", json=spec, headers=JSON,
                       params={"dry_run": "true", **params})


@pytest.mark.parametrize(("delta", "seeds"), [(0.5, 34), (0.8, 15), (1.0, 10)])
def test_a_stated_spread_gives_cohens_sample_sizes(client, delta, seeds) -> None:
    r = dry(client, {**SPEC, "factors": ITC}, delta=delta, sd=1.0)
    assert r.status_code == 200, r.text
    plan = r.json()["power"]
    assert plan["seeds_per_arm"] == seeds and plan["comparisons"] == 1
    assert plan["level"] == 0.05 and plan["sd_source"] == "stated"


def test_more_comparisons_plan_at_a_stricter_level(client) -> None:
    plan = dry(client, {**SPEC, "factors": {**ITC, **HN}}, delta=1.0, sd=1.0).json()["power"]
    assert plan["comparisons"] == 2 and plan["level"] == 0.025 and plan["seeds_per_arm"] > 10


def test_the_spread_of_a_prior_experiment(client) -> None:
    """Prior: baseline 'full' and two variants over two seeds; the differences are (1, 3) and
    (2, 6): variances 2 and 8 with one degree of freedom each, pooled sd = sqrt(5)."""
    r = client.post("/experiments", json={**SPEC, "factors": {**ITC, **HN}}, headers=JSON)
    prior_id, store = r.json()["id"], client.store
    recall = {"full": [50.0, 50.0], "w/o ITC": [51.0, 53.0], "w/o HN": [52.0, 56.0]}
    for v in store.get_experiment(prior_id).variants:
        for t in v.trials:
            store.mark_running(t.id, worker_pid=os.getpid())
            store.mark_finished(t.id, metrics={"mean_recall": recall[v.name][t.seed]},
                                mlflow_run_id=f"r{t.id}", mlflow_experiment_id="1", steps=10)
    r = dry(client, {**SPEC, "factors": ITC}, delta=math.sqrt(5), prior=prior_id)
    assert r.status_code == 200, r.text
    plan = r.json()["power"]
    assert plan["sd"] == pytest.approx(math.sqrt(5)) and plan["seeds_per_arm"] == 10
    assert plan["sd_source"] == f"experiment {prior_id} (2 degrees of freedom)"


def test_an_adaptive_max_below_the_need_is_said(client) -> None:
    spec = {**SPEC, "factors": ITC, "seeds": {"initial": 3, "max": 6}}
    plan = dry(client, spec, delta=0.5, sd=1.0).json()["power"]
    assert "seeds.max (6) is below the 34" in plan["note"]


@pytest.mark.parametrize(("params", "field", "status"), [
    ({"delta": 1.0}, "sd", 422),
    ({"delta": 1.0, "prior": "exp-nope"}, "prior", 422),
    ({"delta": -1.0, "sd": 1.0}, "delta", 422),
    ({"delta": 1.0, "sd": 0.0}, "sd", 422),
])
def test_bad_power_questions_name_the_field(client, params, field, status) -> None:
    r = dry(client, {**SPEC, "factors": ITC}, **params)
    assert r.status_code == status and r.json()["detail"][0]["field"] == field, r.text


def test_power_planning_is_for_dry_runs_only(client) -> None:
    r = client.post("/experiments", json={**SPEC, "factors": ITC}, headers=JSON,
                    params={"delta": 1.0, "sd": 1.0})
    assert r.status_code == 422 and r.json()["detail"][0]["field"] == "delta"
    assert client.store.counts()["experiments"] == 0
