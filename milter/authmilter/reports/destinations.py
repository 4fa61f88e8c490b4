"""Where a report may go: ``rua=``/``ruf=`` URIs parsed and external destinations verified.

Shared by aggregate (RFC 9990) and failure (RFC 9991) reports. Only ``mailto:`` URIs are
used; others are skipped with a reason. RFC 9989 dropped the ``!size`` suffix of RFC 7489:
it is accepted and ignored. A destination whose Organizational Domain differs from the
policy domain's is used only when ``<policy-domain>._report._dmarc.<dest-domain>`` has a TXT
record starting with ``v=DMARC1`` (RFC 9990 section 4 / RFC 9991); a DNS temperror on the way
means "retry next run", never "send anyway". Organizational Domains come from the same code
DMARC evaluation uses (tree walk, or the PSL in ``psl`` mode).

Limits: at most :data:`MAX_DESTINATIONS` URIs per record are used (the rest are skipped).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from urllib.parse import unquote

from authmilter.checks.dmarc import organizational_domain
from authmilter.dnsresolver import Resolver
from authmilter.errors import DnsTempError
from authmilter.idn import a_label
from authmilter.psl import PublicSuffixList

MAX_DESTINATIONS = 10  # URIs used per rua=/ruf= (a record listing more is cut here)

OK = "ok"
SKIPPED = "skipped"
RETRY = "retry"


@dataclass(frozen=True, slots=True)
class Destination:
    """One report URI and what to do with it."""

    uri: str  # as published
    address: str  # the mailbox ("" when the URI is not a usable mailto:)
    status: str  # OK | SKIPPED | RETRY
    reason: str = ""  # why not OK


def parse_mailto(uri: str) -> tuple[str, str]:
    """``(address, "")`` for a usable ``mailto:`` URI, else ``("", reason)``.

    The ``!size`` suffix is ignored, ``%``-escapes are decoded, a ``?query`` is dropped.
    """
    text = uri.strip()
    scheme, sep, rest = text.partition(":")
    if not sep:
        return "", f"not a URI: {text[:80]!r}"
    if scheme.lower() != "mailto":
        return "", f"scheme {scheme.lower()[:20]!r} not supported (only mailto:)"
    rest = rest.split("!", 1)[0].split("?", 1)[0]
    address = unquote(rest).strip()
    local, at, domain = address.rpartition("@")
    if not at or not local or not domain or "," in address or any(c.isspace() for c in address):
        return "", f"not one mail address: {address[:80]!r}"
    ascii_domain = a_label(domain.rstrip("."))
    if not ascii_domain or "." not in ascii_domain:
        return "", f"bad domain in {address[:80]!r}"
    return f"{local}@{ascii_domain}", ""


def authorised_external(policy_domain: str, dest_domain: str, resolver: Resolver) -> bool:
    """Whether ``dest_domain`` accepts reports about ``policy_domain`` (DnsTempError: unknown)."""
    answer = resolver.query(f"{policy_domain}._report._dmarc.{dest_domain}", "TXT")
    return any(_is_dmarc1(txt) for txt in answer.txt())


def _is_dmarc1(txt: bytes) -> bool:
    head = txt.split(b";", 1)[0].replace(b" ", b"").replace(b"\t", b"")
    return head == b"v=DMARC1"


def verify_destinations(
    policy_domain: str,
    uris: Iterable[str],
    resolver: Resolver,
    psl: PublicSuffixList | None = None,
) -> list[Destination]:
    """Each URI of a ``rua=`` (or ``ruf=``) with its verdict, in published order.

    ``psl`` given: Organizational Domains from the PSL (``dmarc.org_domain = "psl"``);
    else the RFC 9989 tree walk through ``resolver``. Never raises DnsTempError: a lookup
    that failed makes that destination ``RETRY``.
    """
    policy_domain = policy_domain.lower().rstrip(".")
    orgs: dict[str, str | DnsTempError] = {}
    verdicts: dict[str, tuple[str, str]] = {}
    seen: set[str] = set()
    out: list[Destination] = []
    for n, uri in enumerate(uris):
        if n >= MAX_DESTINATIONS:
            out.append(Destination(uri, "", SKIPPED, f"more than {MAX_DESTINATIONS} URIs"))
            continue
        address, reason = parse_mailto(uri)
        if not address:
            out.append(Destination(uri, "", SKIPPED, reason))
            continue
        if address.lower() in seen:
            out.append(Destination(uri, address, SKIPPED, "duplicate address"))
            continue
        seen.add(address.lower())
        dest_domain = address.rpartition("@")[2].lower()
        if dest_domain not in verdicts:
            verdicts[dest_domain] = _verdict(policy_domain, dest_domain, resolver, psl, orgs)
        status, why = verdicts[dest_domain]
        out.append(Destination(uri, address, status, why))
    return out


def _verdict(
    policy_domain: str,
    dest_domain: str,
    resolver: Resolver,
    psl: PublicSuffixList | None,
    orgs: dict[str, str | DnsTempError],
) -> tuple[str, str]:
    if dest_domain == policy_domain:
        return OK, ""
    try:
        if _org(policy_domain, resolver, psl, orgs) == _org(dest_domain, resolver, psl, orgs):
            return OK, ""
        if authorised_external(policy_domain, dest_domain, resolver):
            return OK, ""
    except DnsTempError as exc:
        return RETRY, f"DNS temperror verifying {dest_domain}: {exc}"
    return SKIPPED, (
        f"external destination {dest_domain} not authorised "
        f"(no v=DMARC1 at {policy_domain}._report._dmarc.{dest_domain})"
    )


def _org(
    domain: str,
    resolver: Resolver,
    psl: PublicSuffixList | None,
    cache: dict[str, str | DnsTempError],
) -> str:
    if domain not in cache:
        try:
            cache[domain] = organizational_domain(domain, resolver, psl)
        except DnsTempError as exc:
            cache[domain] = exc
    found = cache[domain]
    if isinstance(found, DnsTempError):
        raise found
    return found


def usable(destinations: Sequence[Destination]) -> list[str]:
    """The addresses to send to (status OK)."""
    return [d.address for d in destinations if d.status == OK]


def must_retry(destinations: Sequence[Destination]) -> bool:
    """Whether some destination could not be verified now (DNS temperror)."""
    return any(d.status == RETRY for d in destinations)
