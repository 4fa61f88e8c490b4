"""SPF (RFC 7208): the MAIL FROM identity, or HELO when MAIL FROM is null.

pyspf evaluates the record; every DNS lookup it makes goes through our :class:`Resolver`.
pyspf's only seam is the module-global ``spf.DNSLookup``: one dispatcher is installed
there (idempotently) and reads the Resolver and the deadline of the *current* check from a
:class:`contextvars.ContextVar`, so concurrent checks on libmilter's threads each see their
own. pyspf never reaches ``dns.resolver``'s globals.

Outcomes: a DNS timeout/SERVFAIL, or the time budget running out, is ``temperror``, never
``fail``.
"""

from __future__ import annotations

import contextvars
import ipaddress
import logging
import re
import time
from dataclasses import dataclass
from typing import Any

import spf

from authmilter.config import SpfConfig
from authmilter.dnsresolver import Resolver
from authmilter.errors import DnsTempError
from authmilter.idn import a_label
from authmilter.model import Envelope
from authmilter.results import Result, SpfResult

log = logging.getLogger(__name__)

_RESULTS = {
    "pass": Result.PASS,
    "fail": Result.FAIL,
    "softfail": Result.SOFTFAIL,
    "neutral": Result.NEUTRAL,
    "none": Result.NONE,
    "temperror": Result.TEMPERROR,
    "permerror": Result.PERMERROR,
}

_HEADER_TAGS = {
    Result.NONE: "None",
    Result.TEMPERROR: "TempError",
    Result.PERMERROR: "PermError",
}

_LOOKUP_TYPES = ("A", "AAAA", "MX", "PTR", "TXT", "SPF")

# RFC 5321 sub-domain (letters, digits, inner hyphens), plus "_" which the DNS allows
_LABEL = re.compile(r"[A-Za-z0-9_](?:[A-Za-z0-9_-]*[A-Za-z0-9_])?\Z")


@dataclass(frozen=True, slots=True)
class _Binding:
    """What the dispatcher needs during one check."""

    resolver: Resolver
    deadline: float  # time.monotonic() value


_current: contextvars.ContextVar[_Binding | None] = contextvars.ContextVar(
    "authmilter_spf_binding", default=None
)


# --------------------------------------------------------------------------- public API


def check_spf(
    envelope: Envelope, resolver: Resolver, cfg: SpfConfig, receiver: str = ""
) -> SpfResult:
    """Check the MAIL FROM identity (RFC 7208 2.4), or HELO when MAIL FROM is null.

    ``@domain`` is checked as ``postmaster@domain`` (RFC 7208 4.3). A reverse-path with no
    domain part (``user``, ``user@``) has no MAIL FROM identity to check: like the null path
    (RFC 7208 2.4), it is checked as ``postmaster@HELO`` (identity ``helo``). No client
    address gives ``none``.

    The domain is after the *last* ``@`` (a quoted local part may contain one:
    ``"x@y"@d`` is checked at ``d``), and ``%{l}`` expands to the local part as received,
    quotes and backslashes included (RFC 5321 Local-part).

    Never raises. An unexpected error inside pyspf (or the resolver) is logged with its
    traceback and returned as ``temperror``: the fault is ours, not the sender's, so the
    MTA should ask for a retry rather than reject or lose the mail.
    """
    domain = envelope.mail_from_domain
    if not domain:  # null reverse-path, "<>", "user", "user@"
        return check_helo(envelope, resolver, cfg, receiver)
    local = envelope.mail_from.strip().rsplit("@", 1)[0]
    return _run(envelope, resolver, cfg, receiver, identity="mailfrom", domain=domain, local=local)


def check_helo(
    envelope: Envelope, resolver: Resolver, cfg: SpfConfig, receiver: str = ""
) -> SpfResult:
    """Check the HELO identity (``postmaster@HELO``); an address literal or non-FQDN is ``none``."""
    helo = envelope.helo.strip().rstrip(".").lower()
    return _run(envelope, resolver, cfg, receiver, identity="helo", domain=helo, local="")


# --------------------------------------------------------------------------- evaluation


def _run(
    envelope: Envelope,
    resolver: Resolver,
    cfg: SpfConfig,
    receiver: str,
    *,
    identity: str,
    domain: str,
    local: str,
) -> SpfResult:
    ascii_domain = a_label(domain)
    if ascii_domain is None:
        problem: str | None = f"{identity} domain is not a valid IDN"
    else:
        domain = ascii_domain
        problem = domain_problem(domain, identity)
    sender = f"{local or 'postmaster'}@{domain}"
    base = SpfResult(Result.NONE, identity=identity, domain=domain, sender=sender)
    if problem is None and envelope.client_ip is None:
        problem = "client address unknown"
    if problem is not None:
        return _early(base, problem, envelope, cfg, receiver)

    install()
    binding = _Binding(resolver, time.monotonic() + cfg.time_budget)
    token = _current.set(binding)
    try:
        query = spf.query(
            i=str(envelope.client_ip),
            # an empty local part makes pyspf use "postmaster" (RFC 7208 4.3)
            s=f"{local}@{domain}" if identity == "mailfrom" else "",
            h=domain if identity == "helo" else (envelope.helo.strip() or "unknown"),
            receiver=receiver or None,
            strict=True,
            timeout=cfg.time_budget,
            querytime=cfg.time_budget,
        )
        # pyspf splits the sender at its FIRST "@"; a quoted local part may hold one
        # ("x@y"@d), so set local part and domain to the split reported here (last "@").
        query.l, query.o, query.d = local or "postmaster", domain, domain
        word, _code, explanation = query.check()
        result = _RESULTS.get(word)
        if result is None:
            log.error("pyspf returned unknown result %r for %r", word, sender)
            base = _with_result(base, Result.TEMPERROR)
            return _early(base, f"unexpected SPF result {word!r}", envelope, cfg, receiver)
        header = ""
        if cfg.received_spf_header:
            header = _clean(query.get_header(word, receiver=receiver or None))
        return SpfResult(
            result,
            identity=identity,
            domain=base.domain,
            sender=sender,
            reason=_clean(str(explanation)),
            mechanism=_clean(str(getattr(query, "mechanism", None) or "")),
            received_spf=header,
        )
    except Exception as exc:  # documented: an internal bug is a temperror, never a fail
        log.exception(
            "SPF check of %r failed internally (queue id %r)", sender, envelope.queue_id or "-"
        )
        base = _with_result(base, Result.TEMPERROR)
        return _early(base, f"internal error: {type(exc).__name__}", envelope, cfg, receiver)
    finally:
        _current.reset(token)


