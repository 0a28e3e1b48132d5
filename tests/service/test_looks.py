"""Adaptive seeds over the real store and the real HTTP API (Ray and MLflow unreachable, so
trial results are written the way the job writes them): which look an experiment is at, the
seeds the next look adds (never one twice), and what /compare says per comparison."""

from __future__ import annotations

import os

import pytest

from service.job.looks import add_next_look, look_state
from service.store import Store
from tests.service.api_client import JSON, make_client

ITC = {"ITC": {"path": "objectives.itc.enabled", "levels": [False, True]}}
HN = {"HN": {"path": "objectives.itm.hard_negatives", "levels": [False, True]}}


def adaptive_spec(**extra: object) -> dict[str, object]:
    return {"name": "adaptive", "base": {"preset": "tiny", "set": {"schedule.steps": 10}},
            "design": "leave_one_out", "factors": {**ITC, **HN},
            "seeds": {"initial": 3, "max": 6, "step": 1}, **extra}


def finish_all(store: Store, exp_id: str, recall: dict[str, list[float]]) -> None:
    """Every pending trial finishes with the recall its variant's list gives for its seed."""
    exp = store.get_experiment(exp_id)
    for v in exp.variants:
        for t in v.trials:
            if t.state == "pending":
                store.mark_running(t.id, worker_pid=os.getpid())
                store.mark_finished(t.id, metrics={"mean_recall": recall[v.name][t.seed]},
                                    mlflow_run_id=f"run-{t.id}", mlflow_experiment_id="1",
                                    steps=10)


# full: baseline. "w/o ITC" loses ~30 points every seed (clear); "w/o HN" is noise around 0.
RECALL = {
    "full": [60.0, 61.0, 59.5, 60.5, 60.2, 59.8],
    "w/o ITC": [30.0, 36.0, 27.0, 31.0, 33.0, 29.0],
    "w/o HN": [60.3, 60.1, 60.4, 59.6, 61.0, 59.1],
}


@pytest.fixture
def client(tmp_path):
    with make_client(tmp_path) as c:
        yield c


def test_looks_add_seeds_only_where_undecided_and_never_twice(client) -> None:
    r = client.post("/experiments", json=adaptive_spec(), headers=JSON)
    assert r.status_code == 201, r.text
    exp_id, store = r.json()["id"], client.store
    exp = store.get_experiment(exp_id)
    assert sorted({t.seed for t in exp.trials}) == [0, 1, 2] and len(exp.trials) == 9
    state = look_state(exp)
    assert state is not None and state.looks_taken == 0 and state.next_seeds == {}

    finish_all(store, exp_id, RECALL)
    state = look_state(store.get_experiment(exp_id))
    assert state.looks_taken == 1
    assert state.results["w/o ITC"].decision == "continue"  # OBF's first bound is huge
    assert add_next_look(store, exp_id) == 3 and add_next_look(store, exp_id) == 0
    finish_all(store, exp_id, RECALL)
    state = look_state(store.get_experiment(exp_id))
    assert state.looks_taken == 2
    assert state.results["w/o ITC"].decision == "worse"  # decided at 4 seeds
    assert state.results["w/o HN"].decision == "continue"
    assert state.next_seeds == {"full": [4], "w/o HN": [4]}  # ITC's arm gets no more seeds
    while add_next_look(store, exp_id):
        finish_all(store, exp_id, RECALL)
    exp = store.get_experiment(exp_id)
    seeds = {v.name: sorted(t.seed for t in v.trials) for v in exp.variants}
    assert seeds == {"full": list(range(6)), "w/o ITC": [0, 1, 2, 3],
                     "w/o HN": list(range(6))}
    state = look_state(exp)
    assert state.looks_taken == 4 and state.next_seeds == {}
    assert state.results["w/o HN"].decision == "undecided"
    assert state.results["w/o HN"].seeds_needed is not None

    body = client.get(f"/experiments/{exp_id}/compare").json()["sequential"]
    assert body["looks_taken"] == 4 and body["planned_looks"] == [3, 4, 5, 6]
    by_name = {c["variant"]: c for c in body["comparisons"]}
    itc = by_name["w/o ITC"]
    assert itc["decision"] == "worse" and itc["seeds"] == 4 and itc["looks_taken"] == 2
    assert itc["interval"][1] < 0 and "crossed the obrien_fleming bound" in itc["reason"]
    assert by_name["w/o HN"]["decision"] == "undecided" and by_name["w/o HN"]["seeds"] == 6
    md = client.get(f"/experiments/{exp_id}/compare", params={"format": "markdown"}).text
    assert "Adaptive seeds: 3 to 6 (step 1), 4 of 4 looks taken" in md
    assert "| w/o ITC | worse | 4 | 2 |" in md


def test_a_failed_trial_stops_the_next_look(client) -> None:
    r = client.post("/experiments", json=adaptive_spec(), headers=JSON)
    exp_id, store = r.json()["id"], client.store
    exp = store.get_experiment(exp_id)
    store.mark_failed(exp.trials[0].id, "diverged")
    finish_all(store, exp_id, RECALL)
    assert add_next_look(store, exp_id) == 0


def test_a_cancelled_experiment_gets_no_next_look(client) -> None:
    r = client.post("/experiments", json=adaptive_spec(), headers=JSON)
    exp_id, store = r.json()["id"], client.store
    finish_all(store, exp_id, RECALL)
    store.mark_cancel_requested(exp_id)
    assert add_next_look(store, exp_id) == 0


def test_a_fixed_design_has_no_looks(client) -> None:
    spec = adaptive_spec(seeds=3)
    r = client.post("/experiments", json=spec, headers=JSON)
    exp_id, store = r.json()["id"], client.store
    assert look_state(store.get_experiment(exp_id)) is None
    finish_all(store, exp_id, RECALL)
    assert add_next_look(store, exp_id) == 0
    assert client.get(f"/experiments/{exp_id}/compare").json()["sequential"] is None
