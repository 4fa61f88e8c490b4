"""iprev (RFC 8601 section 3): forward-confirmed reverse DNS of the SMTP client's address.

The client address is looked up as a PTR record; each name found (at most
:data:`MAX_NAMES`, the limit RFC 7208 5.5 sets on the same walk for SPF's ``ptr``) is looked
up as A (IPv4 client) or AAAA (IPv6 client); the result is ``pass`` as soon as one name
resolves back to the client address. Results as RFC 8601 section 2.7.3 defines them:

* ``pass``: a name resolved back; the result carries that name;
* ``fail``: PTR names were found but none resolved back (NXDOMAIN, no address, other
  addresses);
* ``permerror``: no PTR data (NXDOMAIN, or NOERROR with no answer);
* ``temperror``: the PTR lookup failed (timeout, SERVFAIL), or no name resolved back and
  the forward lookup of one of them failed, or the time budget ran out.

There is no ``none``: a client without an address (local submission) is not evaluated.
Names that are not host names (a PTR record's target is whatever the address's owner
publishes) are skipped, so the name a result carries is always letters, digits, ``-``,
``_`` and dots. Pure but for the injected :class:`~authmilter.dnsresolver.Resolver`.
"""

from __future__ import annotations

import ipaddress
import re
import time

from authmilter.dnsresolver import Resolver
from authmilter.errors import DnsTempError
from authmilter.model import IPAddress
from authmilter.results import IprevResult, Result

MAX_NAMES = 10  # PTR names checked (RFC 7208 5.5 sets the same limit for SPF's ptr)
_HOST_LABEL = re.compile(r"[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?\Z")


def client_address(ip: IPAddress) -> IPAddress:
    """The address as the DNS knows it: an IPv4-mapped IPv6 address is its IPv4 address."""
    mapped = getattr(ip, "ipv4_mapped", None)
    return mapped if mapped is not None else ip


def host_name(name: str) -> str | None:
    """``name`` lower-case without its trailing dot when it is a host name, else None."""
    name = name.rstrip(".").lower()
    labels = name.split(".")
    if len(name) > 253 or len(labels) < 2 or not all(_HOST_LABEL.match(x) for x in labels):
        return None
    return name


def check_iprev(ip: IPAddress, resolver: Resolver, time_budget: float = 10.0) -> IprevResult:
    """Forward-confirmed reverse DNS of ``ip``: PTR, then A/AAAA of each name. Never raises.

    ``time_budget`` (seconds) bounds the whole check; each lookup gets what is left of it.
    """
    ip = client_address(ip)
    shown = str(ip)
    deadline = time.monotonic() + time_budget
    try:
        answer = resolver.query(ip.reverse_pointer, "PTR", time_budget)
    except DnsTempError:
        return IprevResult(Result.TEMPERROR, shown, reason="PTR lookup failed")
    found = [n for n in (host_name(str(r)) for r in answer.records) if n is not None]
    names = list(dict.fromkeys(found))
    if not names:
        why = "no PTR record" if not answer.records else "no PTR record names a host"
        return IprevResult(Result.PERMERROR, shown, reason=why)
    rdtype = "A" if ip.version == 4 else "AAAA"
    trouble = False
    for name in names[:MAX_NAMES]:
        left = deadline - time.monotonic()
        if left <= 0:
            trouble = True
            break
        try:
            forward = resolver.query(name, rdtype, left)
        except DnsTempError:
            trouble = True
            continue
        if any(_same(ip, str(address)) for address in forward.records):
            return IprevResult(Result.PASS, shown, name=name, names=len(names))
    if trouble:
        return IprevResult(
            Result.TEMPERROR, shown, names=len(names), reason="forward lookup failed"
        )
    checked = min(len(names), MAX_NAMES)
    why = (
        "the PTR name does not resolve back"
        if checked == 1
        else (f"none of {checked} PTR names resolves back")
    )
    return IprevResult(Result.FAIL, shown, names=len(names), reason=why)


def _same(ip: IPAddress, text: str) -> bool:
    try:
        return ipaddress.ip_address(text) == ip
    except ValueError:
        return False
