"""Hostile and careless requests cost little, answer a JSON 4xx naming what to blame, and change
nothing in the store; the dry run and the real POST refuse exactly the same specs.

The real app on a real SQLite store, in-process (``api_client``): Ray and MLflow are at a closed
port, so a POST that passes stores its experiment and returns 201 with a ``submit_error``. The
inputs are the issue's, made small: a 4-level alias bomb (the 6-level one answered with 78 MB),
JSON 100k deep, a 2 MB body, ``seeds: 1000000000`` (under a memory cap: the old code built the
list and the controller was OOM-killed), seeds of 2**63 and 2**31.
"""

from __future__ import annotations

import json
import resource
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime

import anyio
import pytest
from fastapi.testclient import TestClient

from service import submit
from service.api import create_app
from service.settings import Settings
from tests.service.api_client import GOOD, JSON, YAML, make_client


@pytest.fixture
def client(tmp_path) -> Iterator[TestClient]:
    with make_client(tmp_path) as c:
        yield c


@contextmanager
def memory_cap(headroom: int = 1 << 30) -> Iterator[None]:
    """At most ``headroom`` more address space while inside: a regression that materialises a
    huge list fails with MemoryError (a 500) instead of taking the machine down."""
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    with open("/proc/self/statm") as f:
        used = int(f.read().split()[0]) * resource.getpagesize()
    cap = used + headroom if hard == resource.RLIM_INFINITY else min(hard, used + headroom)
    resource.setrlimit(resource.RLIMIT_AS, (cap, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))


def alias_bomb(levels: int = 4, width: int = 9) -> bytes:
    """``width ** levels`` strings from a few hundred bytes (each alias repeats the one before)."""
    items = ["&a0 [" + ", ".join(["lol"] * width) + "]"]
    items += [f"&a{i} [" + ", ".join([f"*a{i - 1}"] * width) + "]" for i in range(1, levels + 1)]
    return ("name: bomb\nfactors:\n  F:\n    path: objectives.itc.enabled\n    levels:\n"
            "      - false\n      - [" + ", ".join(items) + "]\n").encode()


def deep_json(depth: int) -> bytes:
    return b'{"name": "x", "description": ' + b"[" * depth + b"]" * depth + b"}"


def post(client: TestClient, body: bytes, headers: dict[str, str], dry: bool = False):
    return client.post("/experiments", content=body, headers=headers,
                       params={"dry_run": "true"} if dry else None)


def refused(r, status: int, field: str) -> str:
    """The refusal's reason, after checking it is JSON in the API's shape naming ``field``."""
    assert r.status_code == status, r.text[:300]
    assert r.headers["content-type"].startswith("application/json")
    assert len(r.content) < 2000, len(r.content)  # no echo of an amplified input
    detail = r.json()["detail"]
    assert detail[0]["field"] == field, detail
    return str(detail[0]["reason"])


# ---- each hostile input ----------------------------------------------------------------------

HOSTILE = {
    "alias bomb": (alias_bomb(), YAML, 422, "<body>", "alias"),
    "JSON 100k deep": (deep_json(100_000), JSON, 422, "<body>", "deeper than 32"),
    "YAML 40 deep": (b"name: x\ndescription: " + b"[" * 40 + b"]" * 40, YAML, 422, "<body>",
                     "deeper than 32"),
    "a 5000-digit integer": (b'{"name": "x", "seeds": ' + b"7" * 5000 + b"}", JSON, 422,
                             "<body>", "digits"),
    "not UTF-8": (b'{"name": "\xff"}', JSON, 422, "<body>", "not valid JSON"),
    "seed 2**63": (json.dumps({**GOOD, "seeds": [2**63]}).encode(), JSON, 422, "seeds",
                   "seeds[0]"),
    "seed 2**31": (json.dumps({**GOOD, "seeds": [5, 2**31]}).encode(), JSON, 422, "seeds",
                   "seeds[1]"),
    "negative seed": (json.dumps({**GOOD, "seeds": [-1]}).encode(), JSON, 422, "seeds",
                      "seeds[0]"),
    "a level label of 300 characters": (json.dumps({**GOOD, "factors": {"T": {
        "path": "objectives.itc.temp", "levels": [0.07, {"name": "t" * 300, "value": 0.1}]}}}
    ).encode(), JSON, 422, "factors.T.levels", "short 'name'"),
}


