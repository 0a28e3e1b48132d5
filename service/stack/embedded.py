"""The embedded stack on loopback: a Ray head with its dashboard, an MLflow server on SQLite, and
the controller (uvicorn). Used by ``ablate serve``/``ablate demo``, the e2e tests and the bench.

Each part is a child process in its own session, so stopping kills exactly what this stack
started (by PID and process group) and nothing else on the machine: never ``ray stop``, which
would take down every Ray on the host. The Ray head gets a dedicated ``--temp-dir`` and free
ports, so several stacks (or a developer's own Ray) can live side by side.

Nothing of it is open: Ray (every server and worker) and MLflow listen on 127.0.0.1 only, the
controller on ``settings.host`` (beyond loopback only with a token, or an explicit opt-out), and
Ray runs with token auth (``RAY_AUTH_MODE=token``): loopback is still reachable by every user of
the machine, and Ray's Jobs API runs any command. No child inherits the service's secrets from
this process's environment; the controller gets them explicitly.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import psutil

from service.settings import LOOPBACK, Settings
from service.stack.processes import (
    NEVER_INHERITED,
    Child,
    free_port,
    port_in_use,
    processes_mentioning,
    serve_in_thread,
    spawn,
    tail,
    wait_http,
)
from service.stack.ray_node import CLUSTER_SWITCH
from service.stack.secret_files import new_ray_token, ray_auth_headers

__all__ = ["NEVER_INHERITED", "STOP_GRACE_S", "Child", "Stack", "free_port", "port_in_use",
           "serve_in_thread"]
"""The stack, and the process helpers the CLI, tests and benches take from here."""

BIN = Path(sys.executable).parent
STOP_GRACE_S = 3.0
"""Seconds the parts get to exit on SIGTERM before SIGKILL, all at once."""


def _node_ports() -> list[str]:
    """A free loopback port for every server of a Ray node Ray would otherwise place itself
    (two nodes share this machine; each stack has its own)."""
    flags = ("--dashboard-agent-listen-port", "--dashboard-agent-grpc-port",
             "--runtime-env-agent-port", "--metrics-export-port", "--node-manager-port",
             "--object-manager-port")
    return [arg for flag in flags for arg in (flag, str(free_port()))]


class Stack:
    """Start/stop the parts; each ``start_*`` is skipped when its setting points elsewhere."""

    def __init__(
        self,
        settings: Settings,
        *,
        start_ray: bool = True,
        start_mlflow: bool = True,
        start_controller: bool = True,
        num_cpus: int | None = None,
        ray_temp_dir: Path | None = None,
    ) -> None:
        self.settings = settings
        self.want_ray = start_ray
        self.want_mlflow = start_mlflow
        self.want_controller = start_controller
        self.num_cpus = num_cpus
        self.log_dir = settings.data_dir / "logs"
        # Ray's socket paths must stay short: a dedicated dir under the system temp dir.
        self.ray_temp_dir = ray_temp_dir
        self._own_temp_dir = ray_temp_dir is None
        self.children: dict[str, Child] = {}
        self._own_ray_token = start_ray and settings.ray_auth_token_file is None
        self._reaper: Child | None = None
        self.gcs_address: str | None = None
        """host:port of the head's GCS, once started (what a joining node is given)."""

    # ---- parts ---------------------------------------------------------------------------
    def spawn_mlflow(self) -> Child:
        """Start the MLflow server without waiting for it (``start_mlflow`` waits)."""
        s = self.settings
        root = s.data_dir / "mlflow"
        (root / "artifacts").mkdir(parents=True, exist_ok=True)
        cmd = [
            str(BIN / "mlflow"), "server",
            "--backend-store-uri", f"sqlite:///{root / 'mlflow.db'}",
            "--default-artifact-root", str(root / "artifacts"),
            "--host", LOOPBACK, "--port", str(s.mlflow_port), "--workers", "1",
        ]
        # MLflow 3's job runner (huey consumers for GenAI jobs: trace roll-ups, prompt
        # optimisation) is not used here; off, the server starts 7 fewer Python processes.
        child = spawn("mlflow", cmd, self.log_dir,
                       env={"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"})
        self._adopt(child)
        return child

    def start_mlflow(self, timeout: float = 90.0) -> None:
        self.wait_mlflow(self.spawn_mlflow(), timeout)

    def wait_mlflow(self, child: Child, timeout: float = 90.0) -> None:
        uri = self.settings.mlflow_tracking_uri.rstrip("/")
        wait_http(f"{uri}/health", child, timeout, "MLflow")
        child.remember_descendants()

    def start_ray(self, timeout: float = 120.0) -> None:
        s = self.settings
        if self.ray_temp_dir is None:
            self.ray_temp_dir = Path(tempfile.mkdtemp(prefix="ablray-"))
        if self._own_ray_token:
            s.ray_auth_token_file = new_ray_token(s)  # fresh per head; the controller reads it
        gcs = s.ray_gcs_port or free_port()
        self.gcs_address = f"{LOOPBACK}:{gcs}"
        cmd = [
            str(BIN / "ray"), "start", "--head", "--block", "--disable-usage-stats",
            "--node-ip-address", LOOPBACK, "--port", str(gcs),
            "--include-dashboard=true", "--dashboard-host", LOOPBACK,
            "--dashboard-port", str(s.ray_dashboard_port),
            "--temp-dir", str(self.ray_temp_dir),
            "--ray-client-server-port", str(free_port()),
            *_node_ports(),
        ]
        if self.num_cpus is not None:
            cmd += ["--num-cpus", str(self.num_cpus)]
        child = spawn("ray", cmd, self.log_dir, env=self._ray_node_env())
        self._adopt(child)
        auth = ray_auth_headers(s)
        wait_http(f"{s.ray_address.rstrip('/')}/api/version", child, timeout, "Ray dashboard",
                  auth)
        # The Jobs API answers once the head's job agent is up.
        wait_http(f"{s.ray_address.rstrip('/')}/api/jobs/", child, timeout, "Ray Jobs API", auth)
        child.remember_descendants()

    def add_ray_node(self, name: str, *, num_cpus: int, resources: dict[str, float] | None = None,
                     timeout: float = 120.0) -> Child:
        """A second Ray node on this machine, joining this stack's head on loopback: its own
        process group, resources and ports, its temp dir under the head's (so the stack's stop
        and its reaper end it too). Returns once the GCS lists it alive. For the multi-node test
        and for trying a cluster on one machine; ``ablate serve`` starts none."""
        if self.gcs_address is None or self.ray_temp_dir is None:
            raise RuntimeError("start the head first")
        cmd = [
            sys.executable, "-m", "service.stack.ray_node", "--block", "--disable-usage-stats",
            "--address", self.gcs_address, "--node-ip-address", LOOPBACK,
            "--node-name", name, "--temp-dir", str(self.ray_temp_dir / name),
            "--num-cpus", str(num_cpus),
            *_node_ports(),
        ]
        if resources:
            cmd += ["--resources", json.dumps(resources)]
        child = spawn(name, cmd, self.log_dir, env=self._ray_node_env())
        self._adopt(child)
        deadline = time.monotonic() + timeout
        while not self._node_alive(name):
            if not child.alive() or time.monotonic() > deadline:
                raise RuntimeError(f"Ray node {name} did not join; see {child.log_path}:\n"
                                   f"{tail(child.log_path)}")
            time.sleep(0.5)
        child.remember_descendants()
        return child

    def ray_nodes(self) -> list[dict[str, Any]]:
        """Ray's node table (its state API: node_id, node_name, state, resources_total, ...)."""
        r = httpx.get(f"{self.settings.ray_address.rstrip('/')}/api/v0/nodes",
                      params={"detail": "true", "limit": "100"},
                      headers=ray_auth_headers(self.settings), timeout=10.0)
        r.raise_for_status()
        return list(r.json()["data"]["result"]["result"])

    def _node_alive(self, name: str) -> bool:
        try:
            nodes = self.ray_nodes()
        except (httpx.HTTPError, ValueError, KeyError):
            return False
        return any(n.get("node_name") == name and n.get("state") == "ALIVE" for n in nodes)

    def _ray_node_env(self) -> dict[str, str]:
        return {"RAY_USAGE_STATS_ENABLED": "0", CLUSTER_SWITCH: "0", **self.ray_client_env()}

    def spawn_controller(self) -> Child:
        """Start the controller (uvicorn) without waiting for it."""
        s = self.settings
        cmd = [
            sys.executable, "-m", "uvicorn", "service.api:create_app_from_env", "--factory",
            "--host", s.host, "--port", str(s.port), "--log-level", "warning",
            "--timeout-graceful-shutdown", "2",
        ]
        env = {**s.env(), "PYTHONUNBUFFERED": "1"}
        child = spawn("controller", cmd, self.log_dir, env=env)
        self._adopt(child)
        return child

    def start_controller(self, timeout: float = 60.0) -> Child:
        child = self.spawn_controller()
        self.wait_controller(child, timeout)
        return child

    def wait_controller(self, child: Child, timeout: float = 60.0) -> None:
        url = self.settings.controller_url.rstrip("/")
        wait_http(f"{url}/healthz", child, timeout, "controller")

    def respawn(self, name: str) -> Child:
        """Start a part again after it died, first killing what is left of the old one (a
        SIGKILLed MLflow leaves its server worker holding the port)."""
        old = self.children.pop(name, None)
        if old is not None:
            old.stop(grace=1.0)
        spawn = {"mlflow": self.spawn_mlflow, "controller": self.spawn_controller}
        if name not in spawn:
            raise ValueError(f"{name} cannot be restarted on its own")
        return spawn[name]()

    def _adopt(self, child: Child) -> None:
        self.children[child.name] = child
        self._write_state()

    def ray_client_env(self) -> dict[str, str]:
        """Ray's variables for a process of this stack's Ray, a node or a driver that joins it
        (``ray.init``): token auth and where the token is, and loopback addresses. Empty when
        the stack runs no Ray of its own.

        ``ray start`` replaces a loopback --node-ip-address with the machine's address, and the
        GCS, raylet, object manager, agents and workers then bind that, unless Ray takes the
        host for a single-node one (the switch Windows and macOS get; a second node then needs
        service.stack.ray_node to start at all). A driver without the switch takes the
        machine's address for its node's, finds no raylet there and retries forever."""
        path = self.settings.ray_auth_token_file
        if not self.want_ray or path is None:
            return {}
        return {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": str(path),
                CLUSTER_SWITCH: "0"}

    # ---- whole stack -----------------------------------------------------------------------
    def start(self) -> Stack:
        """MLflow and Ray start side by side (neither needs the other), then the controller.
        A controller that would be exposed without auth is refused before anything starts.
        A reaper (``service.stack.reaper``) is started first: it kills the stack if this process
        dies without stopping it (SIGKILL, OOM), so nothing is left orphaned."""
        if self.want_controller:
            self.settings.check_exposure()
        errors: list[BaseException] = []
        try:
            self._start_reaper()
            mlflow = self.spawn_mlflow() if self.want_mlflow else None

            def wait_mlflow_in_thread() -> None:
                try:
                    if mlflow is not None:
                        self.wait_mlflow(mlflow)
                except BaseException as err:  # re-raised in the caller's thread below
                    errors.append(err)

            waiter = threading.Thread(target=wait_mlflow_in_thread, name="wait-mlflow",
                                      daemon=True)
            waiter.start()
            if self.want_ray:
                self.start_ray()
            waiter.join()
            if errors:
                raise errors[0]
            if self.want_controller:
                self.start_controller()
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self, grace: float = STOP_GRACE_S) -> None:
        """Every part at once: SIGTERM to each process group, ``grace`` seconds to exit, then
        SIGKILL to whatever is left (Ray's own orderly shutdown takes ~8 s; its state dies
        with the head anyway, and trial checkpoints are written atomically). Well inside
        Docker's 10 s grace period."""
        order = ("controller", *sorted(set(self.children) - {"controller", "ray", "mlflow"}),
                 "ray", "mlflow")  # added Ray nodes before their head
        children = [self.children.pop(n) for n in order if n in self.children]
        for child in children:
            child.remember_descendants()
            child.signal_group(signal.SIGTERM)
        deadline = time.monotonic() + grace
        for child in children:
            child.wait_until(deadline)
        for child in children:
            child.kill_all()
        token = self.settings.ray_auth_token_file
        if self._own_ray_token and token is not None:
            token.unlink(missing_ok=True)  # its head is gone; the next one gets a new token
        if self.ray_temp_dir is not None:
            for pid in processes_mentioning(str(self.ray_temp_dir)):
                with contextlib.suppress(psutil.Error):
                    psutil.Process(pid).kill()
            if self._own_temp_dir:
                shutil.rmtree(self.ray_temp_dir, ignore_errors=True)
                self.ray_temp_dir = None
        self._stop_reaper()

    # ---- the reaper ----------------------------------------------------------------------------
    @property
    def state_file(self) -> Path:
        """What the reaper reads: the process groups and the Ray temp dir to clean up."""
        return self.settings.data_dir / "run" / f"stack-{os.getpid()}.json"

    def _write_state(self) -> None:
        if self._reaper is None:
            return
        state = {"groups": sorted(c.proc.pid for c in self.children.values()),
                 "ray_temp_dir": str(self.ray_temp_dir) if self.ray_temp_dir else None,
                 "own_temp_dir": self._own_temp_dir}
        tmp = self.state_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(state))
        os.replace(tmp, self.state_file)

    def _start_reaper(self) -> None:
        self.state_file.parent.mkdir(parents=True, exist_ok=True)
        self.state_file.write_text(json.dumps({"groups": []}))
        me = psutil.Process()
        cmd = [sys.executable, "-m", "service.stack.reaper", "--parent", str(me.pid),
               "--parent-started", repr(me.create_time()), "--state", str(self.state_file)]
        self._reaper = spawn("reaper", cmd, self.log_dir)

    def _stop_reaper(self) -> None:
        reaper, self._reaper = self._reaper, None
        self.state_file.unlink(missing_ok=True)  # the reaper exits when its file is gone
        if reaper is not None:
            reaper.stop(grace=2.0)

    def urls(self) -> dict[str, str]:
        s = self.settings
        return {"controller": s.controller_url, "mlflow": s.mlflow_ui_url or
                s.mlflow_tracking_uri, "ray": s.ray_address}

    def __enter__(self) -> Stack:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
