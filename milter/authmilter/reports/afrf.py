"""DMARC failure reports (RFC 9991) in the Authentication Failure Reporting Format (RFC 6591).

Pure functions, no I/O: whether a record's ``fo=`` asks for a report on this message
(:func:`wants_report`), which mechanisms failed for an aligned identifier
(:func:`identity_alignment`), the redaction of addresses (:func:`redact_headers`, RFC 6590)
and the report message itself (:func:`build_report`): ``multipart/report;
report-type=feedback-report`` with a human part, the ``message/feedback-report`` part and
the original message's header block as ``text/rfc822-headers`` (the milter never keeps a
body, so a report never carries one).

Redaction (``reports.failure_redact``): ``"headers"`` (the default) replaces the local part
of every address in the header block, in ``Original-Mail-From`` and ``DKIM-Identity`` with
``redacted-`` and a keyed hash (the same address gives the same text for the life of the
process, so a domain owner can still tell one sender from many), keeps message ids
(``Message-ID``, ``In-Reply-To``, ``References``: they name a message, not a person) and
leaves out ``Original-Rcpt-To`` (our users are never named); ``"full"`` sends the header
block as received and names the recipients (at most :data:`MAX_RCPT_FIELDS`).
"""

from __future__ import annotations

import hashlib
import hmac
import quopri
import re
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from email import policy as email_policy
from email.message import EmailMessage
from email.parser import BytesParser
from email.utils import format_datetime, make_msgid

from authmilter import __version__
from authmilter.decision import Action, Decision
from authmilter.model import CRLF, HeaderField, Transaction
from authmilter.results import AuthResults, DkimResult, Result

MAX_RCPT_FIELDS = 10  # Original-Rcpt-To fields in "full" mode
FAILED = frozenset({Result.FAIL, Result.PERMERROR})  # "failed evaluation" for fo=d and fo=s
MSGID_FIELDS = frozenset({"message-id", "in-reply-to", "references", "resent-message-id"})
REDACT_KEY = secrets.token_bytes(16)  # per process: redacted text correlates, never reverses

# a local part followed by "@" and the start of a domain (or an address literal)
_ADDRESS = re.compile(
    rb'(?P<local>"(?:[^"\\\r\n]|\\.)*"|[^\s<>()\[\],;:@"\\]+)@(?=[A-Za-z0-9\[\x80-\xff])'
)


# --------------------------------------------------------------------------- what is asked


def fo_options(fo: str) -> frozenset[str]:
    """The ``fo=`` values (colon-separated; unknown ones ignored; none valid = ``0``)."""
    found = {v.strip().lower() for v in fo.split(":")} & {"0", "1", "d", "s"}
    return frozenset(found or {"0"})


def wants_report(fo: str, results: AuthResults) -> bool:
    """Whether ``fo=`` asks for a report on this message, whose DMARC result is fail.

    ``0`` (all mechanisms failed to give an aligned pass) and ``1`` (any did) both hold for
    every DMARC fail; ``d``: a DKIM signature failed evaluation (fail or permerror), aligned
    or not; ``s``: SPF failed evaluation (fail or permerror), aligned or not.
    """
    options = fo_options(fo)
    if options & {"0", "1"}:
        return True
    if "d" in options and any(d.result in FAILED for d in results.dkim):
        return True
    return "s" in options and results.spf is not None and results.spf.result in FAILED


def aligned(domain: str, author: str, org: str, mode: str) -> bool:
    """Identifier alignment: strict = same name; relaxed = within the author's org domain."""
    domain, author = domain.lower().rstrip("."), author.lower().rstrip(".")
    if mode == "s" or not org:
        return domain == author
    return domain == org or domain.endswith("." + org)


def identity_alignment(results: AuthResults) -> tuple[tuple[str, ...], DkimResult | None]:
    """RFC 9991 ``Identity-Alignment``: mechanisms whose aligned identifier failed (and the
    first such DKIM signature, for the ``DKIM-*`` fields); ``()`` means ``none``."""
    dmarc = results.dmarc
    if dmarc is None:
        return (), None
    record = dmarc.record
    adkim = record.adkim if record is not None else "r"
    aspf = record.aspf if record is not None else "r"
    author, org = dmarc.from_domain, dmarc.org_domain
    failed_dkim = next(
        (
            d
            for d in results.dkim
            if d.result is not Result.PASS and aligned(d.domain, author, org, adkim)
        ),
        None,
    )
    spf = results.spf
    spf_failed = (
        spf is not None
        and spf.result is not Result.PASS
        and bool(spf.domain)
        and aligned(spf.domain, author, org, aspf)
    )
    methods = (("dkim",) if failed_dkim else ()) + (("spf",) if spf_failed else ())
    return methods, failed_dkim


