"""Nothing of the embedded stack is open: on the real stack, every listening TCP socket of its
processes (Ray's GCS, raylet, agents, a job's supervisor, driver and worker; MLflow; the
controller) is on loopback, as psutil and ``ss -ltnp`` (where iproute2 is installed) both see
it, with no Ray component excepted (``conftest.BEYOND_LOOPBACK_ALLOWED`` is empty); Ray's
dashboard wants its token; and a job submitted the way the executor submits one shows neither
the API token nor the database password to Ray's job list, its logs or its files, while the job
still reads both settings it needs."""

from __future__ import annotations

import hashlib
import json
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from service.execution import Executor
from service.stack.embedded import Stack
from service.stack.secret_files import ray_auth_headers
from service.store import Store
from tests.e2e.conftest import (
    beyond_loopback,
    listening,
    ss_beyond_loopback,
    ss_listening,
    stack_pids,
)

pytestmark = pytest.mark.slow

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
TOKEN = "e2e-api-token-" + "k" * 24
PASSWORD = "e2e-db-password-" + "w" * 24

# Runs as a Ray job: an actor (a worker with its own gRPC server) stays up until told to stop.
JOB = """
import hashlib, sys, time
from pathlib import Path
import ray
from service.settings import Settings
s = Settings()
print("DBHASH", hashlib.sha256(s.db_url.encode()).hexdigest(), "TOKEN", s.auth_token, flush=True)
ray.init()
@ray.remote(num_cpus=0)
class Idle:
    def ping(self):
        return 1
a = Idle.remote()
ray.get(a.ping.remote())
print("READY", flush=True)
stop = Path(sys.argv[1])
deadline = time.monotonic() + 120
while not stop.exists() and time.monotonic() < deadline:
    time.sleep(0.2)
"""


def _executor(stack: Stack, tmp_path: Path) -> Executor:
    """The real executor with secrets worth hiding (its own data dir: the shared stack's job
    secrets file stays untouched)."""
    settings = stack.settings.model_copy(update={
        "data_dir": tmp_path, "auth_token": SecretStr(TOKEN),
        "db_url": f"postgresql+psycopg://ablate:{PASSWORD}@127.0.0.1:9/ablate",
    })
    return Executor(settings, Store(f"sqlite:///{tmp_path / 'store.db'}"))


def _submit(ex: Executor, script: Path, stop: Path) -> str:
    script.write_text(JOB)
    return ex.jobs.submit_job(entrypoint=f"{sys.executable} {script} {stop}",
                              runtime_env=ex._runtime_env(),
                              metadata={"experiment_id": "exp-exposure", "name": "exposure"})


def _wait_logs(ex: Executor, sid: str, marker: str, timeout: float = 240.0) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        logs = ex.jobs.get_job_logs(sid)
        if marker in logs:
            return logs
        if ex.jobs.get_job_status(sid).is_terminal():
            raise AssertionError(f"job ended early:\n{logs[-3000:]}")
        time.sleep(0.5)
    raise AssertionError(f"no {marker!r} in the job's logs:\n{ex.jobs.get_job_logs(sid)[-3000:]}")


def _files_holding(root: Path, secrets: list[str]) -> list[str]:
    found = []
    for path in root.rglob("*"):
        if path.is_file() and not path.is_symlink():
            try:
                data = path.read_bytes()
            except OSError:
                continue
            found += [f"{path}: {s[:6]}..." for s in secrets if s.encode() in data]
    return found


def test_nothing_listens_beyond_loopback_and_no_secret_reaches_ray(stack, tmp_path) -> None:
    ex = _executor(stack, tmp_path)
    stop = tmp_path / "stop"
    sid = _submit(ex, tmp_path / "job.py", stop)
    try:
        logs = _wait_logs(ex, sid, "READY")
        sockets = listening(stack)
        ss = ss_listening(stack_pids(stack))
        ARTIFACTS.mkdir(exist_ok=True)
        (ARTIFACTS / "stack-listening.txt").write_text(
            "\n".join(ss) + "\n" if ss is not None else "ss (iproute2) not installed\n")
        print("\n".join(ss) if ss is not None else "no ss: psutil's view only")

        jobs = [job for job in ex.jobs.list_jobs() if job.submission_id == sid]
        shown: dict[str, Any] = jobs[0].model_dump()
        raw = httpx.get(f"{stack.settings.ray_address}/api/jobs/",
                        headers=ray_auth_headers(stack.settings), timeout=30).text
        print(json.dumps({"runtime_env": shown["runtime_env"], "metadata": shown["metadata"],
                          "entrypoint": shown["entrypoint"]}, indent=1))
    finally:
        stop.touch()
    status = ex.jobs.get_job_status(sid)
    deadline = time.monotonic() + 60
    while not status.is_terminal() and time.monotonic() < deadline:
        time.sleep(0.5)
        status = ex.jobs.get_job_status(sid)
    ex.store.close()

    # every server of the stack, the job's driver and its worker included, on loopback only
    # (psutil's view, and the kernel's as `ss -ltnp` prints it where iproute2 is installed)
    assert sockets, "no listening socket found"
    assert beyond_loopback(sockets) == []
    if ss is not None:
        assert len(ss) >= len(sockets) // 2, ss  # it saw the same processes
        assert ss_beyond_loopback(ss) == []
    ports = {port for *_, port in sockets}
    s = stack.settings
    assert {s.port, s.mlflow_port, s.ray_dashboard_port} <= ports
    names = {name for _, name, *_ in sockets}
    assert {"gcs_server", "raylet"} <= names and any("Idle" in n for n in names), names

    # the job reads the database URL from its private file; the API token never reaches it
    assert f"DBHASH {hashlib.sha256(ex.settings.db_url.encode()).hexdigest()}" in logs
    assert "TOKEN None" in logs
    env = shown["runtime_env"]["env_vars"]
    assert "ABLATE_SECRETS_FILE" in env and "ABLATE_DB_URL" not in env
    assert "ABLATE_AUTH_TOKEN" not in env
    for text in (json.dumps(shown, default=str), raw, logs):
        assert TOKEN not in text and PASSWORD not in text
    assert _files_holding(stack.ray_temp_dir, [TOKEN, PASSWORD]) == []
    assert status.value == "SUCCEEDED", ex.jobs.get_job_logs(sid)[-3000:]


def test_rays_dashboard_and_jobs_api_want_the_token(stack) -> None:
    url = stack.settings.ray_address
    assert httpx.get(f"{url}/api/jobs/", timeout=30).status_code == 401
    assert httpx.get(f"{url}/api/version", timeout=30).status_code == 401
    wrong = {"Authorization": "Bearer " + "0" * 64}
    assert httpx.get(f"{url}/api/jobs/", headers=wrong, timeout=30).status_code == 403
    right = ray_auth_headers(stack.settings)
    assert httpx.get(f"{url}/api/jobs/", headers=right, timeout=30).status_code == 200
