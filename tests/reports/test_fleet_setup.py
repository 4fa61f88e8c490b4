"""The README's PostgreSQL fleet set-up, followed on a private cluster: a role that owns its
database (or has USAGE and CREATE on the schema of a database it does not own) can apply
the migrations and record, which is what the daemon and ``authmilter report`` do at start."""

from __future__ import annotations

import uuid

import pytest

from authmilter.reports.schema import MIGRATIONS
from authmilter.reports.store import open_store
from tests.support.postgres import PostgresCluster


def _as(cluster: PostgresCluster, database: str, role: str) -> str:
    return cluster.dsn(database).replace(f"postgresql://{cluster.user}@", f"postgresql://{role}@")


def _admin(cluster: PostgresCluster, *statements: str, database: str = "postgres") -> None:
    import psycopg

    with psycopg.connect(cluster.dsn(database), autocommit=True) as conn:
        for statement in statements:
            conn.execute(statement)  # type: ignore[arg-type]


@pytest.fixture
def names() -> tuple[str, str]:
    suffix = uuid.uuid4().hex[:8]
    return f"am{suffix}", f"amdb{suffix}"


def test_role_owning_its_database(pg_cluster: PostgresCluster, names: tuple[str, str]) -> None:
    role, database = names
    # createuser authmilter; createdb --owner=authmilter authmilter
    _admin(pg_cluster, f"CREATE ROLE {role} LOGIN", f"CREATE DATABASE {database} OWNER {role}")
    store = open_store(_as(pg_cluster, database, role), "mx1.example")
    try:
        assert store.migrate() == len(MIGRATIONS)
        assert store.migrate() == len(MIGRATIONS)  # every later start: nothing to do
    finally:
        store.close()


def test_role_granted_create_on_the_schema(
    pg_cluster: PostgresCluster, names: tuple[str, str]
) -> None:
    role, database = names
    _admin(pg_cluster, f"CREATE ROLE {role} LOGIN", f"CREATE DATABASE {database}")
    _admin(
        pg_cluster,
        f"GRANT CONNECT ON DATABASE {database} TO {role}",
        f"GRANT USAGE, CREATE ON SCHEMA public TO {role}",
        database=database,
    )
    store = open_store(_as(pg_cluster, database, role), "mx1.example")
    try:
        assert store.migrate() == len(MIGRATIONS)
    finally:
        store.close()


def test_role_with_data_rights_only_after_the_owner_migrated(
    pg_cluster: PostgresCluster, names: tuple[str, str]
) -> None:
    """The owner runs ``authmilter report --migrate`` once; the daemons' role may then have
    no right to create anything: a current schema is only read at start."""
    role, database = names
    owner = role + "own"
    _admin(
        pg_cluster,
        f"CREATE ROLE {owner} LOGIN",
        f"CREATE ROLE {role} LOGIN",
        f"CREATE DATABASE {database} OWNER {owner}",
    )
    _admin(pg_cluster, "REVOKE CREATE ON SCHEMA public FROM PUBLIC", database=database)
    store = open_store(_as(pg_cluster, database, owner), "mx1.example")
    try:
        assert store.migrate() == len(MIGRATIONS)
    finally:
        store.close()
    _admin(
        pg_cluster,
        f"GRANT CONNECT ON DATABASE {database} TO {role}",
        f"GRANT USAGE ON SCHEMA public TO {role}",
        f"GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO {role}",
        database=database,
    )
    _admin(
        pg_cluster,
        f"GRANT USAGE ON ALL SEQUENCES IN SCHEMA public TO {role}",
        database=database,
    )
    store = open_store(_as(pg_cluster, database, role), "mx2.example")
    try:
        assert store.migrate() == len(MIGRATIONS)
    finally:
        store.close()
