"""The history store's one schema, its versioned migrations and the row <-> column mapping.

Both backends run the same SQL (written with ``?`` placeholders; the PostgreSQL backend
turns them into ``%s``). A message row is a flat :class:`HistoryRow`: the DKIM list and the
SPF result are stored as canonical JSON text (DKIM sorted), so that identical evaluations
are identical strings and an aggregate report is one ``GROUP BY`` with ``COUNT(*)``.

Tables::

    schema_version(version, applied)                       one row per applied migration
    messages(time, host, source_ip, envelope_from, envelope_to, header_from,
             policy_domain, p, sp, np, adkim, aspf, testing, psd, discovery_method, fo,
             rua, ruf, disposition, dmarc_dkim, dmarc_spf, override, override_comment,
             dkim, spf)                                     index (policy_domain, time), (time)
    reports(policy_domain, begin_time, end_time, report_id, status, reason, host, time)
                                               key (policy_domain, begin_time, end_time)
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from functools import lru_cache
from typing import Any

from authmilter.reports.history import DkimAuth, HistoryRow, PublishedPolicy, SpfAuth

# Each migration is a list of statements; migration N (1-based) brings the schema to version N.
# Never edit a released migration: append a new one.
MIGRATIONS: tuple[tuple[str, ...], ...] = (
    (
        """CREATE TABLE messages (
            time BIGINT NOT NULL,
            host TEXT NOT NULL,
            source_ip TEXT NOT NULL,
            envelope_from TEXT NOT NULL,
            envelope_to TEXT NOT NULL,
            header_from TEXT NOT NULL,
            policy_domain TEXT NOT NULL,
            p TEXT NOT NULL,
            sp TEXT NOT NULL,
            np TEXT NOT NULL,
            adkim TEXT NOT NULL,
            aspf TEXT NOT NULL,
            testing TEXT NOT NULL,
            psd TEXT NOT NULL,
            discovery_method TEXT NOT NULL,
            fo TEXT NOT NULL,
            rua TEXT NOT NULL,
            ruf TEXT NOT NULL,
            disposition TEXT NOT NULL,
            dmarc_dkim TEXT NOT NULL,
            dmarc_spf TEXT NOT NULL,
            override TEXT NOT NULL,
            override_comment TEXT NOT NULL,
            dkim TEXT NOT NULL,
            spf TEXT NOT NULL
        )""",
        "CREATE INDEX messages_domain_time ON messages (policy_domain, time)",
        "CREATE INDEX messages_time ON messages (time)",
        """CREATE TABLE reports (
            policy_domain TEXT NOT NULL,
            begin_time BIGINT NOT NULL,
            end_time BIGINT NOT NULL,
            report_id TEXT NOT NULL,
            status TEXT NOT NULL,
            reason TEXT NOT NULL,
            host TEXT NOT NULL,
            time BIGINT NOT NULL,
            PRIMARY KEY (policy_domain, begin_time, end_time)
        )""",
    ),
)

VERSION_TABLE = (
    "CREATE TABLE IF NOT EXISTS schema_version "
    "(version INTEGER NOT NULL PRIMARY KEY, applied BIGINT NOT NULL)"
)

COLUMNS = (
    "time, host, source_ip, envelope_from, envelope_to, header_from, policy_domain, p, sp, np, "
    "adkim, aspf, testing, psd, discovery_method, fo, rua, ruf, disposition, dmarc_dkim, "
    "dmarc_spf, override, override_comment, dkim, spf"
)
COPY = f"COPY messages ({COLUMNS}) FROM STDIN"  # PostgreSQL's bulk insert
INSERT = f"INSERT INTO messages ({COLUMNS}) VALUES ({', '.join('?' * 25)})"  # noqa: S608

# The columns that define one RFC 9990 record (everything but time), in RecordGroup order.
GROUP_COLUMNS = (
    "source_ip, disposition, dmarc_dkim, dmarc_spf, override, override_comment, "
    "envelope_to, envelope_from, header_from, dkim, spf"
)
AGGREGATE = (
    f"SELECT COUNT(*), {GROUP_COLUMNS} FROM messages "  # noqa: S608  (constant columns)
    "WHERE policy_domain = ? AND time >= ? AND time < ? "
    f"GROUP BY {GROUP_COLUMNS} ORDER BY 1 DESC, {GROUP_COLUMNS}"
)
POLICY_COLUMNS = (
    "policy_domain, p, sp, np, adkim, aspf, testing, psd, discovery_method, fo, rua, ruf"
)
LAST_POLICY = (
    f"SELECT {POLICY_COLUMNS} FROM messages "  # noqa: S608  (constant columns)
    "WHERE policy_domain = ? AND time >= ? AND time < ? ORDER BY time DESC LIMIT 1"
)
REPORT_DOMAINS = (
    "SELECT DISTINCT policy_domain FROM messages "
    "WHERE time >= ? AND time < ? AND rua <> '[]' ORDER BY policy_domain"
)
REPORT_STATUS = (
    "SELECT status FROM reports WHERE policy_domain = ? AND begin_time = ? AND end_time = ?"
)
MARK = (
    "INSERT INTO reports (policy_domain, begin_time, end_time, report_id, status, reason, "
    "host, time) VALUES (?, ?, ?, ?, ?, ?, ?, ?) "
    "ON CONFLICT (policy_domain, begin_time, end_time) DO UPDATE SET "
    "report_id = excluded.report_id, status = excluded.status, reason = excluded.reason, "
    "host = excluded.host, time = excluded.time"
)
PRUNE_MESSAGES = "DELETE FROM messages WHERE time < ?"
PRUNE_REPORTS = "DELETE FROM reports WHERE end_time < ?"

STATUSES = ("sent", "skipped")


def _text(values: Sequence[Any]) -> str:
    return json.dumps(list(values), separators=(",", ":"), ensure_ascii=False)


@lru_cache(maxsize=4096)  # the same few values over and over: encode each once
def _list_text(values: tuple[str, ...]) -> str:
    return _text(values)


@lru_cache(maxsize=4096)
def dkim_text(dkim: tuple[DkimAuth, ...]) -> str:
    """The canonical text of a DKIM list (sorted, so signature order does not split groups)."""
    return _text(sorted([d.domain, d.selector, d.result] for d in dkim))


@lru_cache(maxsize=4096)
def spf_text(spf: SpfAuth | None) -> str:
    """The canonical text of an SPF result ("" when there is none)."""
    return "" if spf is None else _text([spf.domain, spf.scope, spf.result])


def parse_dkim(text: str) -> tuple[DkimAuth, ...]:
    """The DKIM list back from :func:`dkim_text`."""
    return tuple(DkimAuth(d, s, r) for d, s, r in json.loads(text))


def parse_spf(text: str) -> SpfAuth | None:
    """The SPF result back from :func:`spf_text`."""
    if not text:
        return None
    domain, scope, result = json.loads(text)
    return SpfAuth(domain, scope, result)


def row_values(row: HistoryRow) -> tuple[Any, ...]:
    """One row as the 25 values of :data:`INSERT`."""
    p = row.policy
    return (
        row.time,
        row.host,
        row.source_ip,
        row.envelope_from,
        row.envelope_to,
        row.header_from,
        p.domain,
        p.p,
        p.sp,
        p.np,
        p.adkim,
        p.aspf,
        p.testing,
        p.psd,
        p.discovery_method,
        p.fo,
        _list_text(p.rua),
        _list_text(p.ruf),
        row.disposition,
        row.dmarc_dkim,
        row.dmarc_spf,
        row.override,
        row.override_comment,
        dkim_text(row.dkim),
        spf_text(row.spf),
    )


def policy_from(values: Sequence[Any]) -> PublishedPolicy:
    """A :class:`PublishedPolicy` from the values of :data:`POLICY_COLUMNS`."""
    domain, p, sp, np, adkim, aspf, testing, psd, method, fo, rua, ruf = values
    return PublishedPolicy(
        domain=domain,
        p=p,
        sp=sp,
        np=np,
        adkim=adkim,
        aspf=aspf,
        testing=testing,
        psd=psd,
        discovery_method=method,
        fo=fo,
        rua=tuple(json.loads(rua)),
        ruf=tuple(json.loads(ruf)),
    )
