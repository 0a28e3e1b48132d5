"""The HTTP contract: schemathesis against the real app, over real HTTP.

The app is ``create_app`` on a SQLite store with a token set, served by uvicorn in this process
(``stack.serve_in_thread``); Ray and MLflow are at a closed port, so a spec that passes is stored
and answered 201 with a ``submit_error``, and the stateful phase follows the schema's links from
that 201 to get, cancel, retry, compare and report. schemathesis's CLI runs in a subprocess with
``schemathesis.toml`` beside this file (every check, both modes, every phase, deterministic) and
writes its JSON report; the test requires no failure, no error, and no 5xx counted at the app.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import tomllib
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from schemathesis.config import SchemathesisConfig
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.api import create_app
from service.stack.embedded import serve_in_thread
from tests.service.api_client import offline_settings

CONFIG = Path(__file__).with_name("schemathesis.toml")
TOKEN = "contract-test-token"
OFF_WHERE_VALIDITY_IS_NOT_THE_REQUESTS = {  # why: in schemathesis.toml
    "POST /experiments", "GET /experiments/{exp_id}/compare", "GET /experiments/{exp_id}/report",
    "POST /experiments/{exp_id}/evaluate"}


class StatusCount:
    """Counts the status of every response the app sends: the 5xx count comes from the server,
    not from schemathesis's reading of it."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.statuses: Counter[int] = Counter()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def counted(message: Message) -> None:
            if message["type"] == "http.response.start":
                self.statuses[message["status"]] += 1
            await send(message)

        await self.app(scope, receive, counted if scope["type"] == "http" else send)


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[str, StatusCount]]:
    app = StatusCount(create_app(offline_settings(tmp_path, auth_token=TOKEN), reconcile=False))
    with serve_in_thread(app) as url:
        yield url, app


def run_schemathesis(url: str, workdir: Path) -> tuple[dict[str, Any], str]:
    """``st run`` against ``url``, from ``workdir`` (its caches land there, not in the tree)."""
    report = workdir / "schemathesis.json"
    proc = subprocess.run(
        [sys.executable, "-m", "schemathesis.cli", "--config-file", str(CONFIG), "--no-color",
         "run", f"{url}/openapi.json", "--header", f"Authorization: Bearer {TOKEN}",
         "--report", "json", "--report-json-path", str(report)],
        cwd=workdir, capture_output=True, text=True, timeout=300,
    )
    output = proc.stdout + proc.stderr
    assert report.exists(), output[-4000:]
    return json.loads(report.read_text()), output


def test_every_check_is_on_but_the_documented_exclusions():
    project = SchemathesisConfig.from_path(str(CONFIG)).projects.get_default()
    assert len(project.generation.modes) == 2  # schema-valid and schema-violating data
    assert project.generation.deterministic
    for phase in ("examples", "coverage", "fuzzing", "stateful"):
        assert getattr(project.phases, phase).enabled, phase
    checks = {name: getattr(project.checks, name) for name in dir(project.checks)
              if not name.startswith("_") and hasattr(getattr(project.checks, name), "enabled")}
    assert len(checks) >= 15, sorted(checks)
    off = [name for name, check in checks.items() if not check.enabled]
    assert off == ["max_response_time"], off  # it runs only with a limit, and none is set
    raw = tomllib.loads(CONFIG.read_text())
    assert set(raw) == {"generation", "operations"}, raw  # no run-wide check or phase switched off
    excluded = set()
    for op in raw["operations"]:
        assert op["checks"] == {"positive_data_acceptance": {"enabled": False}}, op
        names = op["include-name"]
        excluded |= {names} if isinstance(names, str) else set(names)
    assert excluded == OFF_WHERE_VALIDITY_IS_NOT_THE_REQUESTS


def test_the_api_keeps_its_schema(served, tmp_path):
    url, app = served
    started = time.perf_counter()
    report, output = run_schemathesis(url, tmp_path)
    took = time.perf_counter() - started
    tail = output[-6000:]
    assert report["failures"] == [], tail
    assert report["errors"] == [], tail
    assert report["exit_code"] == 0 and report["complete"], tail
    assert report["operations"]["tested"] == report["operations"]["total"] == 9, report
    assert {p: v["status"] for p, v in report["phases"].items()} == dict.fromkeys(
        ("examples", "coverage", "fuzzing", "stateful"), "success"), report["phases"]
    served_5xx = sum(n for status, n in app.statuses.items() if status >= 500)
    assert served_5xx == 0, app.statuses
    cases = report["test_cases"]["generated"]
    assert cases >= 500, report["test_cases"]
    print(f"schemathesis: {cases} cases, {sum(app.statuses.values())} responses "
          f"{dict(sorted(app.statuses.items()))}, 0 failures, {took:.1f} s")
