"""The store on a real database (migrated by Alembic): states, guarded transitions, caching.

Every test taking ``db_url`` or ``store`` runs twice: on a SQLite file (the default deployment)
and on a fresh database of a private PostgreSQL cluster (a cluster deployment's ``db_url``).
"""

from __future__ import annotations

import math
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Connection, inspect, text
from sqlalchemy.exc import IntegrityError

from service.store import (
    MIGRATION_LOCK_KEY,
    Base,
    NewTrial,
    NewVariant,
    NotFound,
    Store,
    Trial,
    TrialState,
    alembic_config,
    make_engine,
    migrate,
)

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request, tmp_path) -> str:
    """An empty database's URL; PostgreSQL's cluster starts only when a test gets here."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'ablate.db'}"
    return request.getfixturevalue("pg_url")


@pytest.fixture
def store(db_url):
    s = Store(db_url)
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
    assert e.job_resubmits == 0  # neither was the reconciler's, for a lost job
    store.record_job_submission(exp.id, f"{exp.id}-r2", resubmit=True)
    e = store.get_experiment(exp.id)
    assert (e.job_submissions, e.job_resubmits) == (3, 1)
    store.fail_active(exp.id, "lost")
    assert store.experiments_with_active_trials() == []


def test_not_found(store):
    with pytest.raises(NotFound):
        store.get_experiment("exp-nope")


def test_migrations_are_idempotent_and_state_survives(db_url):
    url = db_url
    s1 = Store(url)
    exp = make(s1)
    s1.close()
    s2 = Store(url)  # upgrade to head again: a no-op
    assert s2.get_experiment(exp.id).name == "e"
    assert s2.counts() == {"experiments": 1, "variants": 1, "trials": 2, "evaluations": 0}
    s2.close()


def test_sqlite_runs_in_wal_mode(tmp_path):
    store = Store(f"sqlite:///{tmp_path / 'ablate.db'}")
    try:
        with store.engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
    finally:
        store.close()


# ---- migrations on both dialects -----------------------------------------------------------

def _schema_diff(url: str) -> list:
    """What autogenerate would change to make the migrated schema match the ORM models."""
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            ctx = MigrationContext.configure(conn, opts={"compare_type": True})
            return compare_metadata(ctx, Base.metadata)
    finally:
        engine.dispose()


def _changes(url: str) -> set[tuple[str, ...]]:
    """The schema diff as (operation, table, column) triples."""
    out: set[tuple[str, ...]] = set()
    for entry in _schema_diff(url):
        for op in entry if isinstance(entry, list) else [entry]:
            if op[0] == "add_column":
                out.add((op[0], op[2], op[3].name))
            elif op[0] == "modify_type":
                out.add((op[0], op[2], op[3]))
            elif op[0] == "add_table":
                out.add((op[0], op[1].name))
            elif op[0] == "add_index":
                out.add((op[0], op[1].table.name, op[1].name))
            else:
                out.add((op[0], repr(op[1:])))
    return out


def test_migrations_build_the_models_schema(db_url):
    migrate(db_url)
    assert _schema_diff(db_url) == []


def test_downgrade_to_base_and_upgrade_again(db_url):
    s = Store(db_url)
    make(s)
    long_id = make_long(s)
    s.close()
    cfg = alembic_config(db_url)
    # Step down one revision at a time; the comparison with the models sees what each undid.
    command.downgrade(cfg, "0009")
    resubmits = {("add_column", "experiments", "job_resubmits")}
    assert _changes(db_url) == resubmits
    command.downgrade(cfg, "0008")
    evaluations = resubmits | {("add_table", "evaluations"), *(
        ("add_index", "evaluations", f"ix_evaluations_{c}")
        for c in ("experiment_id", "trial_id", "state"))}
    assert _changes(db_url) == evaluations
    command.downgrade(cfg, "0007")
    ray_node = evaluations | {("add_column", "trials", "worker_ray_node")}
    assert _changes(db_url) == ray_node
    command.downgrade(cfg, "0006")
    fingerprints = ray_node | {("add_column", "trials", "fingerprints")}
    assert _changes(db_url) == fingerprints
    command.downgrade(cfg, "0005")
    one_per_seed = fingerprints | {("add_index", "trials", "ux_trials_variant_seed")}
    assert _changes(db_url) == one_per_seed
    command.downgrade(cfg, "0004")
    keyed = one_per_seed | {("add_column", "experiments", "idempotency_key"),
                            ("add_index", "experiments", "ix_experiments_idempotency_key")}
    assert _changes(db_url) == keyed
    command.downgrade(cfg, "0003")
    finalized = keyed | {("add_column", "experiments", "finalized_at")}
    assert _changes(db_url) == finalized
    command.downgrade(cfg, "0002")
    widened = {("modify_type", "variants", "name"), ("modify_type", "experiments", "baseline"),
               ("modify_type", "experiments", "primary_metric")}
    # 0003 is PostgreSQL-only
    undone = finalized | (widened if db_url.startswith("postgresql") else set())
    assert _changes(db_url) == undone
    # long names are cut to fit on PostgreSQL, not lost (raw SQL: the models are at head)
    engine = sa.create_engine(db_url)
    with engine.connect() as conn:
        name = conn.execute(sa.text(
            "SELECT name FROM variants WHERE experiment_id = :id ORDER BY position LIMIT 1"
        ), {"id": long_id}).scalar_one()
    engine.dispose()
    assert name == (LONG_NAME[:200] if db_url.startswith("postgresql") else LONG_NAME)
    command.downgrade(cfg, "0001")
    assert _changes(db_url) == undone | {("add_column", "trials", "history")}
    command.downgrade(cfg, "base")
    assert _tables(db_url) == {"alembic_version"}
    migrate(db_url)
    assert _schema_diff(db_url) == []
    s = Store(db_url)
    assert s.counts() == {"experiments": 0, "variants": 0, "trials": 0, "evaluations": 0}
    assert make(s).status == "pending"
    s.close()


def _tables(url: str) -> set[str]:
    engine = make_engine(url)
    try:
        return set(inspect(engine).get_table_names())
    finally:
        engine.dispose()


# ---- concurrent writers on PostgreSQL ------------------------------------------------------
# SQLite serialises writers (BEGIN IMMEDIATE takes the write lock up front); PostgreSQL runs
# them concurrently under READ COMMITTED, so a guarded transition that reads the state and then
# writes must lock the row it read. These races are made deterministic by holding the trial's
# row lock from a third connection until every contender is queued behind it.

def _race(url: str, trial_id: int, *calls: Callable[[Store], Any]) -> list[Any]:
    """Run each call on its own Store at once, all queued on the trial's row; their results."""
    stores = [Store(url, run_migrations=False) for _ in calls]
    blocker = make_engine(url)
    try:
        with blocker.connect() as holder, blocker.connect() as watcher, \
                ThreadPoolExecutor(len(calls)) as pool:
            holder.execute(text("SELECT id FROM trials WHERE id = :i FOR UPDATE"), {"i": trial_id})
            futures = [pool.submit(call, st) for call, st in zip(calls, stores, strict=True)]
            deadline = time.monotonic() + 30
            while _lock_waiters(watcher) < len(calls):
                assert time.monotonic() < deadline, "the contenders never queued on the row"
                assert not any(f.done() for f in futures), [f.result() for f in futures]
                time.sleep(0.02)
            holder.commit()  # release: the contenders now go one at a time
            return [f.result(timeout=30) for f in futures]
    finally:
        blocker.dispose()
        for st in stores:
            st.close()


