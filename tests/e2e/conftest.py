"""One real stack for the e2e tests: a Ray head with its dashboard (own temp dir, free ports), an
MLflow server on SQLite, and the controller under uvicorn, all on 127.0.0.1, stopped at the end.
"""

from __future__ import annotations

import ipaddress
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import psutil
import pytest
from mlflow.tracking import MlflowClient

from service.settings import Settings
from service.stack.embedded import Stack, free_port

# Small enough that a trial takes seconds on 2 cores, big enough to evaluate retrieval.
TINY = {
    "schedule.warmup_steps": 2,
    "data.num_train_images": 200,
    "data.num_val_images": 20,
    "data.num_test_images": 50,
    "eval.rerank_k": 4,
    "eval.batch_size": 64,
    "runtime.log_every": 2,
    "runtime.checkpoint_every": 5,
    "init.steps": 40,  # the tiny preset's warm start, shortened
}


def tiny_spec(name: str, steps: int, **extra: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "name": name,
        "base": {"preset": "tiny", "set": {**TINY, "schedule.steps": steps}},
        "seeds": 1,
        "resources": {"cpus": 1},
        "metrics": {"primary": "mean_recall", "reported": ["mean_recall", "t2i_r1", "i2t_r1"]},
    }
    spec.update(extra)
    return spec


@pytest.fixture(scope="session")
def stack(tmp_path_factory) -> Iterator[Stack]:
    settings = Settings(
        data_dir=tmp_path_factory.mktemp("ablate"),
        port=free_port(), mlflow_port=free_port(), ray_dashboard_port=free_port(),
        max_retries=2, reconcile_interval_s=2.0, unschedulable_after_s=3.0,
    )
    s = Stack(settings, num_cpus=2)
    s.start()
    try:
        yield s
    finally:
        s.stop()


@pytest.fixture(scope="session")
def api(stack: Stack) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=stack.settings.controller_url, timeout=120.0) as c:
        yield c


@pytest.fixture(scope="session")
def mlflow(stack: Stack) -> MlflowClient:
    return MlflowClient(stack.settings.mlflow_tracking_uri)


def get(api: httpx.Client, exp_id: str) -> dict[str, Any]:
    """GET an experiment, riding out a controller restart."""
    for _ in range(100):
        try:
            r = api.get(f"/experiments/{exp_id}")
            r.raise_for_status()
            return r.json()
        except httpx.TransportError:
            time.sleep(0.2)
    raise AssertionError("controller unreachable")


def wait_for(api: httpx.Client, exp_id: str, pred: Callable[[dict[str, Any]], bool],
             timeout: float = 240.0, interval: float = 0.2) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    exp = get(api, exp_id)
    while not pred(exp):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out; last state: {exp['status']} {exp['states']} "
                                 f"{[t['error'] for v in exp['variants'] for t in v['trials']]}")
        time.sleep(interval)
        exp = get(api, exp_id)
    return exp


def done(exp: dict[str, Any]) -> bool:
    return exp["status"] in ("finished", "failed", "cancelled")


def trials(exp: dict[str, Any]) -> list[dict[str, Any]]:
    return [dict(t, variant=v["name"]) for v in exp["variants"] for t in v["trials"]]


def runs_of(mlflow: MlflowClient, exp: dict[str, Any]) -> list[Any]:
    """Every trial run (not the parent) in the experiment's MLflow experiment."""
    runs = mlflow.search_runs([exp["mlflow_experiment_id"]], max_results=1000)
    return [r for r in runs if r.data.tags.get("ablate.role") != "parent"]


# ---- what listens ------------------------------------------------------------------------------
BEYOND_LOOPBACK_ALLOWED: dict[str, str] = {}
"""Process name -> why it may listen beyond loopback. Empty: every server of the embedded stack
and of a second Ray node joined on this machine (GCS, raylet with its node and object managers,
dashboard and its agent, runtime-env agent, metrics export, Ray client server, a job's
supervisor, driver and workers, MLflow, the controller) listens on 127.0.0.1 only, so nothing
is allowed; a Ray component that could not be kept there would be named here with its reason."""


def is_loopback(ip: str) -> bool:
    """127.0.0.0/8, ::1 or an IPv4-mapped loopback; ``*``, ``0.0.0.0``, ``::`` are not."""
    try:
        addr = ipaddress.ip_address(ip.strip("[]").split("%")[0])
    except ValueError:
        return False
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        addr = addr.ipv4_mapped
    return addr.is_loopback


def stack_pids(stack: Stack) -> set[int]:
    """Every process of the stack: its parts (added Ray nodes too) and all they spawned."""
    pids: set[int] = set()
    for child in stack.children.values():
        try:
            root = psutil.Process(child.proc.pid)
            pids |= {root.pid, *(p.pid for p in root.children(recursive=True))}
        except psutil.Error:  # a part that ended meanwhile
            continue
    return pids


def listening(stack: Stack) -> list[tuple[int, str, str, int]]:
    """(pid, process, address, port) of every listening TCP socket of the stack's processes,
    read with psutil."""
    out = []
    for pid in stack_pids(stack):
        try:
            p = psutil.Process(pid)
            name = p.name()
            for c in p.net_connections(kind="tcp"):
                if c.status == psutil.CONN_LISTEN:
                    out.append((p.pid, name, c.laddr.ip, c.laddr.port))
        except psutil.Error:  # a process that ended meanwhile
            continue
    return sorted(out)


def ss_listening(pids: set[int]) -> list[str] | None:
    """``ss -ltnp``'s lines for ``pids`` (iproute2, the kernel's socket table as an admin reads
    it), or None where ``ss`` is not installed: the caller then has psutil's view only."""
    if shutil.which("ss") is None:
        return None
    out = subprocess.run(["ss", "-ltnp"], capture_output=True, text=True, check=True).stdout
    return [line for line in out.splitlines() if any(f"pid={pid}," in line for pid in pids)]


def ss_beyond_loopback(lines: list[str]) -> list[str]:
    """The ``ss -ltnp`` lines whose local address is not loopback (``*:port``, ``0.0.0.0``,
    ``[::]``, the machine's address), less the processes ``BEYOND_LOOPBACK_ALLOWED`` names."""
    bad = []
    for line in lines:
        local = line.split()[3]  # State Recv-Q Send-Q Local:Port Peer:Port Process
        if is_loopback(local.rsplit(":", 1)[0]):
            continue
        if any(f'(("{name}"' in line for name in BEYOND_LOOPBACK_ALLOWED):
            continue
        bad.append(line)
    return bad


def beyond_loopback(sockets: list[tuple[int, str, str, int]]) -> list[tuple[int, str, str, int]]:
    """psutil's sockets not on loopback, less the processes ``BEYOND_LOOPBACK_ALLOWED`` names."""
    return [s for s in sockets if not is_loopback(s[2]) and s[1] not in BEYOND_LOOPBACK_ALLOWED]
