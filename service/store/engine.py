"""Engines and migrations: SQLite's WAL and locking, PostgreSQL's JSON, Alembic to head.

The controller, the Ray job's supervisor and every trial worker write with the same URL, so each
write is a short transaction. SQLite runs in WAL mode with a busy timeout and takes its write lock
up front (``BEGIN IMMEDIATE``), so concurrent writers from several processes wait their turn
instead of failing; reads (``READ_ONLY``) take no lock and read a snapshot. PostgreSQL runs
writers concurrently: migrations there take an advisory lock (``MIGRATION_LOCK_KEY``, taken in
``service/migrations/env.py``).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config as AlembicConfig
from sqlalchemy import create_engine, event
from sqlalchemy.engine import Engine

__all__ = ["MIGRATIONS", "MIGRATION_LOCK_KEY", "ONE_STATEMENT", "READ_ONLY", "alembic_config",
           "make_engine", "migrate"]

MIGRATIONS = Path(__file__).resolve().parent.parent / "migrations"
"""Alembic's script directory (``service/migrations``), shipped as package data."""
MIGRATION_LOCK_KEY = 0x61626C617465  # "ablate"
"""PostgreSQL advisory lock held while migrating (see migrations/env.py); per database."""
READ_ONLY = "ablate_read_only"
"""Execution option of an engine whose transactions never write (``Store``'s reads): on SQLite
they begin without taking the write lock."""
ONE_STATEMENT = "ablate_one_statement"
"""Execution option for a read of one statement: on SQLite no BEGIN at all (a statement outside
a transaction is its own snapshot), which spares two round trips of a per-request query."""
SQLITE_POOL = {"pool_size": 16, "max_overflow": 24}
"""Up to 40 connections, the size of the controller's thread pool (anyio's default), and 16
kept open: with SQLAlchemy's default 5 + 10, concurrent requests opened and closed overflow
connections (PRAGMAs included) on every burst."""


def _finite(value: Any) -> Any:
    """``value`` with every non-finite float (at any depth) replaced by None."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


def _json_without_nan(value: Any) -> str:
    """JSON for server databases: NaN and infinities become ``null``.

    Python writes them as the bare tokens ``NaN``/``Infinity``, which are not JSON, and
    PostgreSQL rejects the whole row: one NaN in a progress report would fail the write.
    SQLite stores and returns the tokens unchanged, so its engine keeps the default serializer.
    """
    return json.dumps(_finite(value), allow_nan=False)


def make_engine(url: str) -> Engine:
    """An engine; for SQLite: WAL, a 30 s busy timeout, foreign keys, write lock taken at BEGIN."""
    if not url.startswith("sqlite"):
        return create_engine(url, pool_pre_ping=True, json_serializer=_json_without_nan)
    path = url.split("///", 1)[1] if "///" in url else ""
    pool: dict[str, Any] = {}
    if path and path != ":memory:":
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        pool = SQLITE_POOL
    engine = create_engine(url, connect_args={"timeout": 30, "check_same_thread": False}, **pool)

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None  # we issue BEGIN ourselves, below
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA busy_timeout=30000")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        # Taking the write lock up front avoids SQLITE_BUSY on a read->write upgrade in WAL mode
        # (which the busy timeout cannot wait out); transactions here are short. A transaction
        # that only reads (READ_ONLY) takes no lock: in WAL mode it reads a snapshot while
        # writers go on, so status polls neither queue behind each other nor behind a writer.
        options = conn.get_execution_options()
        if options.get(ONE_STATEMENT, False):
            return
        conn.exec_driver_sql("BEGIN" if options.get(READ_ONLY, False) else "BEGIN IMMEDIATE")

    return engine


def alembic_config(url: str) -> AlembicConfig:
    """Alembic's config for ``url`` with the packaged migrations (no alembic.ini needed)."""
    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


def migrate(url: str) -> None:
    """Bring the schema to the newest Alembic revision (the migrations ship in the package)."""
    cfg = alembic_config(url)
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, "head")
            conn.commit()
    finally:
        engine.dispose()