def _lock_waiters(conn: Connection) -> int:
    n = conn.execute(text(
        "SELECT count(*) FROM pg_stat_activity"
        " WHERE datname = current_database() AND wait_event_type = 'Lock'"
    )).scalar_one()
    conn.rollback()  # a fresh snapshot next time
    return n


def test_postgres_racing_final_transitions_have_one_winner(pg_url):
    store = Store(pg_url)
    trial = make(store).trials[0]
    store.mark_running(trial.id, worker_pid=1)
    won = _race(
        pg_url, trial.id,
        lambda s: s.mark_finished(trial.id, metrics={"mean_recall": 1.0}, mlflow_run_id="r",
                                  mlflow_experiment_id=None, steps=3),
        lambda s: s.mark_failed(trial.id, "worker lost"),
    )
    assert sorted(won) == [False, True]
    got = store.get_trial(trial.id)
    if won[0]:
        assert (got.state, got.error, got.metrics) == (TrialState.FINISHED, None,
                                                        {"mean_recall": 1.0})
    else:
        assert (got.state, got.error) == (TrialState.FAILED, "worker lost")
    store.close()


def test_postgres_racing_attempts_are_all_counted(pg_url):
    store = Store(pg_url)
    trial = make(store).trials[0]
    views = _race(pg_url, trial.id, *[
        (lambda s, pid=pid: s.mark_running(trial.id, worker_pid=pid)) for pid in (11, 12, 13)
    ])
    assert sorted(v.attempts for v in views) == [1, 2, 3]
    got = store.get_trial(trial.id)
    assert got.attempts == 3 and got.state == TrialState.RUNNING
    assert got.worker_pid == next(v.worker_pid for v in views if v.attempts == 3)
    store.close()


def test_postgres_concurrent_migrations_take_turns(pg_url):
    """Controllers starting together on a fresh database: each migration waits for the other.

    Separate processes (Alembic's ``context``/``op`` are process globals, not thread-safe),
    all queued behind the migration lock held here, then released at once.
    """
    code = f"from service.store import migrate; migrate({pg_url!r})"
    engine = make_engine(pg_url)
    procs: list[subprocess.Popen[str]] = []
    try:
        with engine.connect() as holder, engine.connect() as watcher:
            holder.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": MIGRATION_LOCK_KEY})
            procs = [subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, text=True,
                                      stderr=subprocess.PIPE) for _ in range(3)]
            deadline = time.monotonic() + 60
            while _lock_waiters(watcher) < len(procs):
                assert time.monotonic() < deadline, "the migrations never queued on the lock"
                done = [p for p in procs if p.poll() is not None]  # none may pass the lock
                assert not done, [p.communicate()[1] for p in done]
                time.sleep(0.05)
            holder.commit()
            errors = [p.communicate(timeout=60)[1] for p in procs]
            assert [p.returncode for p in procs] == [0] * len(procs), errors
    finally:
        engine.dispose()
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    assert _schema_diff(pg_url) == []