def domain_problem(domain: str, identity: str = "mailfrom") -> str | None:
    """Why ``domain`` cannot be checked (RFC 7208 4.3: result ``none``), or None if it can.

    Malformed means: an address literal, an empty or over-long label, a character outside
    letters, digits, hyphen and underscore (so no ``;()"`` reaches a header), one label only.
    """
    if not domain:
        return f"no {identity} domain"
    if domain.startswith("[") or _is_ip(domain):
        return f"{identity} is an address literal"
    if len(domain) > 253:
        return f"{identity} domain is too long"
    labels = domain.split(".")
    if any(len(label) > 63 or not _LABEL.match(label) for label in labels):
        return f"{identity} domain is malformed"
    if len(labels) < 2:
        return f"{identity} is not a fully qualified domain name"
    return None


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def _with_result(base: SpfResult, result: Result) -> SpfResult:
    return SpfResult(result, identity=base.identity, domain=base.domain, sender=base.sender)


def _early(
    base: SpfResult, reason: str, envelope: Envelope, cfg: SpfConfig, receiver: str
) -> SpfResult:
    """A result reached without pyspf's verdict: ``base.result`` with ``reason``."""
    header = ""
    if cfg.received_spf_header:
        header = _fallback_header(base.result, reason, base, envelope, receiver)
    return SpfResult(
        base.result,
        identity=base.identity,
        domain=base.domain,
        sender=base.sender,
        reason=reason,
        received_spf=header,
    )


def _fallback_header(
    result: Result, reason: str, base: SpfResult, envelope: Envelope, receiver: str
) -> str:
    """A Received-SPF value (RFC 7208 9.1) for results pyspf did not produce."""
    tag = _HEADER_TAGS.get(result, result.value.capitalize())
    parts = [f"{tag} ({receiver or 'unknown'}: {reason})"]
    if envelope.client_ip is not None:
        parts.append(f"client-ip={envelope.client_ip};")
    if base.identity == "mailfrom":
        parts.append(f"envelope-from={spf.quote_value(envelope.mail_from)};")
    if envelope.helo:
        parts.append(f"helo={spf.quote_value(envelope.helo)};")
    if receiver:
        parts.append(f"receiver={spf.quote_value(receiver)};")
    parts.append(f"identity={base.identity}")
    return _clean(" ".join(parts))


def _clean(text: str) -> str:
    """Each CR/LF run becomes one space: a header value or log field stays on one line."""
    return " ".join(re.split(r"[\r\n]+[ \t]*", text)).strip()


# --------------------------------------------------------------------------- DNS seam


def install() -> None:
    """Point pyspf's ``DNSLookup`` at our dispatcher (idempotent, atomic assignment)."""
    if spf.DNSLookup is not _dns_lookup:
        spf.DNSLookup = _dns_lookup


def _dns_lookup(
    name: str, qtype: str, strict: Any = True, timeout: float | None = None
) -> list[tuple[tuple[str, str], Any]]:
    """pyspf's DNSLookup contract, answered by the Resolver bound to the current check.

    Returns ``[((name, qtype), value), ...]``: A/AAAA an address string, MX
    ``(preference, exchange)``, PTR a name, TXT/SPF a tuple of bytes. CNAMEs are followed
    by the Resolver, so answers are keyed by the queried name. NXDOMAIN and NODATA are
    ``[]``; DnsTempError and an exhausted budget raise ``spf.TempError``.
    """
    binding = _current.get()
    if binding is None:
        raise spf.TempError("DNS: no resolver bound to this SPF check")
    qtype = qtype.upper()
    if qtype not in _LOOKUP_TYPES:
        raise spf.TempError(f"DNS: unsupported query type {qtype}")
    name = str(name).rstrip(".")
    if not name.isascii():
        return []  # cannot exist in the DNS as sent
    remaining = binding.deadline - time.monotonic()
    if remaining <= 0:
        raise spf.TempError("DNS: SPF time budget exhausted")
    if timeout is not None and 0 < timeout < remaining:
        remaining = timeout
    try:
        answer = binding.resolver.query(name, qtype, timeout=remaining)
    except DnsTempError as exc:
        raise spf.TempError(f"DNS {exc}") from None
    if time.monotonic() > binding.deadline:
        raise spf.TempError("DNS: SPF time budget exhausted")
    if not answer.exists:
        return []
    out: list[tuple[tuple[str, str], Any]] = []
    for value in answer.records:
        if qtype in ("TXT", "SPF"):
            if isinstance(value, tuple) and all(isinstance(p, bytes) for p in value):
                out.append(((name, qtype), value))
        elif qtype == "MX":
            if isinstance(value, tuple) and len(value) == 2:
                out.append(((name, qtype), (int(value[0]), str(value[1]))))
        elif isinstance(value, str):
            out.append(((name, qtype), value))
    return out