@pytest.mark.parametrize("case", list(HOSTILE))
@pytest.mark.parametrize("dry", [True, False], ids=["dry_run", "post"])
def test_hostile_input_is_a_small_json_4xx_and_changes_nothing(client, case, dry):
    body, headers, status, field, says = HOSTILE[case]
    before = client.store.counts()
    t = time.perf_counter()
    r = post(client, body, headers, dry)
    assert time.perf_counter() - t < 5
    assert says in refused(r, status, field)
    assert client.store.counts() == before


def test_a_seed_count_of_a_billion_is_refused_before_any_list_is_built(client):
    body = json.dumps({**GOOD, "seeds": 1_000_000_000}).encode()
    before = client.store.counts()
    with memory_cap():
        r = post(client, body, JSON)
    assert "between 1 and 10000" in refused(r, 422, "seeds")
    assert client.store.counts() == before


def test_a_seed_count_over_the_trial_limit_names_the_limit(client):
    r = post(client, json.dumps({**GOOD, "seeds": 11}).encode(), JSON)  # 2 x 11 > 20
    assert "limit is 20 trials" in refused(r, 422, "seeds")


def test_the_largest_seed_is_accepted(client):
    r = post(client, json.dumps({**GOOD, "seeds": [0, 2**31 - 1]}).encode(), JSON)
    assert r.status_code == 201, r.text
    exp = client.get(f"/experiments/{r.json()['id']}").json()
    assert sorted(t["seed"] for v in exp["variants"] for t in v["trials"]) == [0, 0, 2**31 - 1,
                                                                                2**31 - 1]


# ---- the body limit -------------------------------------------------------------------------

def test_a_2mb_body_is_413_unread(client):
    body = json.dumps({**GOOD, "description": "x" * 2_000_000}).encode()
    before = client.store.counts()
    assert "limit of 1048576 bytes" in refused(post(client, body, JSON), 413, "<body>")
    assert client.store.counts() == before


def test_a_chunked_2mb_body_is_413(client):
    def chunks() -> Iterator[bytes]:  # no Content-Length: the limit counts what streams in
        yield json.dumps({**GOOD, "description": "x" * 2_000_000}).encode()

    before = client.store.counts()
    r = client.post("/experiments", content=chunks(), headers=JSON)
    assert "Content-Length" not in r.request.headers
    refused(r, 413, "<body>")
    assert client.store.counts() == before


def test_an_endless_chunked_body_is_cut_at_the_limit(tmp_path):
    """Raw ASGI: a body of 64 KiB chunks that would go on for 64 MiB; the app answers 413 after
    reading just past the limit (an app without the limit reads it all, then refuses the spec)."""
    app = create_app(Settings(data_dir=tmp_path, max_body_bytes=100_000), reconcile=False)
    pulled, sent = 0, []

    async def receive():
        nonlocal pulled
        pulled += 1
        return {"type": "http.request", "body": b" " * 65536, "more_body": pulled < 1024}

    async def send(message):
        sent.append(message)

    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST",
             "scheme": "http", "path": "/experiments", "raw_path": b"/experiments",
             "query_string": b"", "root_path": "", "server": ("127.0.0.1", 80),
             "client": ("127.0.0.1", 1), "headers": [(b"content-type", b"application/yaml"),
                                                     (b"transfer-encoding", b"chunked")]}
    anyio.run(app, scope, receive, send)
    assert sent[0]["status"] == 413 and pulled == 2
    assert json.loads(sent[1]["body"])["detail"][0]["field"] == "<body>"


# ---- JSON is JSON ---------------------------------------------------------------------------

def test_tab_indented_json_and_long_keys_are_json(client):
    tabbed = json.dumps(GOOD, indent="\t").encode()
    long_key = json.dumps({**GOOD, "factors": {"F" * 1100: GOOD["factors"]["ITC"]}}).encode()
    for body in (tabbed, long_key):
        assert post(client, body, JSON, dry=True).status_code == 200
        assert post(client, body, {"content-type": "application/json; charset=utf-8"}
                    ).status_code == 201


def test_yaml_is_still_yaml(client):
    body = b"name: y\nbase: {preset: tiny, set: {schedule.steps: 10}}\nseeds: 1\n" \
           b"factors:\n  ITC: {path: objectives.itc.enabled, levels: [false, true]}\n"
    assert post(client, body, YAML, dry=True).status_code == 200
    assert post(client, body, {}, dry=True).status_code == 200  # no content type: YAML


# ---- every error is JSON --------------------------------------------------------------------

