"""Fixtures shared by the service tests: a private PostgreSQL cluster (see ``postgres.py``)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.service.postgres import PostgresCluster, require_pg_bin


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[PostgresCluster]:
    """One throwaway server for the whole run (started only if a test asks for PostgreSQL)."""
    pytest.importorskip("psycopg", reason="the PostgreSQL driver (pip install -e '.[dev]')")
    cluster = PostgresCluster(require_pg_bin())
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture
def pg_url(pg_cluster: PostgresCluster) -> str:
    """A fresh, empty database per test, so tests stay independent."""
    return pg_cluster.create_database()
