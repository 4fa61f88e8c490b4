"""Fixtures of the reports tests: a private PostgreSQL cluster, a store of each backend."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from authmilter.reports.store import HistoryStore, open_store
from tests.support.postgres import PostgresCluster, postgres_available


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[PostgresCluster]:
    """One private PostgreSQL cluster for the whole run (skips when impossible)."""
    reason = postgres_available()
    if reason:
        pytest.skip(reason)
    with PostgresCluster() as cluster:
        yield cluster


@pytest.fixture(params=["sqlite", "postgresql"])
def history_dsn(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A DSN of an empty history database of each backend."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/history.db"
    cluster: PostgresCluster = request.getfixturevalue("pg_cluster")
    return cluster.database()


@pytest.fixture
def store(history_dsn: str) -> Iterator[HistoryStore]:
    """A migrated store of each backend."""
    opened = open_store(history_dsn, host="mx1.example")
    opened.migrate()
    yield opened
    opened.close()
