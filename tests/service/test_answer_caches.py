"""The answer caches: /compare, /report and status computed once per state of an experiment.

Real store (SQLite in tmp_path; the revision also on PostgreSQL), the real app in-process
(TestClient), the real analysis and renderers; trials changed through ``service.store`` as the
supervisor changes them. Whatever the cache answers must be byte for byte what a fresh
computation answers, and a change of any trial must never be answered from the cache.
"""

from __future__ import annotations

import subprocess
import sys
import threading
import time

import pytest
from fastapi.testclient import TestClient
from pydantic import TypeAdapter

from service import report, views
from service.api import create_app
from service.api.models import ExperimentOut, experiment_out
from service.api.revision_cache import RevisionCache
from service.settings import Settings
from service.store import NewTrial, NotFound, Store, TrialState
from service.views import CompareQuery
from tests.service.test_compare_api import MLFLOW_UI, ONE_SEED, UNFINISHED, plant_experiment


@pytest.fixture
def app_client(tmp_path):
    settings = Settings(data_dir=tmp_path, ray_address="http://127.0.0.1:9",
                        mlflow_tracking_uri="http://127.0.0.1:9", mlflow_ui_url=MLFLOW_UI)
    app = create_app(settings, reconcile=False)
    with TestClient(app) as client:
        client.store = app.state.store
        client.settings = settings
        client.exp_id = plant_experiment(app.state.store)
        client.caches = lambda: app.state.caches
        yield client


def _trial(store: Store, exp_id: str, variant: str, seed: int):
    return next(t for t in store.get_experiment(exp_id).trials
                if (t.variant, t.seed) == (variant, seed))


def test_a_changed_trial_is_never_answered_from_the_cache(app_client):
    c, store, exp_id = app_client, app_client.store, app_client.exp_id
    url = f"/experiments/{exp_id}/compare"
    first = c.get(url).json()
    by = {v["name"]: v for v in first["variants"]}
    assert by[UNFINISHED[0]]["n_done"] == 2
    assert c.get(url).json() == first
    hits = c.caches().compare.cache.stats.hits
    assert hits >= 1
    status = c.get(f"/experiments/{exp_id}").json()
    assert status["status"] == "running"

    # the running trial reports progress: status and compare both change
    t = _trial(store, exp_id, *UNFINISHED)
    store.update_progress(t.id, 10, 20, {"loss": 1.5})
    assert c.get(f"/experiments/{exp_id}").json() != status
    # ... and finishes with a result that moves its variant's mean
    store.mark_finished(t.id, metrics=_result(99.0), mlflow_run_id="late",
                        mlflow_experiment_id="7", steps=20)
    after = c.get(url).json()
    by = {v["name"]: v for v in after["variants"]}
    assert by[UNFINISHED[0]]["n_done"] == 3 and after != first
    assert c.get(f"/experiments/{exp_id}").json()["status"] == "pending"  # ONE_SEED's seeds
    # every format and the report page see each new result
    md = c.get(url, params={"format": "markdown"}).text
    store.mark_running(_trial(store, exp_id, ONE_SEED, 1).id, worker_pid=3)
    store.mark_finished(_trial(store, exp_id, ONE_SEED, 1).id, metrics=_result(41.0),
                        mlflow_run_id="s1", mlflow_experiment_id="7", steps=20)
    assert c.get(url, params={"format": "markdown"}).text != md
    page = c.get(f"/experiments/{exp_id}/report").text
    store.mark_failed(_trial(store, exp_id, ONE_SEED, 2).id, "diverged")
    assert c.get(f"/experiments/{exp_id}").json()["status"] == "failed"
    store.retry_failed(exp_id)
    store.mark_running(_trial(store, exp_id, ONE_SEED, 2).id, worker_pid=4)
    store.mark_finished(_trial(store, exp_id, ONE_SEED, 2).id, metrics=_result(42.0),
                        mlflow_run_id="s2", mlflow_experiment_id="7", steps=20)
    assert c.get(f"/experiments/{exp_id}/report").text != page
    assert c.get(f"/experiments/{exp_id}").json()["status"] == "finished"


