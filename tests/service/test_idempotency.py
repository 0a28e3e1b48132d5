"""``Idempotency-Key``: a retried POST returns the experiment the first one stored, a reused key
with another spec is a 409, and of racing POSTs with one key exactly one inserts.

Over HTTP on the real app and a SQLite store (``api_client``: the real executor, with Ray and
MLflow at a closed port, so each submission fails at once and is logged); the race and the
store's part on SQLite and on PostgreSQL.
"""

from __future__ import annotations

import json
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
import yaml
from alembic import command

from service import submit
from service.execution import Executor
from service.store import KeyTaken, NewTrial, NewVariant, Store, alembic_config, migrate
from tests.service.api_client import GOOD, JSON, YAML, make_client, offline_settings

KEY = {"Idempotency-Key": "4f6c1e0a-retry-me"}


@pytest.fixture
def client(tmp_path):
    with make_client(tmp_path) as c:
        yield c


def post(client, body=GOOD, headers=KEY, **kw):
    return client.post("/experiments", content=json.dumps(body).encode(),
                       headers={**JSON, **headers}, **kw)


def submit_attempts(caplog, exp_id: str) -> int:
    """How many times the POST handed ``exp_id`` to the executor: each failed submission (Ray
    is at a closed port) is logged once by ``service.submit``."""
    return sum(r.name == "service.submit" and exp_id in r.getMessage() for r in caplog.records)


def test_a_repeated_post_returns_the_first_experiment_and_creates_nothing(client, caplog):
    first = post(client)
    assert first.status_code == 201, first.text
    exp_id = first.json()["id"]
    assert first.json()["submit_error"]  # Ray is down: stored, left to the reconciler
    after_first = client.store.counts()
    again = post(client)
    assert again.status_code == 200 and again.headers["Idempotent-Replayed"] == "true"
    assert again.json()["id"] == exp_id and again.json()["submit_error"] is None
    assert again.json()["variants"] == first.json()["variants"]
    assert client.store.counts() == after_first == {"experiments": 1, "variants": 2, "trials": 4,
                                                         "evaluations": 0}
    stored = client.store.get_experiment(exp_id)
    assert stored.idempotency_key == KEY["Idempotency-Key"]
    assert stored.job_submissions == 0 and stored.job_submission_id is None
    assert submit_attempts(caplog, exp_id) == 1  # submitted once, not again on the replay


def test_the_same_spec_written_differently_is_the_same_request(client):
    exp_id = post(client, {**GOOD, "seeds": [0, 1]}).json()["id"]  # GOOD says "seeds": 2
    as_yaml = client.post("/experiments", content=yaml.safe_dump(GOOD).encode(),
                          headers={**YAML, **KEY})
    assert as_yaml.status_code == 200 and as_yaml.json()["id"] == exp_id


def test_the_same_key_with_another_spec_is_409_and_changes_nothing(client):
    exp_id = post(client).json()["id"]
    before = client.store.counts()
    r = post(client, {**GOOD, "seeds": 3})
    assert r.status_code == 409
    detail = r.json()["detail"][0]
    assert detail["field"] == "Idempotency-Key" and exp_id in detail["reason"]
    assert client.store.counts() == before


def test_without_a_key_each_post_is_new_and_other_keys_are_independent(client):
    ids = {post(client, headers={}).json()["id"] for _ in range(2)}
    ids.add(post(client, headers={"Idempotency-Key": "another"}).json()["id"])
    assert len(ids) == 3


@pytest.mark.parametrize("key", ["", "x" * 201, "has space", "caf\u00e9"])
@pytest.mark.parametrize("dry", [True, False], ids=["dry_run", "post"])
def test_a_malformed_key_is_422_naming_the_header(client, key, dry):
    before = client.store.counts()
    r = client.post("/experiments", content=json.dumps(GOOD).encode("utf-8"),
                    headers={**JSON, "Idempotency-Key": key.encode()},
                    params={"dry_run": "true"} if dry else None)
    assert r.status_code == 422, r.text
    assert r.json()["detail"][0]["field"] == "Idempotency-Key"
    assert client.store.counts() == before


def test_a_dry_run_with_a_key_stores_nothing_and_keeps_the_key_free(client):
    assert post(client, params={"dry_run": "true"}).status_code == 200
    assert client.store.counts()["experiments"] == 0
    assert post(client).status_code == 201


