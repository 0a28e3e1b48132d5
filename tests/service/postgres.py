"""A private, throwaway PostgreSQL cluster for the store's tests.

The store claims "PostgreSQL by URL"; these helpers make that claim testable on one machine
without touching any system cluster: ``initdb`` into a fresh temp dir, a server on a free
loopback port with its socket in that dir, trust auth for one role, ``fsync=off`` (nothing here
needs to survive a crash), and ``pg_ctl -m immediate stop`` plus removal at the end.

The server binaries come from PATH or the Debian layout ``/usr/lib/postgresql/<ver>/bin`` (not on
PATH by default); ``scripts/test-setup.sh`` installs them when missing. ``initdb`` refuses to run
as root, so under root every server command runs as the ``postgres`` user the Debian package
creates, in a dir owned by it.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
import uuid
from pathlib import Path

import pytest

from service.stack.embedded import free_port

ROOT = Path(__file__).resolve().parents[2]
DEBIAN_PG = Path("/usr/lib/postgresql")
ROLE = "ablate"
RUN_AS = "postgres"
"""The system user that runs the server when the tests run as root."""


def find_pg_bin() -> Path | None:
    """The dir holding ``initdb`` and ``pg_ctl``: PATH first, else the newest Debian version."""
    on_path = shutil.which("initdb")
    if on_path and shutil.which("pg_ctl"):
        return Path(on_path).resolve().parent
    versions = []
    for d in DEBIAN_PG.glob("*/bin") if DEBIAN_PG.is_dir() else []:
        m = re.fullmatch(r"\d+(?:\.\d+)?", d.parent.name)
        if m and (d / "initdb").is_file() and (d / "pg_ctl").is_file():
            versions.append((tuple(int(p) for p in d.parent.name.split(".")), d))
    return max(versions)[1] if versions else None


def require_pg_bin() -> Path:
    """The server binaries, installed by ``scripts/test-setup.sh`` if missing; else a loud skip."""
    found = find_pg_bin()
    if found is None:
        setup = subprocess.run(["bash", str(ROOT / "scripts" / "test-setup.sh")],
                               capture_output=True, text=True, timeout=900)
        found = find_pg_bin()
        if found is None:
            pytest.skip("PostgreSQL server binaries (initdb, pg_ctl) are not installed and "
                        f"scripts/test-setup.sh could not install them (rc={setup.returncode}): "
                        f"{setup.stderr.strip()[-500:]}")
    return found


class PostgresCluster:
    """One private server: ``start()``, ``create_database()`` per test, ``stop()``."""

    def __init__(self, bin_dir: Path) -> None:
        self.bin_dir = bin_dir
        self.as_root = os.geteuid() == 0
        self.base = Path(tempfile.mkdtemp(prefix="ablate-pg-"))
        self.data = self.base / "data"
        self.sock = self.base / "sock"
        self.log = self.base / "server.log"
        self.port = 0
        self.started = False

    def _cmd(self, tool: str, *args: str) -> list[str]:
        cmd = [str(self.bin_dir / tool), *args]
        return ["runuser", "-u", RUN_AS, "--", *cmd] if self.as_root else cmd

    def _run(self, tool: str, *args: str, timeout: float = 120) -> None:
        # cwd=base: the server user may not be allowed into the caller's working directory.
        res = subprocess.run(self._cmd(tool, *args), capture_output=True, text=True,
                             timeout=timeout, cwd=self.base, env=_clean_env())
        if res.returncode != 0:
            raise RuntimeError(
                f"{tool} {' '.join(args)} failed (rc={res.returncode}): "
                f"{res.stderr.strip()[-1500:]}\n{self._log_tail()}"
            )

    def _log_tail(self) -> str:
        try:
            return "server log:\n" + self.log.read_text(errors="replace")[-1500:]
        except OSError:
            return ""

    def _hand_to_server_user(self) -> None:
        """Under root: the temp dir belongs to the server user, who must also reach it."""
        import pwd

        try:
            user = pwd.getpwnam(RUN_AS)
        except KeyError:
            pytest.skip(f"running as root and there is no {RUN_AS!r} user to run PostgreSQL as "
                        "(initdb refuses root); the Debian postgresql package creates it")
        for p in (self.base, self.sock):
            os.chown(p, user.pw_uid, user.pw_gid)
        probe = subprocess.run(["runuser", "-u", RUN_AS, "--", "test", "-w", str(self.base)],
                               capture_output=True, timeout=30)
        if probe.returncode != 0:
            pytest.skip(f"user {RUN_AS!r} cannot write {self.base} (a parent dir is not "
                        "traversable); set TMPDIR to a world-traversable dir")

    def start(self) -> None:
        self.sock.mkdir(mode=0o700)
        if self.as_root:
            self._hand_to_server_user()
        self._run("initdb", "-D", str(self.data), "--auth=trust", "-U", ROLE,
                  "--no-locale", "--encoding=UTF8", "--no-sync")
        last: Exception | None = None
        for _ in range(3):  # free_port() can race with another process taking the port
            self.port = free_port()
            opts = (f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.sock} "
                    "-c fsync=off -c synchronous_commit=off -c full_page_writes=off")
            try:
                self._run("pg_ctl", "-D", str(self.data), "-l", str(self.log), "-o", opts,
                          "-w", "-t", "60", "start")
            except RuntimeError as err:
                last = err
                continue
            self.started = True
            return
        raise RuntimeError(f"PostgreSQL did not start: {last}")

    def stop(self) -> None:
        try:
            if self.started:
                self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop",
                          timeout=60)
                self.started = False
        finally:
            shutil.rmtree(self.base, ignore_errors=True)

    def admin_conninfo(self, dbname: str = "postgres") -> str:
        return f"host=127.0.0.1 port={self.port} user={ROLE} dbname={dbname}"

    def url(self, dbname: str) -> str:
        """The SQLAlchemy URL of one database of this cluster (psycopg 3 driver)."""
        return f"postgresql+psycopg://{ROLE}@127.0.0.1:{self.port}/{dbname}"

    def create_database(self, prefix: str = "t") -> str:
        """A new empty database with a unique name; returns its SQLAlchemy URL."""
        import psycopg
        from psycopg import sql

        name = f"{prefix}_{uuid.uuid4().hex[:12]}"
        # CREATE DATABASE cannot run inside a transaction block: autocommit.
        with psycopg.connect(self.admin_conninfo(), autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        return self.url(name)


def _clean_env() -> dict[str, str]:
    """The environment without libpq's PG* variables, so nothing points at another server."""
    return {k: v for k, v in os.environ.items() if not k.startswith("PG")}
