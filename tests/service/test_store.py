"""The store on a real SQLite file (migrated by Alembic): states, guarded transitions, caching."""

from __future__ import annotations

import os

import pytest

from service.store import NewTrial, NewVariant, NotFound, Store, TrialState


@pytest.fixture
def store(tmp_path):
    s = Store(f"sqlite:///{tmp_path / 'ablate.db'}")
    yield s
    s.close()


def make(store, keys=("k0", "k1"), rerun=False, name="e"):
    return store.create_experiment(
        name=name, description="", spec={"name": name}, design="factorial", baseline="a",
        primary_metric="mean_recall", reuse_cached=not rerun,
        variants=[NewVariant("a", {"X": "on"}, {}, {"c": 1}, "h",
                             [NewTrial(seed=i, trial_key=k) for i, k in enumerate(keys)])],
    )


def finish(store, trial_id, run="run-1"):
    store.mark_running(trial_id, worker_pid=os.getpid())
    store.mark_finished(trial_id, metrics={"mean_recall": 42.0}, mlflow_run_id=run,
                        mlflow_experiment_id="7", steps=10)


def test_lifecycle_and_status(store):
    exp = make(store)
    assert exp.status == "pending" and [t.state for t in exp.trials] == ["pending"] * 2
    t0, t1 = exp.trials
    view = store.mark_running(t0.id, worker_pid=123)
    assert view.attempts == 1 and view.worker_pid == 123
    store.update_progress(t0.id, 5, 10, {"loss": 1.5})
    got = store.get_trial(t0.id)
    assert (got.step, got.total_steps, got.metrics) == (5, 10, {"loss": 1.5})
    assert store.get_experiment(exp.id).status == "running"
    store.mark_retrying(t0.id, "worker died")
    assert store.get_trial(t0.id).state == TrialState.RETRYING
    store.mark_running(t0.id, worker_pid=124)
    store.update_progress(t0.id, 6, 10, {})
    got = store.get_trial(t0.id)
    assert got.attempts == 2 and got.resumed_from_step == 6
    finish(store, t0.id)
    store.mark_running(t1.id, worker_pid=1)
    store.mark_failed(t1.id, "diverged at step 3")
    e = store.get_experiment(exp.id)
    assert e.status == "failed" and e.counts()["finished"] == 1
    assert e.trials[1].error == "diverged at step 3"


def test_final_states_are_not_resurrected(store):
    exp = make(store)
    t0 = exp.trials[0]
    store.cancel_trials(exp.id)
    assert store.mark_running(t0.id, worker_pid=1) is None
    assert not store.mark_finished(t0.id, metrics={}, mlflow_run_id="r",
                                   mlflow_experiment_id=None, steps=1)
    assert store.get_trial(t0.id).state == TrialState.CANCELLED
    assert store.get_experiment(exp.id).status == "cancelled"


def test_finished_keys_are_cached_in_later_experiments(store):
    first = make(store)
    finish(store, first.trials[0].id, run="run-A")
    second = make(store, keys=("k0", "k1"))
    cached, fresh = second.trials
    assert cached.state == TrialState.CACHED and cached.cached_from == first.trials[0].id
    assert cached.mlflow_run_id == "run-A" and cached.metrics == {"mean_recall": 42.0}
    assert fresh.state == TrialState.PENDING
    assert [t.id for t in store.runnable_trials(second.id)] == [fresh.id]


def test_rerun_ignores_the_cache(store):
    first = make(store)
    finish(store, first.trials[0].id)
    again = make(store, rerun=True)
    assert [t.state for t in again.trials] == [TrialState.PENDING] * 2


def test_only_finished_trials_feed_the_cache(store):
    first = make(store)
    store.mark_running(first.trials[0].id, worker_pid=1)
    store.mark_failed(first.trials[0].id, "boom")
    assert make(store).trials[0].state == TrialState.PENDING


def test_retry_failed_resets_failed_only(store):
    exp = make(store)
    t0, t1 = exp.trials
    finish(store, t0.id)
    store.mark_running(t1.id, worker_pid=1)
    store.mark_failed(t1.id, "boom")
    assert store.retry_failed(exp.id) == 1
    e = store.get_experiment(exp.id)
    assert [t.state for t in e.trials] == [TrialState.FINISHED, TrialState.PENDING]
    assert e.trials[1].attempts == 0 and e.trials[1].error is None


def test_job_submissions_and_active_experiments(store):
    exp = make(store)
    assert store.experiments_with_active_trials() == [exp.id]
    store.record_job_submission(exp.id, exp.id)
    store.record_job_submission(exp.id, f"{exp.id}-r1")
    e = store.get_experiment(exp.id)
    assert (e.job_submission_id, e.job_submissions) == (f"{exp.id}-r1", 2)
    store.fail_active(exp.id, "lost")
    assert store.experiments_with_active_trials() == []


def test_not_found(store):
    with pytest.raises(NotFound):
        store.get_experiment("exp-nope")


def test_migrations_are_idempotent_and_state_survives(tmp_path):
    url = f"sqlite:///{tmp_path / 'x.db'}"
    s1 = Store(url)
    exp = make(s1)
    s1.close()
    s2 = Store(url)  # upgrade to head again: a no-op
    assert s2.get_experiment(exp.id).name == "e"
    assert s2.counts() == {"experiments": 1, "variants": 1, "trials": 2}
    s2.close()


def test_sqlite_runs_in_wal_mode(store):
    with store.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