def _result(mean_recall: float) -> dict[str, float]:
    return {"mean_recall": mean_recall, "t2i_r1": mean_recall - 10, "i2t_r1": mean_recall - 12}


def test_cached_answers_are_the_fresh_bytes(app_client):
    c, store, exp_id, settings = (app_client, app_client.store, app_client.exp_id,
                                  app_client.settings)
    query = CompareQuery(baseline="ITC=on,HN=off", alpha=0.1, correction="bonferroni")
    params = {"baseline": query.baseline, "alpha": query.alpha, "correction": query.correction}
    for fmt in report.FORMATS:
        computed = c.get(f"/experiments/{exp_id}/compare", params={**params, "format": fmt})
        cached = c.get(f"/experiments/{exp_id}/compare", params={**params, "format": fmt})
        fresh, media_type = views.compare(store, exp_id, fmt, query, settings)
        assert computed.content == cached.content == fresh, fmt
        assert cached.headers["content-type"] == media_type
    stats = c.caches().compare.cache.stats
    assert stats.entries == len(report.FORMATS) and stats.hits == len(report.FORMATS)
    # another query is another answer, not the cached one
    default = c.get(f"/experiments/{exp_id}/compare").json()
    assert default["baseline"] == "ITC=off,HN=off" and default["correction"] == "holm"


def test_status_body_is_what_the_response_model_writes(app_client):
    c, store, exp_id = app_client, app_client.store, app_client.exp_id
    expected = TypeAdapter(ExperimentOut).dump_json(
        experiment_out(store.get_experiment(exp_id), app_client.settings))
    first, again = c.get(f"/experiments/{exp_id}"), c.get(f"/experiments/{exp_id}")
    assert first.content == again.content == expected
    assert first.headers["content-type"] == "application/json"
    assert c.caches().status.cache.stats.hits == 1
    for path in ("", "/compare", "/report"):
        r = c.get(f"/experiments/exp-missing{path}")
        assert r.status_code == 404
        assert r.json() == {"detail": [{"field": "id", "reason": "no experiment 'exp-missing'"}]}


# ---- the revision ---------------------------------------------------------------------------

@pytest.fixture(params=["sqlite", "postgresql"])
def store(request, tmp_path):
    url = (f"sqlite:///{tmp_path / 'ablate.db'}" if request.param == "sqlite"
           else request.getfixturevalue("pg_url"))
    s = Store(url)
    yield s
    s.close()


def test_every_write_changes_the_revision_and_reads_do_not(store):
    exp_id = plant_experiment(store)
    trials = store.get_experiment(exp_id).trials
    running = next(t for t in trials if t.state == TrialState.RUNNING)
    pending = [t for t in trials if t.state == TrialState.PENDING]
    writes = [
        lambda: store.update_progress(running.id, 5, 20, {"loss": 2.0}),
        lambda: store.update_progress(running.id, 5, 20, {"loss": 1.9}),  # same step
        lambda: store.mark_retrying(running.id, "oom"),
        lambda: store.mark_running(running.id, worker_pid=2),
        lambda: store.mark_finished(running.id, metrics={"mean_recall": 1.0},
                                    mlflow_run_id="r", mlflow_experiment_id="7", steps=20),
        lambda: store.mark_failed(pending[0].id, "boom"),
        lambda: store.set_mlflow(exp_id, "8", "parent"),
        lambda: store.record_job_submission(exp_id, f"{exp_id}-r1"),
        lambda: store.mark_cancel_requested(exp_id),
        lambda: store.cancel_trials(exp_id),
        lambda: store.retry_failed(exp_id),
        lambda: store.fail_active(exp_id, "lost"),
        lambda: store.mark_finalized(exp_id),
        lambda: store.add_trials(exp_id, {"ITC=off,HN=off": [NewTrial(seed=99, trial_key="k99")]}),
    ]
    seen = [store.revision(exp_id)]
    for write in writes:
        store.get_experiment(exp_id, with_history=True)
        store.list_experiments()
        assert store.revision(exp_id) == seen[-1], "a read changed the revision"
        write()
        seen.append(store.revision(exp_id))
        assert seen[-1] != seen[-2], write
    assert len(set(seen)) == len(seen)
    with pytest.raises(NotFound):
        store.revision("exp-missing")


