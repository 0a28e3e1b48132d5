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
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psutil

from service.secret_files import new_ray_token, ray_auth_headers
from service.settings import LOOPBACK, Settings

BIN = Path(sys.executable).parent
NEVER_INHERITED = ("ABLATE_AUTH_TOKEN", "ABLATE_DB_URL", "RAY_AUTH_TOKEN")
"""Variables of this process that no child gets by inheritance (the controller gets the first
two from its settings; Ray's processes read the token from the stack's token file)."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def serve_in_thread(app: Any, timeout: float = 30.0, log_level: str = "warning"
                    ) -> Iterator[str]:
    """Serve a FastAPI app with uvicorn on 127.0.0.1 in a thread of this process; yields its
    base URL. For the tests and benches that need real HTTP without a stack."""
    import uvicorn

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port,
                                           log_level=log_level))
    thread = threading.Thread(target=server.run, name="uvicorn", daemon=True)
    thread.start()
    deadline = time.monotonic() + timeout
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def port_in_use(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket() as s:
        return s.connect_ex((host, port)) == 0


@dataclass
class Child:
    """One process this stack started, with everything it spawned."""

    name: str
    proc: subprocess.Popen[bytes]
    log_path: Path
    descendants: set[int] = field(default_factory=set)

    def remember_descendants(self) -> None:
        with contextlib.suppress(psutil.Error):
            for p in psutil.Process(self.proc.pid).children(recursive=True):
                self.descendants.add(p.pid)

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self, timeout: float = 15.0) -> None:
        """SIGTERM the process group, wait, then SIGKILL whatever of ours is left."""
        self.remember_descendants()
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)
        deadline = time.monotonic() + 5
        for pid in sorted(self.descendants):
            _kill_pid(pid, deadline)

    def kill(self) -> None:
        """SIGKILL the main process only (what a crash looks like)."""
        with contextlib.suppress(ProcessLookupError):
            self.proc.kill()
        self.proc.wait(timeout=10)


def _kill_pid(pid: int, deadline: float) -> None:
    try:
        p = psutil.Process(pid)
        p.terminate()
        p.wait(timeout=max(0.1, deadline - time.monotonic()))
    except psutil.TimeoutExpired:
        with contextlib.suppress(psutil.Error):
            psutil.Process(pid).kill()
    except psutil.Error:
        pass


def _spawn(name: str, cmd: list[str], log_dir: Path, env: dict[str, str] | None = None,
           cwd: Path | None = None) -> Child:
    log_dir.mkdir(parents=True, exist_ok=True)
    log_path = log_dir / f"{name}.log"
    inherited = {k: v for k, v in os.environ.items() if k not in NEVER_INHERITED}
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(
            cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            env={**inherited, **(env or {})}, cwd=cwd, start_new_session=True,
        )
    return Child(name, proc, log_path)


def wait_http(url: str, child: Child | None, timeout: float, name: str,
              headers: dict[str, str] | None = None) -> None:
    deadline = time.monotonic() + timeout
    last = ""
    while time.monotonic() < deadline:
        if child is not None and not child.alive():
            raise RuntimeError(f"{name} exited (code {child.proc.returncode}); see "
                               f"{child.log_path}:\n{_tail(child.log_path)}")
        try:
            r = httpx.get(url, timeout=2.0, headers=headers)
            if r.status_code < 500:
                return
            last = f"HTTP {r.status_code}"
        except httpx.HTTPError as err:
            last = str(err)
        time.sleep(0.3)
    raise RuntimeError(f"{name} not ready at {url} after {timeout:.0f}s ({last})")


def _tail(path: Path, n: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-n:])
    except OSError:
        return ""


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

    # ---- parts ---------------------------------------------------------------------------
    def start_mlflow(self, timeout: float = 90.0) -> None:
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
        child = _spawn("mlflow", cmd, self.log_dir,
                       env={"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"})
        self.children["mlflow"] = child
        wait_http(f"{s.mlflow_tracking_uri.rstrip('/')}/health", child, timeout, "MLflow")

    def start_ray(self, timeout: float = 120.0) -> None:
        s = self.settings
        if self.ray_temp_dir is None:
            self.ray_temp_dir = Path(tempfile.mkdtemp(prefix="ablray-"))
        if self._own_ray_token:
            s.ray_auth_token_file = new_ray_token(s)  # fresh per head; the controller reads it
        gcs = s.ray_gcs_port or free_port()
        cmd = [
            str(BIN / "ray"), "start", "--head", "--block", "--disable-usage-stats",
            "--node-ip-address", LOOPBACK, "--port", str(gcs),
            "--include-dashboard=true", "--dashboard-host", LOOPBACK,
            "--dashboard-port", str(s.ray_dashboard_port),
            "--temp-dir", str(self.ray_temp_dir),
            "--ray-client-server-port", str(free_port()),
            "--dashboard-agent-listen-port", str(free_port()),
            "--dashboard-agent-grpc-port", str(free_port()),
            "--runtime-env-agent-port", str(free_port()),
            "--metrics-export-port", str(free_port()),
            "--node-manager-port", str(free_port()),
            "--object-manager-port", str(free_port()),
        ]
        if self.num_cpus is not None:
            cmd += ["--num-cpus", str(self.num_cpus)]
        env = {
            "RAY_USAGE_STATS_ENABLED": "0",
            # `ray start` replaces a loopback --node-ip-address with the machine's address, and
            # the GCS, raylet, object manager, agents and workers then bind that, unless Ray
            # takes the host for a single-node one (the switch Windows and macOS get).
            "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
            **self.ray_client_env(),
        }
        child = _spawn("ray", cmd, self.log_dir, env=env)
        self.children["ray"] = child
        auth = ray_auth_headers(s)
        wait_http(f"{s.ray_address.rstrip('/')}/api/version", child, timeout, "Ray dashboard",
                  auth)
        # The Jobs API answers once the head's job agent is up.
        wait_http(f"{s.ray_address.rstrip('/')}/api/jobs/", child, timeout, "Ray Jobs API", auth)
        child.remember_descendants()

    def start_controller(self, timeout: float = 60.0) -> Child:
        s = self.settings
        cmd = [
            sys.executable, "-m", "uvicorn", "service.api:create_app_from_env", "--factory",
            "--host", s.host, "--port", str(s.port), "--log-level", "warning",
        ]
        env = {**s.env(), "PYTHONUNBUFFERED": "1"}
        child = _spawn("controller", cmd, self.log_dir, env=env)
        self.children["controller"] = child
        wait_http(f"{s.controller_url.rstrip('/')}/healthz", child, timeout, "controller")
        return child

    def ray_client_env(self) -> dict[str, str]:
        """Ray's variables for a process that joins this stack's Ray as a driver (``ray.init``):
        token auth and where the token is. Empty when the stack runs no Ray of its own."""
        path = self.settings.ray_auth_token_file
        if not self.want_ray or path is None:
            return {}
        return {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": str(path)}

    # ---- whole stack -----------------------------------------------------------------------
    def start(self) -> Stack:
        """MLflow and Ray start side by side (neither needs the other), then the controller.
        A controller that would be exposed without auth is refused before anything starts."""
        if self.want_controller:
            self.settings.check_exposure()
        errors: list[BaseException] = []

        def mlflow_in_thread() -> None:
            try:
                self.start_mlflow()
            except BaseException as err:  # re-raised in the caller's thread below
                errors.append(err)

        mlflow = threading.Thread(target=mlflow_in_thread, name="start-mlflow", daemon=True)
        try:
            if self.want_mlflow:
                mlflow.start()
            if self.want_ray:
                self.start_ray()
            if self.want_mlflow:
                mlflow.join()
            if errors:
                raise errors[0]
            if self.want_controller:
                self.start_controller()
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Controller first (no new submissions), then Ray (its jobs), then MLflow."""
        for name in ("controller", "ray", "mlflow"):
            child = self.children.pop(name, None)
            if child is not None:
                child.stop()
        token = self.settings.ray_auth_token_file
        if self._own_ray_token and token is not None:
            token.unlink(missing_ok=True)  # its head is gone; the next one gets a new token
        if self.ray_temp_dir is not None:
            for proc in _processes_mentioning(str(self.ray_temp_dir)):
                _kill_pid(proc, time.monotonic() + 5)
            if self._own_temp_dir:
                shutil.rmtree(self.ray_temp_dir, ignore_errors=True)
                self.ray_temp_dir = None

    def urls(self) -> dict[str, str]:
        s = self.settings
        return {"controller": s.controller_url, "mlflow": s.mlflow_ui_url or
                s.mlflow_tracking_uri, "ray": s.ray_address}

    def __enter__(self) -> Stack:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _processes_mentioning(text: str) -> list[int]:
    """PIDs of our user's processes whose command line names ``text`` (our Ray's temp dir)."""
    me = os.getuid()
    out = []
    for p in psutil.process_iter(["pid", "uids", "cmdline"]):
        try:
            if p.info["uids"] and p.info["uids"].real != me:
                continue
            if any(text in arg for arg in (p.info["cmdline"] or [])):
                out.append(p.info["pid"])
        except psutil.Error:
            continue
    return [pid for pid in out if pid != os.getpid()]
