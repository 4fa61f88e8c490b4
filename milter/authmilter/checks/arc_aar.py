"""What a trusted sealer's ARC-Authentication-Results says about DMARC (RFC 8617 4.1.1).

Read only for a chain that passed and whose newest sealer the administrator trusts: the
AAR is then that sealer's own word. It vouches when it says ``dmarc=pass`` with ``header.from`` the
From domain, or ``dkim=pass`` / ``spf=pass`` for a domain aligned with it (relaxed alignment:
the organizational domain our DMARC evaluation found for the From domain, or below it).
Parsed here (RFC 8601 section 2.2, leniently: comments dropped, ``;``-separated resinfos
of ``method=result`` and ``ptype.property=value`` pairs); ``authres`` is a test dependency
only. Anything that does not read as a result vouches for nothing.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from authmilter.checks.arc_chain import ArcSet, ChainError, collect
from authmilter.idn import a_label
from authmilter.model import HeaderField

_INSTANCE = re.compile(rb"\A[ \t\r\n]*i[ \t\r\n]*=[ \t\r\n]*[0-9]{1,3}[ \t\r\n]*;")
_WHAT = {  # the property that names the domain each method vouches for
    "dmarc": "header.from",
    "dkim": "header.d",
    "spf": "smtp.mailfrom",
}
_PAIR = re.compile(r'([A-Za-z0-9_.\-/]+)[ \t]*=[ \t]*("(?:[^"\\]|\\.)*"|[^\s;"]+)')
MAX_AAR_BYTES = 16 * 1024  # a longer AAR is not parsed (vouches for nothing)


def newest_aar(headers: Iterable[HeaderField]) -> HeaderField | None:
    """The ARC-Authentication-Results of the chain's newest set (None without a chain)."""
    try:
        sets: tuple[ArcSet, ...] = collect(tuple(headers))
    except ChainError:  # a malformed chain vouches for nothing
        return None
    return sets[-1].aar if sets else None


def vouches_for_dmarc(aar: HeaderField, from_domain: str, org_domain: str) -> bool:
    """True when ``aar`` says DMARC, or DKIM/SPF aligned with ``from_domain``, passed."""
    if not from_domain or len(aar.value) > MAX_AAR_BYTES:
        return False
    m = _INSTANCE.match(aar.value)
    if m is None:
        return False
    payload = aar.value[m.end() :].replace(b"\r\n", b"").decode("utf-8", "replace")
    from_domain = from_domain.lower()
    org = (org_domain or from_domain).lower()
    for method, result, props in resinfos(payload):
        if result != "pass":
            continue
        shown = props.get(_WHAT.get(method, ""))
        if not shown:
            continue
        if method == "dmarc" and _domain(shown) == from_domain:
            return True
        if method in ("dkim", "spf") and _aligned(shown, org):
            return True
    return False


def resinfos(payload: str) -> list[tuple[str, str, dict[str, str]]]:
    """(method, result, {ptype.property: value}) of each resinfo after the authserv-id."""
    out = []
    for piece in _split(payload)[1:]:
        pairs = _PAIR.findall(piece)
        if not pairs:
            continue
        method = pairs[0][0].partition("/")[0].lower()
        props = {k.lower(): v.strip('"') for k, v in pairs[1:] if "." in k}
        out.append((method, pairs[0][1].lower(), props))
    return out


def _split(text: str) -> list[str]:
    """``text`` without comments, cut at each ``;`` outside quotes (one linear pass)."""
    pieces: list[str] = []
    current: list[str] = []
    depth, quoted, escaped = 0, False, False
    for ch in text:
        if escaped:
            escaped = False
            if not depth:
                current.append(ch)
        elif ch == "\\" and (quoted or depth):
            escaped = True
            if not depth:
                current.append(ch)
        elif quoted:
            current.append(ch)
            quoted = ch != '"'
        elif ch == "(":
            depth += 1
        elif ch == ")" and depth:
            depth -= 1
        elif depth:
            continue
        elif ch == '"':
            quoted = True
            current.append(ch)
        elif ch == ";":
            pieces.append("".join(current))
            current = []
        else:
            current.append(ch)
    pieces.append("".join(current))
    return pieces


def _domain(value: str) -> str:
    """The domain of an address or a domain, lower-case A-label ("" when not one)."""
    domain = value.strip().strip('"').rpartition("@")[2].rstrip(".")
    return a_label(domain) or ""


def _aligned(value: str | None, org: str) -> bool:
    if not value:
        return False
    domain = _domain(value)
    return bool(domain) and (domain == org or domain.endswith("." + org))
