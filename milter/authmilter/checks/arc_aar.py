"""What a trusted sealer's ARC-Authentication-Results says about DMARC (RFC 8617 4.1.1).

Read only for a chain that passed and whose newest sealer the administrator trusts: the
AAR is then that sealer's own word. It vouches when it says ``dmarc=pass`` with ``header.from`` the
From domain, or ``dkim=pass`` / ``spf=pass`` for a domain aligned with it (relaxed alignment:
the organizational domain our DMARC evaluation found for the From domain, or below it).
Parsed with ``authres`` (as dkimpy does); anything it cannot parse vouches for nothing.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

import authres

from authmilter.checks.arc_chain import ArcSet, ChainError, collect
from authmilter.idn import a_label
from authmilter.model import HeaderField

_INSTANCE = re.compile(rb"\A[ \t\r\n]*i[ \t\r\n]*=[ \t\r\n]*[0-9]{1,3}[ \t\r\n]*;")
_WHAT = {  # the property that names the domain each method vouches for
    "dmarc": ("header", "from"),
    "dkim": ("header", "d"),
    "spf": ("smtp", "mailfrom"),
}
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
    try:
        header = authres.AuthenticationResultsHeader.parse(f"Authentication-Results: {payload}")
    except Exception:  # noqa: BLE001  (authres raises several kinds; none may pass)
        return False
    from_domain = from_domain.lower()
    org = (org_domain or from_domain).lower()
    for result in header.results:
        if str(result.result).lower() != "pass":
            continue
        method = str(result.method).lower()
        props = {(p.type.lower(), p.name.lower()): str(p.value) for p in result.properties}
        shown = props.get(_WHAT.get(method, ("", "")))
        if not shown:
            continue
        if method == "dmarc" and _domain(shown) == from_domain:
            return True
        if method in ("dkim", "spf") and _aligned(shown, org):
            return True
    return False


def _domain(value: str) -> str:
    """The domain of an address or a domain, lower-case A-label ("" when not one)."""
    domain = value.strip().strip('"').rpartition("@")[2].rstrip(".")
    return a_label(domain) or ""


def _aligned(value: str | None, org: str) -> bool:
    if not value:
        return False
    domain = _domain(value)
    return bool(domain) and (domain == org or domain.endswith("." + org))