# ---- the store and the race, on both dialects --------------------------------------------------

@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request, tmp_path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'ablate.db'}"
    return request.getfixturevalue("pg_url")


def _create(store: Store, key: str | None):
    return store.create_experiment(
        name="e", description="", spec={"name": "e"}, design="factorial", baseline="a",
        primary_metric="mean_recall", idempotency_key=key,
        variants=[NewVariant("a", {}, {}, {}, "h", [NewTrial(seed=0, trial_key="k")])],
    )


def test_the_unique_key_refuses_a_second_insert_and_null_repeats(db_url):
    store = Store(db_url)
    try:
        first = _create(store, "k1")
        with pytest.raises(KeyTaken):
            _create(store, "k1")
        assert store.counts() == {"experiments": 1, "variants": 1, "trials": 1, "evaluations": 0}
        _create(store, None), _create(store, None)
        assert store.counts()["experiments"] == 3
        found = store.experiment_by_key("k1")
        assert found is not None and found.id == first.id and found.idempotency_key == "k1"
        assert store.experiment_by_key("nope") is None
    finally:
        store.close()


def test_the_migration_keeps_every_stored_experiment(db_url):
    store = Store(db_url)
    exp = _create(store, None)
    store.close()
    command.downgrade(alembic_config(db_url), "0004")  # a store from before the key
    migrate(db_url)
    store = Store(db_url)
    try:
        kept = store.get_experiment(exp.id)
        assert kept.idempotency_key is None and len(kept.trials) == 1
        assert store.counts() == {"experiments": 1, "variants": 1, "trials": 1, "evaluations": 0}
    finally:
        store.close()


def _planned(tmp_path):
    return submit.plan(json.dumps(GOOD).encode(), offline_settings(tmp_path), as_json=True)


def test_a_post_that_loses_the_race_returns_the_winner(db_url, tmp_path, monkeypatch, caplog):
    """The loser's lookup ran before the winner committed: its insert hits the unique index."""
    store, planned = Store(db_url), _planned(tmp_path)
    executor = Executor(offline_settings(tmp_path), store)
    try:
        winner = submit.submit(planned, store, executor, idempotency_key="race")
        exp_id = winner.experiment.id
        assert not winner.replayed and winner.submit_error
        monkeypatch.setattr(store, "experiment_by_key",
                            _none_once(store.experiment_by_key))
        loser = submit.submit(planned, store, executor, idempotency_key="race")
        assert loser.replayed and loser.experiment.id == exp_id and loser.submit_error is None
        assert store.counts()["experiments"] == 1
        assert submit_attempts(caplog, exp_id) == 1  # the loser submitted nothing
    finally:
        store.close()


def _none_once(lookup):
    calls = []

    def first_none(key):
        calls.append(key)
        return None if len(calls) == 1 else lookup(key)

    return first_none


def test_racing_posts_with_one_key_make_one_experiment(db_url, tmp_path):
    planned = _planned(tmp_path)
    Store(db_url).close()  # migrate once, before the racers
    stores = [Store(db_url, run_migrations=False) for _ in range(4)]
    start = threading.Barrier(len(stores))

    def race(store: Store) -> submit.Submission:
        executor = Executor(offline_settings(tmp_path), store)
        start.wait()
        return submit.submit(planned, store, executor, idempotency_key="same")

    try:
        with ThreadPoolExecutor(len(stores)) as pool:
            results = list(pool.map(race, stores))
        assert len({r.experiment.id for r in results}) == 1
        assert sum(not r.replayed for r in results) == 1
        assert stores[0].counts()["experiments"] == 1
        stored = stores[0].get_experiment(results[0].experiment.id)
        assert stored.idempotency_key == "same" and stored.job_submissions == 0
    finally:
        for s in stores:
            s.close()


def test_the_cli_sends_json_as_json_and_the_key(client, tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from service import cli

    monkeypatch.setattr(cli, "_client", lambda _url: client)
    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps(GOOD, indent="\t"))  # tabs: JSON, not YAML
    args = ["submit", str(spec), "--idempotency-key", "cli-1"]
    for _ in range(2):
        result = CliRunner().invoke(cli.app, args)
        assert result.exit_code == 0, result.output
    assert client.store.counts()["experiments"] == 1
