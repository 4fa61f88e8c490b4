"""The history store's contract: SQLite on one host, PostgreSQL for a fleet (one schema).

``open_store(dsn)`` returns the backend for ``reports.history``. The daemon only inserts;
``authmilter report`` reads aggregates and claims reports. Exactly once: a report is claimed
inside one transaction (only one host can hold a claim at a time), sent while the claim is
held, and marked sent in that same transaction; a run that dies before the commit leaves
the report unclaimed, and the next run sends it again with the same report id.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Protocol

from authmilter.errors import ConfigError
from authmilter.reports.history import DkimAuth, HistoryRow, PublishedPolicy, SpfAuth


@dataclass(frozen=True, slots=True)
class RecordGroup:
    """Rows identical in everything but time, with their count (one RFC 9990 ``record``)."""

    count: int
    source_ip: str
    disposition: str
    dmarc_dkim: str
    dmarc_spf: str
    override: str
    override_comment: str
    envelope_to: str
    envelope_from: str
    header_from: str
    dkim: tuple[DkimAuth, ...]
    spf: SpfAuth | None


@dataclass(frozen=True, slots=True)
class Aggregate:
    """Everything one policy domain's report for one period is built from."""

    domain: str  # the policy domain (where the record was found)
    begin: int
    end: int
    policy: PublishedPolicy  # the record as last seen in the period
    records: tuple[RecordGroup, ...]
    messages: int  # the sum of the counts


class Claim(Protocol):
    """A report held by this run until the transaction ends."""

    report_id: str

    def mark(self, status: str, reason: str = "") -> None:
        """Record the outcome ("sent" or "skipped") in the claim's own transaction."""


class HistoryStore(Protocol):
    """What the daemon and ``authmilter report`` need from a store."""

    def migrate(self) -> int:
        """Apply the versioned migrations not yet applied; the schema version now."""

    def insert(self, rows: Sequence[HistoryRow]) -> None:
        """Store a batch of rows in one transaction."""

    def report_domains(self, begin: int, end: int) -> list[str]:
        """Policy domains with rows in [begin, end) whose record had a rua=."""

    def aggregate(self, domain: str, begin: int, end: int) -> Aggregate:
        """The grouped rows of one policy domain in [begin, end)."""

    def claim(
        self, domain: str, begin: int, end: int, report_id: str
    ) -> AbstractContextManager[Claim | None]:
        """Hold the report (domain, period) for this run; None when another run holds it or
        it is already marked. Commits the mark on a clean exit, rolls back on an exception."""

    def report_status(self, domain: str, begin: int, end: int) -> tuple[str, str, str] | None:
        """(status, report_id, reason) of a marked report (domain, period), or None."""

    def count(self) -> int:
        """How many message rows are stored."""

    def prune(self, before: int) -> int:
        """Delete rows older than ``before`` (epoch seconds); the number deleted."""

    def close(self) -> None:
        """Release the connection."""


def open_store(dsn: str, host: str = "") -> HistoryStore:
    """The store of ``reports.history``: ``sqlite:///PATH`` or ``postgresql://...``.

    Nothing is connected yet (the first call connects); ConfigError for a DSN that cannot be
    used (unknown scheme, missing directory, psycopg not installed). Runtime database
    trouble raises :class:`authmilter.reports.sqlstore.StoreError`. ``host`` is written into
    report marks (who sent). A store object serves one thread at a time.
    """
    if dsn.startswith("sqlite://"):
        from authmilter.reports.sqlitestore import (  # noqa: PLC0415
            SqliteStore,
            sqlite_path,
        )

        return SqliteStore(sqlite_path(dsn), host)
    if dsn.startswith(("postgresql://", "postgres://")):
        from authmilter.reports.pgstore import PostgresStore  # noqa: PLC0415  (psycopg)

        return PostgresStore(dsn, host)
    raise ConfigError('reports.history: must be "", "sqlite:///PATH" or "postgresql://..."')
