"""Downstream evaluations in the store, on SQLite and PostgreSQL: recorded with their trial,
asked for later once, claimed and finished, never duplicated, the trial's metrics merged."""

from __future__ import annotations

import os

import pytest
from sqlalchemy.exc import IntegrityError

from service.states import EvaluationState
from service.store import Evaluation, NewTrial, NewVariant, Store, TrialState, WantedEvaluation


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request, tmp_path):
    url = (f"sqlite:///{tmp_path / 'ablate.db'}" if request.param == "sqlite"
           else request.getfixturevalue("pg_url"))
    s = Store(url)
    yield s
    s.close()


def make(store: Store, keys=("k0", "k1"), name="e"):
    return store.create_experiment(
        name=name, description="", spec={"name": name, "metrics": {"reported": []}},
        design="explicit", baseline="a", primary_metric="mean_recall",
        variants=[NewVariant("a", {}, {}, {"c": 1}, "h",
                             [NewTrial(seed=i, trial_key=k) for i, k in enumerate(keys)])],
    )


def finish(store: Store, trial_id: int, evaluations=None) -> bool:
    store.mark_running(trial_id, worker_pid=os.getpid())
    return store.mark_finished(trial_id, metrics={"mean_recall": 40.0, "ve_accuracy": 0.5},
                               mlflow_run_id="r", mlflow_experiment_id="7", steps=3,
                               evaluations=evaluations)


def test_a_finished_trial_records_its_evaluations_once(store: Store) -> None:
    exp = make(store)
    t0 = exp.trials[0]
    assert finish(store, t0.id, {"ve": ("key-ve", {"ve_accuracy": 0.5})})
    # a late duplicate write (a retried worker) is refused by the trial's guard: no second row
    assert not store.mark_finished(t0.id, metrics={}, mlflow_run_id="r",
                                   mlflow_experiment_id="7", steps=3,
                                   evaluations={"ve": ("key-ve", {"ve_accuracy": 0.9})})
    rows = store.evaluations.for_experiment(exp.id)
    assert [(r.trial_id, r.task, r.evaluation_key, r.state, r.metrics) for r in rows] == [
        (t0.id, "ve", "key-ve", EvaluationState.DONE, {"ve_accuracy": 0.5})]
    assert store.counts()["evaluations"] == 1


def test_the_database_refuses_a_second_row_for_one_trial_task_and_key(store: Store) -> None:
    exp = make(store)
    finish(store, exp.trials[0].id, {"ve": ("key-ve", {"ve_accuracy": 0.5})})
    with pytest.raises(IntegrityError), store.session() as s:
        s.add(Evaluation(experiment_id=exp.id, trial_id=exp.trials[0].id, task="ve",
                         evaluation_key="key-ve", state=EvaluationState.PENDING, attempts=0,
                         metrics={}))
    assert store.counts()["evaluations"] == 1


def test_asking_twice_inserts_once_and_keeps_the_extended_configs(store: Store) -> None:
    exp = make(store)
    for t in exp.trials:
        finish(store, t.id)
    store.mark_finalized(exp.id)
    wanted = [WantedEvaluation(t.id, "vqa", f"key-{t.id}") for t in exp.trials]
    spec = {**exp.spec, "metrics": {"reported": ["vqa_accuracy"]}}
    configs = {"a": {"c": 1, "eval": {"downstream": {"tasks": ["vqa"]}}}}
    before = store.revision(exp.id)
    assert store.evaluations.request(exp.id, wanted, configs=configs, spec=spec) == 2
    after = store.get_experiment(exp.id)
    assert after.finalized_at is None  # its end step runs again once they are done
    assert after.spec == spec and after.variants[0].config == configs["a"]
    assert store.revision(exp.id) != before
    assert store.evaluations.request(exp.id, wanted, configs=configs, spec=spec) == 0
    assert store.counts()["evaluations"] == 2
    assert [e.state for e in store.evaluations.runnable(exp.id)] == [EvaluationState.PENDING] * 2
    assert store.evaluations.experiments_with_active() == [exp.id]
    assert store.experiments_to_finalize() == []  # not while evaluations are pending


def test_claim_finish_and_merge_into_the_trial(store: Store) -> None:
    exp = make(store, keys=("k0",))
    t0 = exp.trials[0]
    finish(store, t0.id)
    store.evaluations.request(exp.id, [WantedEvaluation(t0.id, "nlvr", "kn")],
                              configs={}, spec=exp.spec)
    (e,) = store.evaluations.runnable(exp.id)
    claimed = store.evaluations.mark_running(e.id)
    assert claimed is not None and claimed.attempts == 1
    assert store.evaluations.mark_pending(e.id, "worker died")  # retried later
    assert store.evaluations.mark_running(e.id).attempts == 2
    rev = store.revision(exp.id)
    store.evaluations.mark_done(t0.id, "nlvr", "kn",
                                {"nlvr_accuracy": 0.75, "nlvr_consistency": 0.5})
    assert store.evaluations.runnable(exp.id) == []
    assert store.evaluations.mark_running(e.id) is None  # done stays done
    assert not store.evaluations.mark_failed(e.id, "late")
    trial = store.get_trial(t0.id)
    assert trial.metrics == {"mean_recall": 40.0, "ve_accuracy": 0.5, "nlvr_accuracy": 0.75,
                             "nlvr_consistency": 0.5}
    assert store.revision(exp.id) != rev
    assert store.experiments_to_finalize() == [exp.id]


def test_only_trials_with_a_result_are_runnable_and_cancel_fails_the_rest(store: Store) -> None:
    exp = make(store)
    finish(store, exp.trials[0].id)
    store.evaluations.request(exp.id, [WantedEvaluation(t.id, "ve", "kv") for t in exp.trials],
                              configs={}, spec=exp.spec)
    assert [e.trial_id for e in store.evaluations.runnable(exp.id)] == [exp.trials[0].id]
    assert store.evaluations.fail_active(exp.id, "cancelled") == 2
    assert {e.state for e in store.evaluations.for_experiment(exp.id)} == {EvaluationState.FAILED}


def test_a_cached_trials_evaluation_runs_where_its_source_ran(store: Store) -> None:
    first = make(store, keys=("k0",), name="first")
    finish(store, first.trials[0].id)
    second = make(store, keys=("k0",), name="second")
    cached = second.trials[0]
    assert cached.state == TrialState.CACHED
    target = store.evaluations.target(cached.id)
    assert (target.experiment_id, target.trial_key, target.mlflow_experiment_id) == (
        first.id, "k0", "7")
