"""The SQL shared by both history backends (:mod:`.sqlitestore`, :mod:`.pgstore`).

A store object is used by one thread at a time (the recorder's writer thread, or the report
command); it connects on first use and, after a database error, drops the connection so that
the next call connects again (a database that was down and is back is used again).
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from typing import Any

from authmilter.reports import schema
from authmilter.reports.history import HistoryRow
from authmilter.reports.store import Aggregate, Claim, RecordGroup


class StoreError(Exception):
    """The history database failed (connection, lock timeout, disk, SQL): no secret content."""


@dataclass(slots=True)
class HeldClaim:
    """A claim this run holds: the outcome is written when the claim ends cleanly."""

    report_id: str
    status: str = ""
    reason: str = ""

    def mark(self, status: str, reason: str = "") -> None:
        """Record the outcome ("sent" or "skipped"), written in the claim's transaction."""
        if status not in schema.STATUSES:
            raise ValueError(f"claim status must be one of {schema.STATUSES}, not {status!r}")
        self.status, self.reason = status, reason


class SqlStore:
    """What both backends share; subclasses supply connections, transactions and locks."""

    placeholder = "?"

    def __init__(self, host: str = "") -> None:
        self.host = host

    # -- backend hooks -----------------------------------------------------------------

    def _transaction(self, *, write: bool) -> AbstractContextManager[Any]:
        """A cursor inside one transaction: committed on a clean exit, else rolled back."""
        raise NotImplementedError

    def _migration_lock(self, cur: Any) -> None:
        """Serialise migrations (called first inside the migration transaction)."""

    def _tune_aggregate(self, cur: Any) -> None:
        """Session settings for the report query (called first in its transaction)."""

    def _hold(self, domain: str, begin: int, end: int) -> AbstractContextManager[Any]:
        """Hold the report (domain, period) against every other run: a cursor or None."""
        raise NotImplementedError

    def close(self) -> None:
        """Release the connection."""
        raise NotImplementedError

    # -- the HistoryStore protocol -------------------------------------------------------

    def sql(self, statement: str) -> str:
        """The statement in this backend's paramstyle."""
        return statement if self.placeholder == "?" else statement.replace("?", self.placeholder)

    def migrate(self) -> int:
        """Apply the migrations not yet applied (idempotent, serialised); the version now.

        A schema that is already current is only read, so a role with no right to create
        tables (the owner migrated it with ``authmilter report --migrate``) can start.
        """
        current = self._applied_version()
        if current >= len(schema.MIGRATIONS):
            return current
        with self._transaction(write=True) as cur:
            self._migration_lock(cur)
            cur.execute(schema.VERSION_TABLE)
            cur.execute("SELECT COALESCE(MAX(version), 0) FROM schema_version")
            version = int(cur.fetchone()[0])
            for number, statements in enumerate(schema.MIGRATIONS, start=1):
                if number <= version:
                    continue
                for statement in statements:
                    cur.execute(statement)
                cur.execute(
                    self.sql("INSERT INTO schema_version (version, applied) VALUES (?, ?)"),
                    (number, int(time.time())),
                )
                version = number
        return version

    def _applied_version(self) -> int:
        """The schema version recorded, read without writing; 0 when there is none yet."""
        try:
            with self._transaction(write=False) as cur:
                cur.execute("SELECT COALESCE(MAX(version), 0) FROM schema_version")
                return int(cur.fetchone()[0])
        except StoreError:  # no schema_version table yet (or no access): migrate decides
            return 0

    def insert(self, rows: Sequence[HistoryRow]) -> None:
        """Store a batch of rows in one transaction."""
        if not rows:
            return
        with self._transaction(write=True) as cur:
            cur.executemany(self.sql(schema.INSERT), [schema.row_values(r) for r in rows])

    def report_domains(self, begin: int, end: int) -> list[str]:
        """Policy domains with rows in [begin, end) whose record had a rua=."""
        with self._transaction(write=False) as cur:
            cur.execute(self.sql(schema.REPORT_DOMAINS), (begin, end))
            return [str(r[0]) for r in cur.fetchall()]

    def aggregate(self, domain: str, begin: int, end: int) -> Aggregate:
        """The grouped rows of one policy domain in [begin, end); LookupError when none."""
        with self._transaction(write=False) as cur:
            self._tune_aggregate(cur)
            cur.execute(self.sql(schema.LAST_POLICY), (domain, begin, end))
            last = cur.fetchone()
            if last is None:
                raise LookupError(f"no history rows for {domain} in [{begin}, {end})")
            cur.execute(self.sql(schema.AGGREGATE), (domain, begin, end))
            groups = tuple(_group(r) for r in cur.fetchall())
        return Aggregate(
            domain=domain,
            begin=begin,
            end=end,
            policy=schema.policy_from(last),
            records=groups,
            messages=sum(g.count for g in groups),
        )

    @contextmanager
    def claim(self, domain: str, begin: int, end: int, report_id: str) -> Iterator[Claim | None]:
        """Hold the report for this run; None when another run holds it or it is marked."""
        with self._hold(domain, begin, end) as cur:
            if cur is None:
                yield None
                return
            cur.execute(self.sql(schema.REPORT_STATUS), (domain, begin, end))
            found = cur.fetchone()
            if found is not None and found[0] in schema.STATUSES:
                yield None
                return
            held = HeldClaim(report_id)
            yield held
            if held.status:
                self._mark(cur, domain, begin, end, held)

    def _mark(self, cur: Any, domain: str, begin: int, end: int, held: HeldClaim) -> None:
        values = (domain, begin, end, held.report_id, held.status, held.reason, self.host)
        cur.execute(self.sql(schema.MARK), (*values, int(time.time())))

    def report_status(self, domain: str, begin: int, end: int) -> tuple[str, str, str] | None:
        """(status, report_id, reason) of a marked report, or None."""
        with self._transaction(write=False) as cur:
            cur.execute(
                self.sql(
                    "SELECT status, report_id, reason FROM reports "
                    "WHERE policy_domain = ? AND begin_time = ? AND end_time = ?"
                ),
                (domain, begin, end),
            )
            found = cur.fetchone()
        return None if found is None else (str(found[0]), str(found[1]), str(found[2]))

    def prune(self, before: int) -> int:
        """Delete rows (and report marks of periods ended) before ``before``; rows deleted."""
        with self._transaction(write=True) as cur:
            cur.execute(self.sql(schema.PRUNE_MESSAGES), (before,))
            deleted = int(cur.rowcount)
            cur.execute(self.sql(schema.PRUNE_REPORTS), (before,))
        return deleted

    def count(self) -> int:
        """How many message rows are stored (tests, benchmarks)."""
        with self._transaction(write=False) as cur:
            cur.execute("SELECT COUNT(*) FROM messages")
            return int(cur.fetchone()[0])


def _group(r: Sequence[Any]) -> RecordGroup:
    return RecordGroup(
        count=int(r[0]),
        source_ip=r[1],
        disposition=r[2],
        dmarc_dkim=r[3],
        dmarc_spf=r[4],
        override=r[5],
        override_comment=r[6],
        envelope_to=r[7],
        envelope_from=r[8],
        header_from=r[9],
        dkim=schema.parse_dkim(r[10]),
        spf=schema.parse_spf(r[11]),
    )
