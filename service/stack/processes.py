"""The processes an embedded stack is made of: spawning one in its own session without the
service's secrets, waiting for it to answer HTTP, stopping it with everything it spawned, and
the small socket helpers the stack, the tests and the benches share."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psutil

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
    started_at: float = field(default_factory=time.monotonic)

    def remember_descendants(self) -> None:
        with contextlib.suppress(psutil.Error):
            for p in psutil.Process(self.proc.pid).children(recursive=True):
                self.descendants.add(p.pid)

    def alive(self) -> bool:
        return self.proc.poll() is None

    def signal_group(self, signum: int) -> None:
        """Signal the child's process group (it leads its own session): its helpers too."""
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signum)

    def wait_until(self, deadline: float) -> bool:
        """Wait for the main process to exit, at most until ``deadline``; True if it did."""
        try:
            self.proc.wait(timeout=max(0.0, deadline - time.monotonic()))
            return True
        except subprocess.TimeoutExpired:
            return False

    def kill_all(self) -> None:
        """SIGKILL the group and every remembered descendant still alive (Ray's workers, say,
        which leave the group). Idempotent: the end of a stop, or the wreck of a crash."""
        self.signal_group(signal.SIGKILL)
        with contextlib.suppress(ProcessLookupError):
            self.proc.kill()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=5)
        for pid in sorted(self.descendants):
            with contextlib.suppress(psutil.Error):
                psutil.Process(pid).kill()

    def stop(self, grace: float = 3.0) -> None:
        """SIGTERM the process group, wait up to ``grace``, then SIGKILL whatever is left."""
        self.remember_descendants()
        self.signal_group(signal.SIGTERM)
        self.wait_until(time.monotonic() + grace)
        self.kill_all()

    def kill(self) -> None:
        """SIGKILL the main process only (what a crash looks like)."""
        with contextlib.suppress(ProcessLookupError):
            self.proc.kill()
        self.proc.wait(timeout=10)


def spawn(name: str, cmd: list[str], log_dir: Path, env: dict[str, str] | None = None,
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
                               f"{child.log_path}:\n{tail(child.log_path)}")
        try:
            r = httpx.get(url, timeout=2.0, headers=headers)
            if r.status_code < 500:
                return
            last = f"HTTP {r.status_code}"
        except httpx.HTTPError as err:
            last = str(err)
        time.sleep(0.3)
    raise RuntimeError(f"{name} not ready at {url} after {timeout:.0f}s ({last})")


def tail(path: Path, n: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-n:])
    except OSError:
        return ""


def processes_mentioning(text: str) -> list[int]:
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