# --------------------------------------------------------------------------- redaction


def redact_local(local: bytes) -> bytes:
    """``redacted-`` and a keyed hash of the local part (RFC 6590 5: correlate, never reveal)."""
    digest = hmac.new(REDACT_KEY, local.lower(), hashlib.sha256).hexdigest()[:12]
    return b"redacted-" + digest.encode("ascii")


def redact_addresses(value: bytes) -> bytes:
    """Every ``local@domain`` in ``value`` with its local part redacted."""
    return _ADDRESS.sub(lambda m: redact_local(m.group("local")) + b"@", value)


def redact_address(address: str) -> str:
    """One address (an envelope path) with its local part redacted."""
    raw = address.encode("utf-8", "surrogateescape")
    local, at, domain = raw.rpartition(b"@")
    if not at:
        return address
    return (redact_local(local) + b"@" + domain).decode("utf-8", "surrogateescape")


def redact_headers(headers: Sequence[HeaderField]) -> bytes:
    """The header block with the local part of every address redacted (message ids kept)."""
    out = []
    for h in headers:
        raw = h.raw()
        out.append(raw if h.name.strip().lower() in MSGID_FIELDS else redact_addresses(raw))
    return b"".join(out)


# --------------------------------------------------------------------------- the message


@dataclass(frozen=True, slots=True)
class ReportContext:
    """What the report says about its sender (us) besides the message."""

    sender: str  # From: of the report (reports.email)
    authserv_id: str  # Message-ID domain, User-Agent context
    redact: str = "headers"  # "headers" | "full"
    spf_dns: str = ""  # SPF-DNS value ("txt : domain : record"), when looked up


def delivery_result(decision: Decision) -> str:
    """RFC 6591 ``Delivery-Result`` for what was done with the message."""
    if decision.action is Action.REJECT:
        return "reject"
    if decision.action is Action.ACCEPT:
        return "spam" if decision.mark_quarantine else "delivered"
    if decision.action in (Action.QUARANTINE, Action.DISCARD):
        return "policy"
    return "other"


def our_results(results: AuthResults, decision: Decision, authserv_id: str) -> str:
    """Our Authentication-Results value (the one we added, else a minimal one), unfolded."""
    for edit in decision.add_headers:
        if edit.name.lower() == "authentication-results" and edit.value:
            return " ".join(edit.value.split())
    dmarc = results.dmarc
    header_from = dmarc.from_domain if dmarc else ""
    return f"{authserv_id}; dmarc=fail header.from={header_from}"