def test_non_finite_metrics_are_stored(store):
    """NaN/inf are not JSON: SQLite keeps Python's tokens, PostgreSQL gets null (not an error)."""
    trial = make(store).trials[0]
    store.mark_running(trial.id, worker_pid=1)
    store.update_progress(trial.id, 1, 2, {"loss": float("nan"), "gain": float("-inf"),
                                           "lr": 0.5})
    got = store.get_trial(trial.id).metrics
    assert got["lr"] == 0.5
    if store.engine.dialect.name == "sqlite":
        assert math.isnan(got["loss"]) and got["gain"] == float("-inf")
    else:
        assert got["loss"] is None and got["gain"] is None
    assert store.mark_finished(trial.id, metrics={"mean_recall": float("nan")},
                               mlflow_run_id="r", mlflow_experiment_id=None, steps=2)


LONG_NAME = ",".join(f"objectives.f{i}.weight=0.{i}" for i in range(20))  # ~460 characters
LONG_METRIC = "val_" + "x" * 150


def make_long(store: Store) -> str:
    """An experiment whose variant, baseline and primary metric have long names; its id."""
    return store.create_experiment(
        name="long", description="", spec={}, design="factorial", baseline=LONG_NAME,
        primary_metric=LONG_METRIC,
        variants=[NewVariant(LONG_NAME, {"X": LONG_NAME}, {}, {}, "h",
                             [NewTrial(seed=0, trial_key="k")])],
    ).id


def test_generated_names_of_any_length_are_stored(store):
    """A factorial variant's name joins every factor's level label, so it has no length bound
    (nor has the spec's primary metric); SQLite never enforced VARCHAR lengths, PostgreSQL does.
    """
    got = store.get_experiment(make_long(store))
    assert (got.baseline, got.primary_metric, got.variants[0].name) == (
        LONG_NAME, LONG_METRIC, LONG_NAME)


# ---- adding seeds to a stored experiment (adaptive seeds' next look) ----------------------

def seeds_of(store: Store, exp_id: str) -> list[int]:
    return sorted(t.seed for t in store.get_experiment(exp_id).trials)


def test_adding_seeds_is_idempotent(store: Store) -> None:
    exp = make(store)
    wanted = {"a": [NewTrial(seed=2, trial_key="k2"), NewTrial(seed=3, trial_key="k3")]}
    assert store.add_trials(exp.id, wanted) == 2
    assert store.add_trials(exp.id, wanted) == 0
    assert seeds_of(store, exp.id) == [0, 1, 2, 3]
    new = [t for t in store.get_experiment(exp.id).trials if t.seed >= 2]
    assert {t.state for t in new} == {"pending"}


def test_a_seed_finished_elsewhere_is_reused_unless_rerun(store: Store) -> None:
    first = make(store, keys=("k0", "k1", "k9"), name="first")
    finish(store, first.trials[2].id, run="run-k9")
    exp = make(store, name="second")
    assert store.add_trials(exp.id, {"a": [NewTrial(seed=2, trial_key="k9")]}) == 1
    (added,) = [t for t in store.get_experiment(exp.id).trials if t.seed == 2]
    assert added.state == "cached" and added.mlflow_run_id == "run-k9"
    other = make(store, name="third", rerun=True)
    store.add_trials(other.id, {"a": [NewTrial(seed=2, trial_key="k9")]}, reuse_cached=False)
    (added,) = [t for t in store.get_experiment(other.id).trials if t.seed == 2]
    assert added.state == "pending"


def test_one_trial_per_variant_and_seed_is_the_stores_rule(store: Store) -> None:
    exp = make(store)
    with pytest.raises(IntegrityError), store.session() as s:
        t = s.get(Trial, exp.trials[0].id)
        s.add(Trial(experiment_id=exp.id, variant_id=t.variant_id, seed=t.seed,
                    trial_key="again", state="pending", attempts=0, step=0, total_steps=0,
                    metrics={}))
    assert seeds_of(store, exp.id) == [0, 1]


def test_concurrent_adds_of_the_same_seeds_insert_them_once(store: Store) -> None:
    exp = make(store)
    wanted = {"a": [NewTrial(seed=s, trial_key=f"k{s}") for s in range(2, 8)]}
    added: list[int] = []
    threads = [threading.Thread(target=lambda: added.append(store.add_trials(exp.id, wanted)))
               for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(added) == 6 and seeds_of(store, exp.id) == list(range(8))


def test_an_unknown_variant_is_refused_and_nothing_added(store: Store) -> None:
    exp = make(store)
    with pytest.raises(KeyError, match="nope"):
        store.add_trials(exp.id, {"a": [NewTrial(seed=5, trial_key="k5")],
                                  "nope": [NewTrial(seed=5, trial_key="k5")]})
    assert seeds_of(store, exp.id) == [0, 1]
