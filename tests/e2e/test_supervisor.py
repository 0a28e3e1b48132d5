"""``ablate serve`` as a user runs it, a real process with the real stack: it restarts a
SIGKILLed MLflow server (the running trial finishes, one MLflow run per trial) and controller,
a POST never hangs on a frozen MLflow (and retried with its Idempotency-Key returns the first
experiment), SIGTERM stops everything within Docker's 10 s, and a SIGKILLed ``ablate serve``
leaves nothing behind (its reaper stops the stack)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest
from mlflow.tracking import MlflowClient

from service.stack.embedded import free_port
from tests.e2e.conftest import done, runs_of, tiny_spec, trials, wait_for

pytestmark = pytest.mark.slow

ABLATE = str(Path(sys.executable).parent / "ablate")


class Served:
    """One ``ablate serve`` process on free ports under a fresh data dir."""

    def __init__(self, data_dir: Path, **env: str) -> None:
        self.data_dir = data_dir
        self.port, self.mlflow_port, self.ray_port = free_port(), free_port(), free_port()
        self.out = data_dir / "serve.out"
        self.proc = subprocess.Popen(
            [ABLATE, "serve", "--num-cpus", "2"],
            env={**os.environ, "ABLATE_DATA_DIR": str(data_dir), "ABLATE_PORT": str(self.port),
                 "ABLATE_MLFLOW_PORT": str(self.mlflow_port),
                 "ABLATE_RAY_DASHBOARD_PORT": str(self.ray_port),
                 "ABLATE_RECONCILE_INTERVAL_S": "2", "COLUMNS": "300", **env},
            stdout=self.out.open("wb"), stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        )
        self.url = f"http://127.0.0.1:{self.port}"
        self.mlflow_url = f"http://127.0.0.1:{self.mlflow_port}"
        wait_until(lambda: healthy(f"{self.url}/healthz"), 120, self.log)

    def log(self) -> str:
        return self.out.read_text(errors="replace")

    def part(self, name: str) -> psutil.Process:
        """The main process of a part (``mlflow``, ``controller``), found by what it runs."""
        marks = {"mlflow": ("server", str(self.mlflow_port)),
                 "controller": ("uvicorn", str(self.port))}[name]
        for p in psutil.Process(self.proc.pid).children():
            if all(any(m in a for a in p.cmdline()) for m in marks):
                return p
        raise AssertionError(f"no {name} under ablate serve:\n{self.log()}")

    def tree(self) -> list[psutil.Process]:
        return psutil.Process(self.proc.pid).children(recursive=True)


def healthy(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2.0).status_code == 200
    except httpx.HTTPError:
        return False


def wait_until(pred: Any, timeout: float, why: Any = lambda: "") -> float:
    start = time.monotonic()
    while not pred():
        assert time.monotonic() - start < timeout, why()
        time.sleep(0.2)
    return time.monotonic() - start


def all_gone(procs: list[psutil.Process]) -> bool:
    alive = []
    for p in procs:
        try:
            if p.status() != psutil.STATUS_ZOMBIE:
                alive.append(p)
        except psutil.NoSuchProcess:
            pass
    return not alive


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Served]:
    s = Served(tmp_path, ABLATE_SUBMIT_TIMEOUT_S="3")
    try:
        yield s
    finally:
        if s.proc.poll() is None:
            s.proc.send_signal(signal.SIGTERM)
            s.proc.wait(30)


def test_serve_restarts_mlflow_and_controller_and_stops_within_10s(served: Served) -> None:
    api = httpx.Client(base_url=served.url, timeout=60.0)
    mlflow = MlflowClient(served.mlflow_url)
    one_arm = {"design": "explicit", "variants": {"ALBEF": {}}}
    r = api.post("/experiments", json=tiny_spec("mlflow-killed", 40, **one_arm))
    assert r.status_code == 201, r.text
    created = r.json()
    wait_for(api, created["id"], lambda e: any(t["step"] >= 4 for t in trials(e)))

    served.part("mlflow").kill()  # SIGKILL mid-training; the supervisor starts it again
    exp = wait_for(api, created["id"], done)
    assert exp["status"] == "finished", exp
    assert "mlflow restarted" in served.log()
    (trial,) = trials(exp)
    runs = runs_of(mlflow, exp)
    assert [r.info.run_id for r in runs] == [trial["mlflow_run_id"]]  # one run, not two
    assert runs[0].info.status == "FINISHED"
    steps = [m.step for m in mlflow.get_metric_history(trial["mlflow_run_id"], "loss")]
    assert steps == sorted(set(steps)) and steps[-1] >= 38  # nothing lost, nothing twice

    # A frozen MLflow: the POST answers within the submit timeout instead of hanging, and the
    # client's retry with the same key gets the first experiment back, not a second one.
    frozen = [served.part("mlflow"), *served.part("mlflow").children(recursive=True)]
    for p in frozen:
        p.suspend()
    try:
        headers = {"Idempotency-Key": "frozen-mlflow-1"}
        spec = tiny_spec("mlflow-frozen", 6, **one_arm)
        start = time.monotonic()
        first = api.post("/experiments", json=spec, headers=headers, timeout=30.0)
        took = time.monotonic() - start
        assert first.status_code == 201 and took < 10, (first.status_code, took, first.text)
        assert "still submitting" in first.json()["submit_error"]
        again = api.post("/experiments", json=spec, headers=headers, timeout=30.0)
        assert again.status_code == 200 and again.json()["id"] == first.json()["id"]
    finally:
        for p in frozen:
            p.resume()
    exp = wait_for(api, first.json()["id"], done)
    assert exp["status"] == "finished", exp
    assert len(runs_of(mlflow, exp)) == 1
    assert len(api.get("/experiments").json()) == 2

    old = served.part("controller")
    old.kill()
    wait_until(lambda: not old.is_running() or old.status() == psutil.STATUS_ZOMBIE, 10)
    wait_until(lambda: healthy(f"{served.url}/healthz"), 60, served.log)
    assert "controller restarted" in served.log()

    tree = served.tree()
    assert len(tree) > 5, tree
    start = time.monotonic()
    served.proc.send_signal(signal.SIGTERM)
    served.proc.wait(15)
    stopped_in = time.monotonic() - start
    wait_until(lambda: all_gone(tree), 3, lambda: [p for p in tree if p.is_running()])
    assert stopped_in < 10, stopped_in
    assert not list((served.data_dir / "run").glob("*.json"))


def test_sigkilled_serve_leaves_nothing_behind(tmp_path: Path) -> None:
    served = Served(tmp_path)
    tree = served.tree()
    (state,) = (served.data_dir / "run").glob("stack-*.json")
    temp_dir = json.loads(state.read_text())["ray_temp_dir"]
    served.proc.kill()
    served.proc.wait(10)
    took = wait_until(lambda: all_gone(tree), 15,
                      lambda: [(p.pid, p.cmdline()[:3]) for p in tree if p.is_running()])
    assert took < 10, took
    assert not Path(temp_dir).exists()