# ---- the cache itself ------------------------------------------------------------------------

def test_lru_is_bounded_by_entries_and_bytes():
    cache = RevisionCache(max_entries=3, max_bytes=100)
    for i in range(4):
        cache.put(i, "r", (b"x" * 10, "text/plain"))
    assert cache.get(0, "r") is None and cache.get(3, "r") is not None
    assert cache.get(1, "r") is not None  # now the most recent: 2 goes next
    cache.put(4, "r", (b"y" * 85, "text/plain"))
    assert cache.get(2, "r") is None and cache.get(3, "r") is None
    assert cache.get(1, "r") is not None and cache.get(4, "r") is not None
    assert cache.stats.bytes == 95 and cache.stats.entries == 2
    cache.put(5, "r", (b"z" * 101, "text/plain"))  # too big to keep: kept nothing, lost nothing
    assert cache.get(5, "r") is None and cache.stats.bytes == 95
    cache.put(1, "r2", (b"new", "text/plain"))  # a new revision replaces its slot
    assert cache.get(1, "r") is None and cache.get(1, "r2") == (b"new", "text/plain")


def test_concurrent_misses_compute_once():
    cache = RevisionCache(max_entries=8, max_bytes=1 << 20)
    calls: list[int] = []
    gate = threading.Event()

    def compute() -> tuple[bytes, str]:
        calls.append(1)
        gate.wait(5)
        return b"body", "text/plain"

    results: list[tuple[bytes, str]] = []
    threads = [threading.Thread(target=lambda: results.append(
        cache.get_or_compute("k", "r", compute))) for _ in range(8)]
    for t in threads:
        t.start()
    time.sleep(0.2)
    gate.set()
    for t in threads:
        t.join(5)
    assert len(calls) == 1 and results == [(b"body", "text/plain")] * 8

    def refuse() -> tuple[bytes, str]:
        raise ValueError("bad query")

    with pytest.raises(ValueError):
        cache.get_or_compute("k2", "r", refuse)
    assert cache.get("k2", "r") is None


def test_a_known_revision_lasts_until_any_process_commits(tmp_path):
    """``Revisions.known`` (what lets a status poll skip the query) on a SQLite file: the last
    revision read until anyone commits, this process or another."""
    db = tmp_path / "ablate.db"
    store = Store(f"sqlite:///{db}")
    try:
        exp_id = plant_experiment(store)
        assert store.revisions.known(exp_id) is None  # never read
        read = store.revision(exp_id)
        assert store.revisions.known(exp_id) == read
        store.get_experiment(exp_id)  # reads commit nothing
        assert store.revisions.known(exp_id) == read
        running = _trial(store, exp_id, *UNFINISHED)
        store.update_progress(running.id, 3, 20, {"loss": 2.0})  # another connection
        assert store.revisions.known(exp_id) is None
        read = store.revision(exp_id)
        script = ("import sqlite3, sys; c = sqlite3.connect(sys.argv[1]); c.execute("
                  "'UPDATE trials SET step = 7 WHERE id = ?', (int(sys.argv[2]),)); c.commit()")
        subprocess.run([sys.executable, "-c", script, str(db), str(running.id)], check=True,
                       timeout=30)
        assert store.revisions.known(exp_id) is None
        assert store.revision(exp_id) != read
    finally:
        store.close()
