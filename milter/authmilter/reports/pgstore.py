"""The PostgreSQL history store (``reports.history = "postgresql://..."``, a fleet).

psycopg 3 is imported here only, so SQLite users need no psycopg (Debian 12's
python3-psycopg 3.1 and PyPI's 3.3 both work).

Migrations run in one transaction under ``pg_advisory_xact_lock`` (DDL is transactional in
PostgreSQL), so two hosts starting at once apply each migration once.

Claims (exactly once across hosts): a claim is one transaction on its own connection that
first takes ``pg_try_advisory_xact_lock(key)`` for (domain, begin, end): only one session in
the whole cluster can hold it, and another run gets None at once instead of waiting. Holding
the lock, it reads the ``reports`` row (READ COMMITTED: a mark committed by an earlier holder
is visible, since that holder committed before its lock was released); a marked report gives
None. The report is sent while the transaction is open, and the mark is written by the same
transaction and committed at the clean exit, which also releases the lock. An exception, or a
killed process or host (the server ends its session), rolls the transaction back: nothing is
marked, and the next run sends again with the same report id.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from typing import Any

from authmilter.errors import ConfigError
from authmilter.reports import schema
from authmilter.reports.history import HistoryRow
from authmilter.reports.sqlstore import SqlStore, StoreError

CONNECT_TIMEOUT = 5  # seconds to reach the server
INSERT_TIMEOUT = "30s"  # a batch the server has not taken by then fails (rows counted lost)
AGGREGATE_WORK_MEM = "64MB"  # the report's GROUP BY stays one in-memory hash (1M rows: ~1 s)
MIGRATION_LOCK = 0x61757468_6D696C74  # "authmilt": the advisory lock key of migrations


def _psycopg() -> Any:
    try:
        import psycopg  # noqa: PLC0415  (only PostgreSQL users need it)
    except ImportError:
        raise ConfigError(
            "reports.history: a postgresql:// history needs psycopg 3 "
            "(Debian: apt install python3-psycopg)"
        ) from None
    return psycopg


class PostgresStore(SqlStore):
    """History in a PostgreSQL database shared by every host of a fleet."""

    placeholder = "%s"

    def __init__(self, dsn: str, host: str = "") -> None:
        super().__init__(host)
        self._psycopg = _psycopg()
        self._dsn = dsn
        self._conn: Any = None

    def _connect(self) -> Any:
        try:
            return self._psycopg.connect(
                self._dsn, autocommit=True, connect_timeout=CONNECT_TIMEOUT
            )
        except self._psycopg.Error as exc:
            raise StoreError(f"history database: {_describe(exc)}") from None

    def _connection(self) -> Any:
        if self._conn is None or self._conn.closed:
            self._conn = self._connect()
        return self._conn

    @contextmanager
    def _transaction(self, *, write: bool) -> Iterator[Any]:
        with self._in_transaction(self._connection(), drop=True) as cur:
            yield cur

    @contextmanager
    def _in_transaction(self, conn: Any, *, drop: bool) -> Iterator[Any]:
        psycopg = self._psycopg
        try:
            with conn.transaction(), conn.cursor() as cur:
                yield cur
        except psycopg.Error as exc:
            if drop and (conn.closed or isinstance(exc, psycopg.OperationalError)):
                self.close()
            raise StoreError(f"history database: {_describe(exc)}") from None

    def insert(self, rows: Sequence[HistoryRow]) -> None:
        """Store a batch of rows in one transaction (COPY: several times executemany's rate)."""
        if not rows:
            return
        with self._transaction(write=True) as cur:
            cur.execute(f"SET LOCAL statement_timeout = '{INSERT_TIMEOUT}'")
            with cur.copy(schema.COPY) as copy:
                for row in rows:
                    copy.write_row(schema.row_values(row))

    def _tune_aggregate(self, cur: Any) -> None:
        cur.execute(f"SET LOCAL work_mem = '{AGGREGATE_WORK_MEM}'")

    def _migration_lock(self, cur: Any) -> None:
        cur.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATION_LOCK,))

    @contextmanager
    def _hold(self, domain: str, begin: int, end: int) -> Iterator[Any]:
        digest = hashlib.blake2b(f"{domain}\0{begin}\0{end}".encode(), digest_size=8).digest()
        key = int.from_bytes(digest, "big", signed=True)
        conn = self._connect()  # its own connection: the claim's transaction is its life
        try:
            with self._in_transaction(conn, drop=False) as cur:
                cur.execute("SELECT pg_try_advisory_xact_lock(%s)", (key,))
                yield cur if cur.fetchone()[0] else None
        finally:
            conn.close()

    def close(self) -> None:
        """Release the connection (reopened on next use)."""
        if self._conn is not None:
            conn, self._conn = self._conn, None
            with suppress(self._psycopg.Error):
                conn.close()


def _describe(exc: Exception) -> str:
    """The first line of a driver error (server messages name no row content)."""
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"
