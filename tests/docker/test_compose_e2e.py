"""docker/compose.yaml run for real on a Docker daemon (issue 15, item 2): ``make test-docker``
starts the daemon and builds the images (scripts/test-docker.sh), then this test

- brings the stack up with two Ray workers of one CPU each (docker-compose 1.29.2,
  ``tests/docker/compose_tool.py``) and waits for every container to be healthy;
- checks that nothing but the controller's API is published, and that on 127.0.0.1;
- POSTs a short four-trial spec to the controller, with its bearer token;
- SIGKILLs (``docker kill``) the worker container that runs a trial once that trial has a
  checkpoint behind it, its restart policy lifted first as a lost machine does not come back;
  the trial resumes from its checkpoint on the other worker and the experiment finishes, with
  one MLflow run per trial in the MLflow server;
- gets the comparison as Markdown;
- takes the stack down with its volumes and finds no container, volume or network of it left.

It needs a daemon (DOCKER_HOST) and the images; without them it fails, saying how to get them.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from service.stack.embedded import free_port
from tests.docker.compose_tool import docker_compose
from tests.e2e.conftest import done, is_loopback, tiny_spec, trials

pytestmark = pytest.mark.docker

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "docker" / "compose.yaml"
DOCKER = os.environ.get("DOCKER", "docker")
IMAGES = ("ablate:latest", "ablate-postgres:15")
STEPS = 30
SPEC = tiny_spec(
    "compose-e2e", STEPS, design="factorial", seeds=2,
    factors={"ITC": {"path": "objectives.itc.enabled", "levels": [False, True]}},
)
SPEC["base"]["set"]["init.warm_start"] = False  # no warm-start task: trials only


def run(cmd: list[str], timeout: float = 300.0, check: bool = True) -> str:
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if check and res.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} failed (rc={res.returncode}):\n"
                             f"{(res.stderr or res.stdout)[-3000:]}")
    return res.stdout


def docker(*args: str, timeout: float = 120.0, check: bool = True) -> str:
    return run([DOCKER, *args], timeout, check)


@dataclass
class ComposeProject:
    """One compose project of docker/compose.yaml, named for this test run."""

    project: str
    env_file: Path
    token: str
    api_port: int
    compose: Path = field(default_factory=docker_compose)
    timings: dict[str, float] = field(default_factory=dict)

    def __call__(self, *args: str, timeout: float = 600.0, check: bool = True) -> str:
        return run([str(self.compose), "--ansi", "never", "--env-file", str(self.env_file),
                    "-p", self.project, "-f", str(COMPOSE_FILE), *args], timeout, check)

    def containers(self) -> dict[str, str]:
        """Short container id (the container's host name) -> its compose service."""
        out = docker("ps", "-a", "--filter", f"label=com.docker.compose.project={self.project}",
                     "--format", '{{.ID}} {{.Label "com.docker.compose.service"}}')
        return dict(line.split() for line in out.splitlines() if line.strip())

    def leftovers(self) -> dict[str, list[str]]:
        label = f"label=com.docker.compose.project={self.project}"
        return {"container": docker("ps", "-aq", "--filter", label).split(),
                "volume": docker("volume", "ls", "-q", "--filter", label).split(),
                "network": docker("network", "ls", "-q", "--filter", label).split()}


def wait(what: str, pred: Callable[[], Any], timeout: float, interval: float = 1.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = pred()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)


SOURCE_DIGEST = (
    "import hashlib, pathlib, sys\n"
    "h, n = hashlib.sha256(), 0\n"
    "for pkg in ('service', 'trainer'):\n"
    "    root = pathlib.Path(sys.argv[1]) / pkg\n"
    "    for f in sorted(root.rglob('*.py')):\n"
    "        h.update(str(f.relative_to(root.parent)).encode() + b'\\0' + f.read_bytes())\n"
    "        n += 1\n"
    "print(n, h.hexdigest())\n"
)
"""How many .py files the two packages under a folder (argv[1]) hold, and a digest of them."""


def test_the_image_runs_this_tree() -> None:
    """ablate:latest holds the service and trainer of this working tree, byte for byte: a build
    that reused a stale layer would otherwise test old code (docker 20.10's BuildKit did
    reuse one when the source was bind-mounted from the whole context)."""
    here = run([sys.executable, "-c", SOURCE_DIGEST, str(ROOT)])
    there = docker("run", "--rm", "--entrypoint", "python", IMAGES[0], "-c", SOURCE_DIGEST,
                   "/opt/venv/lib/python3.11/site-packages")
    assert int(here.split()[0]) > 100, here  # the packages were found where they were looked for
    assert here.strip() == there.strip()


def healthy(stack: ComposeProject) -> bool:
    ids = stack.containers()
    if sorted(ids.values()) != ["controller", "mlflow", "postgres", "ray-head", "ray-worker",
                                "ray-worker"]:
        return False
    states = docker("inspect", "--format", "{{.State.Health.Status}}", *ids).split()
    return states == ["healthy"] * len(ids)


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[ComposeProject]:
    if subprocess.run([DOCKER, "info"], capture_output=True).returncode != 0:
        pytest.fail(f"no Docker daemon answers at DOCKER_HOST={os.environ.get('DOCKER_HOST')}: "
                    "run `make test-docker` (scripts/test-docker.sh starts one)")
    for image in IMAGES:
        if subprocess.run([DOCKER, "image", "inspect", image], capture_output=True).returncode:
            pytest.fail(f"image {image} is missing: build it with scripts/docker-build.sh")
    token = secrets.token_hex(16)
    env = {
        "POSTGRES_PASSWORD": secrets.token_hex(16), "ABLATE_AUTH_TOKEN": token,
        "RAY_AUTH_TOKEN": secrets.token_hex(16),
        "ABLATE_API_BIND": "127.0.0.1", "ABLATE_API_PORT": str(free_port()),
        # One trial per worker at a time: each worker is one machine of the cluster.
        "RAY_WORKER_NUM_CPUS": "1", "RAY_HEAD_NUM_CPUS": "0",
        "RAY_SHM_SIZE": "512mb", "MLFLOW_WORKERS": "1",
    }
    env_file = tmp_path / "compose.env"
    env_file.write_text("".join(f"{k}={v}\n" for k, v in env.items()))
    s = ComposeProject(f"ablatee2e{os.getpid()}", env_file, token, int(env["ABLATE_API_PORT"]))
    try:
        yield s
    finally:
        if s.leftovers()["container"]:  # the test failed before its own `down`
            print(s("logs", "--no-color", "--tail", "60", "controller", check=False)[-6000:])
            s("down", "-v", "--remove-orphans", "-t", "10", check=False)


def mlflow_runs(stack: ComposeProject, controller: str, experiment_id: str) -> list[dict[str, Any]]:
    """The MLflow server's runs of an experiment, read inside the stack's network (MLflow is not
    published): id, status, role tag and the steps of the loss history."""
    code = (
        "import json, os, sys\n"
        "from mlflow.tracking import MlflowClient\n"
        "c = MlflowClient(os.environ['ABLATE_MLFLOW_TRACKING_URI'])\n"
        "runs = c.search_runs([sys.argv[1]], max_results=1000)\n"
        "print(json.dumps([{'id': r.info.run_id, 'status': r.info.status,\n"
        "  'role': r.data.tags.get('ablate.role'),\n"
        "  'loss_steps': [m.step for m in c.get_metric_history(r.info.run_id, 'loss')]}\n"
        "  for r in runs]))\n"
    )
    out = docker("exec", controller, "python", "-c", code, experiment_id)
    return [r for r in json.loads(out.splitlines()[-1]) if r["role"] != "parent"]


def test_compose_stack_survives_a_lost_worker(stack: ComposeProject) -> None:
    start = time.monotonic()
    stack("up", "-d", "--scale", "ray-worker=2")
    wait("every container healthy", lambda: healthy(stack), timeout=300, interval=2)
    stack.timings["up_s"] = time.monotonic() - start
    ids = stack.containers()
    workers = {cid for cid, service in ids.items() if service == "ray-worker"}
    controller = next(cid for cid, service in ids.items() if service == "controller")

    # Nothing published but the controller's API, and that on loopback.
    for cid, service in ids.items():
        ports = json.loads(docker("inspect", "--format", "{{json .NetworkSettings.Ports}}", cid))
        bound = [(p, b["HostIp"], b["HostPort"])
                 for p, bs in (ports or {}).items() for b in bs or []]
        if service == "controller":
            assert bound and all(is_loopback(ip) for _, ip, _ in bound), bound
            assert {port for _, _, port in bound} == {str(stack.api_port)}, bound
        else:
            assert bound == [], (service, bound)
    if shutil.which("ss"):
        proxies = [line for line in run(["ss", "-ltnp"]).splitlines() if "docker-proxy" in line
                   and f":{stack.api_port} " in line]
        assert proxies and all(is_loopback(line.split()[3].rsplit(":", 1)[0])
                               for line in proxies), proxies

    api = httpx.Client(base_url=f"http://127.0.0.1:{stack.api_port}", timeout=60.0,
                       headers={"Authorization": f"Bearer {stack.token}"})
    assert httpx.post(f"http://127.0.0.1:{stack.api_port}/experiments",
                      json=SPEC).status_code == 401  # no token, no experiment
    r = api.post("/experiments", json=SPEC)
    assert r.status_code == 201, r.text
    exp_id = r.json()["id"]
    posted = time.monotonic()

    seen: dict[tuple[int, int], str] = {}  # (trial, attempt) -> worker container of it
    ray_node: dict[tuple[int, int], str] = {}  # (trial, attempt) -> Ray's node id of it

    def poll(until: Callable[[dict[str, Any]], bool]) -> Callable[[], dict[str, Any] | None]:
        def once() -> dict[str, Any] | None:
            exp = api.get(f"/experiments/{exp_id}").raise_for_status().json()
            for t in trials(exp):
                if t["state"] == "running" and t["worker_node"]:
                    seen.setdefault((t["id"], t["attempts"]), t["worker_node"])
                if t["state"] == "running" and t["worker_ray_node"]:
                    ray_node.setdefault((t["id"], t["attempts"]), t["worker_ray_node"])
            return exp if until(exp) else None
        return once

    # A trial with a checkpoint (every 5 steps) behind it, on one of the two workers.
    def checkpointed(exp: dict[str, Any]) -> bool:
        return any(t["state"] == "running" and t["step"] >= 8 for t in trials(exp))

    exp = wait("a trial past its first checkpoint", poll(checkpointed), timeout=300, interval=0.2)
    moving = next(t for t in trials(exp) if t["state"] == "running" and t["step"] >= 8)
    victim = seen[(moving["id"], moving["attempts"])]
    assert victim in workers, (victim, ids)
    docker("update", "--restart=no", victim)  # a lost machine does not come back
    docker("kill", victim)
    killed = time.monotonic()

    exp = wait("the experiment to end", poll(done), timeout=600, interval=0.5)
    finished = time.monotonic()
    assert exp["status"] == "finished", [(t["state"], t["error"]) for t in trials(exp)]
    by_id = {t["id"]: t for t in trials(exp)}
    moved = by_id[moving["id"]]
    (survivor,) = workers - {victim}
    assert moved["attempts"] >= 2, moved
    assert moved["resumed_from_step"] is not None and moved["resumed_from_step"] >= 5, moved
    assert moved["worker_node"] == survivor, (moved["worker_node"], victim, survivor)
    assert {t["worker_node"] for t in by_id.values()} <= workers
    # Ray's node ids say the same: the resumed attempt ran on another node than the first.
    first, last = ray_node[(moved["id"], 1)], moved["worker_ray_node"]
    assert first != last and all(re.fullmatch(r"[0-9a-f]{56}", n) for n in (first, last)), (
        first, last)
    others = [t for tid, t in by_id.items() if tid != moved["id"]]
    assert all(t["state"] == "finished" for t in others), others

    # One MLflow run per trial, finished; the resumed one logged no step twice.
    runs = mlflow_runs(stack, controller, exp["mlflow_experiment_id"])
    assert sorted(r["id"] for r in runs) == sorted(t["mlflow_run_id"] for t in by_id.values())
    assert {r["status"] for r in runs} == {"FINISHED"}
    steps = next(r["loss_steps"] for r in runs if r["id"] == moved["mlflow_run_id"])
    assert steps == sorted(set(steps)) and steps[-1] >= STEPS - 2, steps

    r = api.get(f"/experiments/{exp_id}/compare", params={"format": "markdown"})
    assert r.status_code == 200, r.text
    assert "text/markdown" in r.headers["content-type"]
    assert "| ITC=on | 2 |" in r.text and "| ITC=off | 2 |" in r.text, r.text[:2000]
    api.close()

    down_start = time.monotonic()
    stack("down", "-v", "--remove-orphans", "-t", "30")
    stack.timings["down_s"] = time.monotonic() - down_start
    assert stack.leftovers() == {"container": [], "volume": [], "network": []}
    stack.timings.update(first_checkpoint_s=killed - posted, after_kill_s=finished - killed,
                         wall_s=time.monotonic() - start)
    print(f"\nattempts {seen}; victim {victim}, survivor {survivor}; resumed from step "
          f"{moved['resumed_from_step']}; timings " +
          ", ".join(f"{k} {v:.1f}" for k, v in stack.timings.items()))