def build_report(
    tx: Transaction,
    results: AuthResults,
    decision: Decision,
    to: Sequence[str],
    ctx: ReportContext,
    *,
    now: datetime | None = None,
) -> bytes:
    """The whole report message (CRLF line ends), ready for SMTP."""
    dmarc = results.dmarc
    reported = dmarc.from_domain if dmarc else ""
    env = tx.envelope
    full = ctx.redact == "full"
    now = now or datetime.now(UTC)
    source_ip = str(env.client_ip) if env.client_ip is not None else ""
    methods, dkim = identity_alignment(results)

    fields: list[tuple[str, str]] = [
        ("Feedback-Type", "auth-failure"),
        ("User-Agent", f"authmilter/{__version__}"),
        ("Version", "1"),
        ("Auth-Failure", "dmarc"),
        ("Authentication-Results", our_results(results, decision, ctx.authserv_id)),
        ("Identity-Alignment", ", ".join(methods) or "none"),
        ("Delivery-Result", delivery_result(decision)),
    ]
    if dkim is not None:
        fields += [("DKIM-Domain", dkim.domain), ("DKIM-Selector", dkim.selector)]
        if dkim.identity:
            identity = dkim.identity if full else redact_address(dkim.identity)
            fields.append(("DKIM-Identity", identity))
    if "spf" in methods and ctx.spf_dns:
        fields.append(("SPF-DNS", ctx.spf_dns))
    if env.queue_id:
        fields.append(("Original-Envelope-Id", env.queue_id))
    mail_from = env.mail_from if full else redact_address(env.mail_from)
    fields.append(("Original-Mail-From", f"<{mail_from}>"))
    if full:
        fields += [("Original-Rcpt-To", f"<{r}>") for r in env.rcpt_to[:MAX_RCPT_FIELDS]]
    fields.append(("Arrival-Date", format_datetime(now)))
    if source_ip:
        fields.append(("Source-IP", source_ip))
    if reported:
        fields.append(("Reported-Domain", reported))

    original = tx.raw_headers() if full else redact_headers(tx.headers)
    boundary = "=_authmilter_" + secrets.token_hex(12)
    human = (
        f"This is a DMARC failure report (RFC 9991) for a message that claimed to be\r\n"
        f"from {reported or 'an unknown domain'}, received from {source_ip or 'an unknown address'}"
        f" on {format_datetime(now)}.\r\n"
        f"DMARC result: fail. Failed aligned identifiers: {', '.join(methods) or 'none'}.\r\n"
        f"The original message's header fields follow"
        f"{' as received' if full else ', with the local part of every address redacted'}.\r\n"
    )
    head = [
        ("From", ctx.sender),
        ("To", ", ".join(to)),
        ("Subject", f"DMARC failure report for {reported} from {source_ip or 'unknown'}"),
        ("Date", format_datetime(now)),
        ("Message-ID", make_msgid("dmarc-failure", domain=ctx.authserv_id or None)),
        ("Auto-Submitted", "auto-generated"),
        ("MIME-Version", "1.0"),
        (
            "Content-Type",
            f'multipart/report; report-type=feedback-report; boundary="{boundary}"',
        ),
    ]
    cte, body = _encode_part(original)
    parts = [
        _part("text/plain; charset=us-ascii", "7bit", _ascii(human).encode("ascii")),
        _part("message/feedback-report", "7bit", _fields(fields)),
        _part("text/rfc822-headers", cte, body),
    ]
    out = _fields(head) + CRLF + b"This is a MIME-formatted message." + CRLF + CRLF
    for part in parts:
        out += b"--" + boundary.encode("ascii") + CRLF + part
    return out + b"--" + boundary.encode("ascii") + b"--" + CRLF


def to_email_message(data: bytes) -> EmailMessage:
    """The report as an EmailMessage for :class:`~authmilter.reports.relay.Relay`."""
    parser = BytesParser(policy=email_policy.SMTP.clone(refold_source="none"))
    message = parser.parsebytes(data)
    assert isinstance(message, EmailMessage)
    return message


def _ascii(text: str) -> str:
    """Text safe for a 7-bit header or body: other characters become "?", CR/LF spaces."""
    return "".join(c if 32 <= ord(c) < 127 or c in "\r\n" else "?" for c in text)


def _fields(fields: Sequence[tuple[str, str]]) -> bytes:
    """Header fields (values made 7-bit), folded at spaces before 78 characters."""
    return b"".join(_fold(f"{name}: {_ascii(' '.join(value.split()))}") for name, value in fields)


def _fold(line: str, width: int = 78) -> bytes:
    out, current = [], ""
    for word in line.split(" "):
        if current and len(current) + 1 + len(word) > width:
            out.append(current)
            current = " " + word
        else:
            current = f"{current} {word}" if current else word
    out.append(current)
    return ("\r\n".join(out) + "\r\n").encode("ascii")


def _part(content_type: str, cte: str, body: bytes) -> bytes:
    head = f"Content-Type: {content_type}\r\nContent-Transfer-Encoding: {cte}\r\n\r\n"
    return head.encode("ascii") + body + (b"" if body.endswith(CRLF) else CRLF) + CRLF


def _encode_part(data: bytes) -> tuple[str, bytes]:
    """7bit when the header block is ASCII with short lines, else quoted-printable."""
    if data.isascii() and all(len(line) <= 998 for line in data.split(CRLF)):
        return "7bit", data
    encoded = quopri.encodestring(data.replace(CRLF, b"\n")).replace(b"\n", CRLF)
    return "quoted-printable", encoded
