"""RFC 9990 aggregate report XML from an :class:`~authmilter.reports.store.Aggregate`.

The XML is written as text in the schema's element order (namespace
``urn:ietf:params:xml:ns:dmarc-2.0``, ``<version>1.0</version>``), streamed in pieces so
that a million-record report never holds an element tree; gzip with ``mtime=0`` makes the
same report the same bytes. Report ids are deterministic per (org, policy domain, period),
so a retried run sends the report under the id it had. Characters XML 1.0 cannot carry are
dropped from every value (they can come from DNS or a message's signature tags).
"""

from __future__ import annotations

import gzip
import hashlib
import io
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from xml.sax.saxutils import escape

from authmilter import __version__
from authmilter.reports.history import PublishedPolicy
from authmilter.reports.store import Aggregate, RecordGroup

NAMESPACE = "urn:ietf:params:xml:ns:dmarc-2.0"
GENERATOR = f"authmilter {__version__}"
OVERRIDES = frozenset(
    {"local_policy", "mailing_list", "other", "policy_test_mode", "trusted_forwarder"}
)
_CHUNK = 1 << 16  # characters handed to gzip at a time
_NOT_XML = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


@dataclass(frozen=True, slots=True)
class ReportMeta:
    """``report_metadata``: who reports (``[reports]`` with its defaults applied)."""

    org_name: str
    email: str
    report_id: str
    extra_contact_info: str = ""
    generator: str = GENERATOR

    @property
    def receiver(self) -> str:
        """The reporting domain (of ``email``): the file name's and subject's submitter."""
        return self.email.rpartition("@")[2].lower() or self.org_name


def report_id(org_name: str, domain: str, begin: int, end: int) -> str:
    """Unique per (org, policy domain, period) and the same on every retry: ``YYYYMMDD`` +
    ``.`` + 24 hex digits of SHA-256 over the four."""
    digest = hashlib.sha256(f"{org_name}\0{domain.lower()}\0{begin}\0{end}".encode()).hexdigest()
    day = datetime.fromtimestamp(begin, UTC).strftime("%Y%m%d")
    return f"{day}.{digest[:24]}"


def file_name(meta: ReportMeta, agg: Aggregate) -> str:
    """RFC 9990: ``receiver!policy-domain!begin!end!unique-id`` (without the extension).

    The unique-id is the report id's alphanumeric characters (the ABNF allows no others).
    """
    unique = "".join(c for c in meta.report_id if c.isascii() and c.isalnum())
    return f"{meta.receiver}!{agg.domain}!{agg.begin}!{agg.end}!{unique}"


def render_xml(agg: Aggregate, meta: ReportMeta) -> bytes:
    """The whole report document (UTF-8). ValueError when the aggregate has no record."""
    if not agg.records:
        raise ValueError(f"{agg.domain}: no records in [{agg.begin}, {agg.end})")
    return "".join(_document(agg, meta)).encode("utf-8")


def gzipped(xml: bytes) -> bytes:
    """Deterministic gzip (mtime 0, no file name)."""
    buf = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=buf, mtime=0) as gz:
        gz.write(xml)
    return buf.getvalue()


def render_gzipped(agg: Aggregate, meta: ReportMeta) -> bytes:
    """``gzipped(render_xml(agg, meta))`` without ever holding the XML: the pieces are
    compressed as they are made (memory: the compressed report and one record)."""
    if not agg.records:
        raise ValueError(f"{agg.domain}: no records in [{agg.begin}, {agg.end})")
    buf = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=buf, mtime=0) as gz:
        pending: list[str] = []
        size = 0
        for piece in _document(agg, meta):
            pending.append(piece)
            size += len(piece)
            if size >= _CHUNK:
                gz.write("".join(pending).encode("utf-8"))
                pending, size = [], 0
        gz.write("".join(pending).encode("utf-8"))
    return buf.getvalue()


def _t(value: str) -> str:
    return escape(_NOT_XML.sub("", value))


def _el(name: str, value: str | int) -> str:
    return f"<{name}>{_t(str(value))}</{name}>"


def _document(agg: Aggregate, meta: ReportMeta) -> Iterator[str]:
    yield '<?xml version="1.0" encoding="UTF-8"?>\n'
    yield f'<feedback xmlns="{NAMESPACE}">\n<version>1.0</version>\n'
    yield "<report_metadata>"
    yield _el("org_name", meta.org_name)
    yield _el("email", meta.email)
    if meta.extra_contact_info:
        yield _el("extra_contact_info", meta.extra_contact_info)
    yield _el("report_id", meta.report_id)
    yield f"<date_range>{_el('begin', agg.begin)}{_el('end', agg.end)}</date_range>"
    yield _el("generator", meta.generator)
    yield "</report_metadata>\n"
    yield _policy(agg.policy)
    for group in agg.records:
        yield _record(group)
    yield "</feedback>\n"


def _policy(p: PublishedPolicy) -> str:
    parts = [_el("domain", p.domain), _el("p", p.p)]
    if p.sp:
        parts.append(_el("sp", p.sp))
    if p.np:
        parts.append(_el("np", p.np))
    parts += [_el("adkim", p.adkim or "r"), _el("aspf", p.aspf or "r")]
    parts.append(_el("discovery_method", p.discovery_method or "treewalk"))
    parts.append(_el("fo", p.fo or "0"))
    parts.append(_el("testing", p.testing or "n"))
    return "<policy_published>" + "".join(parts) + "</policy_published>\n"


def _record(g: RecordGroup) -> str:
    evaluated = _el("disposition", g.disposition) + _el("dkim", g.dmarc_dkim)
    evaluated += _el("spf", g.dmarc_spf)
    if g.override:
        kind = g.override if g.override in OVERRIDES else "other"
        comment = _el("comment", g.override_comment) if g.override_comment else ""
        evaluated += f"<reason>{_el('type', kind)}{comment}</reason>"
    ids = _el("header_from", g.header_from)
    if g.envelope_from:  # the null sender has no RFC5321.MailFrom domain: element left out
        ids += _el("envelope_from", g.envelope_from)
    if g.envelope_to:
        ids += _el("envelope_to", g.envelope_to)
    auth = "".join(
        f"<dkim>{_el('domain', d.domain)}{_el('selector', d.selector)}{_el('result', d.result)}"
        "</dkim>"
        for d in g.dkim
    )
    if g.spf is not None:
        scope = _el("scope", g.spf.scope) if g.spf.scope == "mfrom" else ""
        auth += f"<spf>{_el('domain', g.spf.domain)}{scope}{_el('result', g.spf.result)}</spf>"
    return (
        f"<record><row>{_el('source_ip', g.source_ip)}{_el('count', g.count)}"
        f"<policy_evaluated>{evaluated}</policy_evaluated></row>"
        f"<identifiers>{ids}</identifiers><auth_results>{auth}</auth_results></record>\n"
    )