def test_an_unexpected_error_is_a_json_500_without_its_trace(client, monkeypatch, caplog):
    def broken(*_args, **_kwargs):
        raise RuntimeError("boom at /secret/path")

    monkeypatch.setattr(submit, "plan", broken)
    r = post(client, json.dumps(GOOD).encode(), JSON)
    assert r.status_code == 500 and r.headers["content-type"] == "application/json"
    assert r.json() == {"detail": [{"field": "<server>", "reason": "internal error (logged)"}]}
    assert "boom" in caplog.text and "boom" not in r.text


# ---- the dry run and the POST agree ----------------------------------------------------------

PARITY = {
    "good JSON": (json.dumps(GOOD).encode(), JSON),
    "good tab-indented JSON": (json.dumps(GOOD, indent="\t").encode(), JSON),
    "good YAML": (b"name: y\nseeds: [3, 4]\nbase: {set: {schedule.steps: 10}}\n"
                  b"factors: {A: {path: objectives.itc.enabled, levels: [false, true]}}\n", YAML),
    "largest seed": (json.dumps({**GOOD, "seeds": [2**31 - 1]}).encode(), JSON),
    **{name: (body, headers) for name, (body, headers, *_rest) in HOSTILE.items()},
    "unknown field": (json.dumps({**GOOD, "colour": "red"}).encode(), JSON),
    "past the trial limit": (json.dumps({**GOOD, "seeds": 11}).encode(), JSON),
    "no seeds": (json.dumps({**GOOD, "seeds": []}).encode(), JSON),
    "a list": (b"- a\n- b\n", YAML),
    "invalid JSON": (b"{unclosed", JSON),
    "unknown baseline": (json.dumps({**GOOD, "baseline": "nope"}).encode(), JSON),
    "invalid config": (json.dumps({**GOOD, "base": {"set": {"optim.lr": "fast"}}}).encode(),
                       JSON),
    "2 MB": (json.dumps({**GOOD, "description": "x" * 2_000_000}).encode(), JSON),
}


def test_dry_run_and_post_accept_and_refuse_the_same_specs(client):
    outcomes = {}
    with memory_cap():
        for name, (body, headers) in PARITY.items():
            dry = post(client, body, headers, dry=True)
            real = post(client, body, headers)
            outcomes[name] = (dry.status_code, real.status_code)
            if dry.status_code != 200:
                assert real.json() == dry.json(), name
    expected = {name: (200, 201) if name.startswith(("good", "largest")) else None
                for name in PARITY}
    for name, (dry_status, real_status) in outcomes.items():
        if expected[name]:
            assert (dry_status, real_status) == expected[name], (name, outcomes[name])
        else:
            assert dry_status == real_status and 400 <= dry_status < 500, (name, outcomes[name])


# ---- the contract ----------------------------------------------------------------------------

def test_timestamps_carry_their_time_zone(client):
    exp_id = post(client, json.dumps(GOOD).encode(), JSON).json()["id"]
    trial = client.store.get_experiment(exp_id).trials[0]
    client.store.mark_running(trial.id, worker_pid=1)
    stamps = [client.get(f"/experiments/{exp_id}").json()["created_at"],
              client.get("/experiments").json()[0]["created_at"]]
    trials = [t for v in client.get(f"/experiments/{exp_id}").json()["variants"]
              for t in v["trials"]]
    stamps += [t["started_at"] for t in trials if t["started_at"]]
    assert len(stamps) == 3
    for stamp in stamps:  # RFC 3339 date-time: an offset is required
        assert stamp.endswith("Z") or stamp.endswith("+00:00"), stamp
        assert datetime.fromisoformat(stamp).utcoffset().total_seconds() == 0


def test_openapi_documents_the_status_codes_and_rules(client):
    schema = client.get("/openapi.json").json()
    create = schema["paths"]["/experiments"]["post"]
    assert {"200", "201", "409", "413", "422"} <= set(create["responses"])
    assert any(p["name"] == "Idempotency-Key" and p["in"] == "header"
               for p in create["parameters"])
    retry = schema["paths"]["/experiments/{exp_id}/retry"]["post"]
    assert {"409", "503"} <= set(retry["responses"])
    seeds = schema["components"]["schemas"]["AblationSpec"]["properties"]["seeds"]
    count, listed, adaptive = seeds["anyOf"]
    assert count["maximum"] == 10_000 and listed["items"]["maximum"] == 2**31 - 1
    assert adaptive["required"] == ["initial", "max"] and adaptive["properties"]["initial"][
        "minimum"] == 2
    created = schema["components"]["schemas"]["ExperimentOut"]["properties"]["created_at"]
    assert created["format"] == "date-time"
