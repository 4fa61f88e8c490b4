"""Shared by the report tests: sample aggregates, the XSD and parsedmarc as independent readers."""

from __future__ import annotations

import gzip
from typing import Any

import pytest

from authmilter.reports.history import DkimAuth, PublishedPolicy, SpfAuth
from authmilter.reports.store import Aggregate, RecordGroup

XSD = "/work/shared/standards/rfc9990-aggregate-report.xsd"
_schema: Any = None


def schema() -> Any:
    """The RFC 9990 schema (xmlschema 1.10 on Debian 12, 4.x from PyPI: same calls)."""
    global _schema
    if _schema is None:
        import xmlschema

        _schema = xmlschema.XMLSchema(XSD)
    return _schema


def validate(xml: bytes) -> None:
    """Raise (with xmlschema's reason) unless ``xml`` is valid against the RFC 9990 XSD."""
    schema().validate(xml.decode("utf-8"))


def parsedmarc_read(xml: bytes) -> dict[str, Any] | None:
    """The report as parsedmarc reads it; None (with a skip reason) where it is not installed."""
    try:
        import parsedmarc
    except ImportError:
        return None
    report = parsedmarc.parse_aggregate_report_xml(xml.decode("utf-8"), offline=True)
    return dict(report)


def needs_parsedmarc() -> None:
    """Skip the rest of a test on Debian's python (parsedmarc is on PyPI only)."""
    pytest.importorskip("parsedmarc", reason="parsedmarc is PyPI only (venv), not in Debian 12")


def gunzip(data: bytes) -> bytes:
    """The XML inside a .xml.gz."""
    return gzip.decompress(data)


POLICY = PublishedPolicy(
    domain="example.com",
    p="reject",
    sp="quarantine",
    np="reject",
    adkim="s",
    aspf="r",
    testing="n",
    fo="1",
    rua=("mailto:dmarc@example.com!10m",),
)


def group(count: int, ip: str = "192.0.2.1", **kw: Any) -> RecordGroup:
    """One record group with sensible defaults."""
    values: dict[str, Any] = {
        "count": count,
        "source_ip": ip,
        "disposition": "none",
        "dmarc_dkim": "pass",
        "dmarc_spf": "pass",
        "override": "",
        "override_comment": "",
        "envelope_to": "example.net",
        "envelope_from": "example.com",
        "header_from": "example.com",
        "dkim": (DkimAuth("example.com", "s1", "pass"),),
        "spf": SpfAuth("example.com", "mfrom", "pass"),
    }
    values.update(kw)
    return RecordGroup(**values)


def aggregate(*groups: RecordGroup, policy: PublishedPolicy = POLICY) -> Aggregate:
    """An aggregate for 2026-12-06 (UTC) of ``groups``."""
    return Aggregate(
        domain=policy.domain,
        begin=1796515200,
        end=1796601600,
        policy=policy,
        records=tuple(groups),
        messages=sum(g.count for g in groups),
    )
