"""pip's ``docker-compose`` 1.29.2, in a venv of its own, for the tests of docker/.

Debian ships no compose plugin; the last Python docker-compose works here with ``docker<7``,
``requests<2.32``, ``urllib3<2`` and PyYAML 5.4.1 (no wheel for Python 3.11: built from source
with ``cython<3``). Those pins clash with the project's own dependencies, so it lives in its own
venv, outside the repository and made once per machine (about a minute on 2 cores):
``$ABLATE_COMPOSE_VENV``, default ``$XDG_CACHE_HOME/ablate/docker-compose-1.29.2``. It is made
under a lock and marked complete last, so a half-made venv is never used (it is made again).
"""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

VERSION = "1.29.2"
PACKAGES = (f"docker-compose=={VERSION}", "docker<7", "requests<2.32", "urllib3<2",
            "PyYAML==5.4.1")
BUILD_CONSTRAINTS = "cython<3\n"


class ComposeUnavailable(RuntimeError):
    """The venv could not be made (no package index, no compiler, ...): the reason."""


def venv_dir() -> Path:
    if os.environ.get("ABLATE_COMPOSE_VENV"):
        return Path(os.environ["ABLATE_COMPOSE_VENV"])
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return cache / "ablate" / f"docker-compose-{VERSION}"


def docker_compose(timeout: float = 900.0) -> Path:
    """The ``docker-compose`` executable, making its venv first if needed."""
    target = venv_dir()
    exe = target / "bin" / "docker-compose"
    done = target / ".complete"
    if done.is_file():
        return exe
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(target.parent / f".{target.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if done.is_file():  # made by another process while this one waited
            return exe
        shutil.rmtree(target, ignore_errors=True)  # a half-made one: start over
        try:
            _make(target, timeout)
        except BaseException:
            shutil.rmtree(target, ignore_errors=True)
            raise
        done.write_text(" ".join(PACKAGES) + "\n")
    return exe


def _make(where: Path, timeout: float) -> None:
    base = getattr(sys, "_base_executable", sys.executable)
    _run([base, "-m", "venv", str(where)], timeout)
    with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False) as f:
        f.write(BUILD_CONSTRAINTS)
    try:
        # Older pip applies PIP_CONSTRAINT to build dependencies, newer pip has
        # PIP_BUILD_CONSTRAINT: give both.
        env = {**os.environ, "PIP_CONSTRAINT": f.name, "PIP_BUILD_CONSTRAINT": f.name,
               "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
        _run([str(where / "bin" / "pip"), "install", "-q", *PACKAGES], timeout, env)
    finally:
        os.unlink(f.name)
    if not (where / "bin" / "docker-compose").is_file():
        raise ComposeUnavailable(f"pip installed no docker-compose into {where}")


def _run(cmd: list[str], timeout: float, env: dict[str, str] | None = None) -> None:
    try:
        res = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
    except (OSError, subprocess.TimeoutExpired) as err:
        raise ComposeUnavailable(f"{' '.join(cmd)}: {err}") from err
    if res.returncode != 0:
        raise ComposeUnavailable(f"{' '.join(cmd)} failed (rc={res.returncode}):\n"
                                 f"{(res.stderr or res.stdout)[-2000:]}")
