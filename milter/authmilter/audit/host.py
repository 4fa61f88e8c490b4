"""This host (its outgoing addresses and their reverse DNS) and each domain's MX.

The host's outgoing addresses are those given with ``--ip``, else the A and AAAA records of
its name (``--host``, default: this host's fully qualified name). Behind NAT, or with a
``smtp_bind_address``, give ``--ip``: the name's addresses may not be the ones receivers see.
Each address's reverse DNS is checked with the engine's iprev check
(:func:`authmilter.checks.iprev.check_iprev`): receivers refuse or score mail from
addresses without a forward-confirmed PTR name.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence

from authmilter.audit.findings import Level, Section, shown
from authmilter.checks.iprev import check_iprev, host_name
from authmilter.dnsresolver import Resolver
from authmilter.errors import DnsTempError
from authmilter.model import IPAddress
from authmilter.results import Result


def host_addresses(section: Section, name: str, resolver: Resolver) -> list[IPAddress]:
    """The A and AAAA addresses of ``name``; a finding when it has none."""
    found: list[IPAddress] = []
    for rdtype in ("A", "AAAA"):
        try:
            answer = resolver.query(name, rdtype)
        except DnsTempError as exc:
            section.undone("ptr", exc)
            continue
        for record in answer.records:
            try:
                found.append(ipaddress.ip_address(str(record)))
            except ValueError:
                continue
    if not found and not section.unchecked:
        section.add(
            Level.ERROR,
            "host-no-address",
            f"this host's name {shown(name, 80)} has no A or AAAA record: its outgoing "
            "addresses are unknown, and receivers that check HELO find nothing",
            f"publish the address of {shown(name, 80)}, or give this host's outgoing "
            "addresses with --ip",
        )
    return found


def audit_ptr(
    section: Section, name: str, addresses: Sequence[IPAddress], resolver: Resolver, budget: float
) -> None:
    """Each outgoing address must have a PTR name that resolves back (and best, ours)."""
    ours = host_name(name) or name.rstrip(".").lower()
    for ip in addresses:
        found = check_iprev(ip, resolver, budget)
        if found.result == Result.PASS:
            if found.name != ours:
                section.add(
                    Level.ADVICE,
                    "ptr-other-name",
                    f"{ip} resolves to {found.name}, not to this host's name {shown(ours, 80)}: "
                    "receivers compare the HELO name with it",
                    f"set Postfix's myhostname (the HELO name) to {found.name}, or the PTR of "
                    f"{ip} to {shown(ours, 80)}",
                )
        elif found.result == Result.TEMPERROR:
            section.undone("ptr", f"{ip}: {found.reason}")
        elif found.result == Result.PERMERROR:
            section.add(
                Level.ERROR,
                "ptr-missing",
                f"{ip} has no PTR record: many receivers refuse mail from it "
                "(Postfix: reject_unknown_reverse_client_hostname)",
                f"ask whoever owns {ip} (your provider) for a PTR record naming {shown(ours, 80)}",
            )
        else:
            section.add(
                Level.ERROR,
                "ptr-not-confirmed",
                f"the PTR name(s) of {ip} do not resolve back to it (iprev=fail): many "
                "receivers refuse mail from it",
                f"make the PTR of {ip} name {shown(ours, 80)}, and {shown(ours, 80)} "
                f"resolve to {ip}",
            )


def audit_mx(section: Section, domain: str, resolver: Resolver) -> None:
    """The domain's MX: present, and each host with an address and no CNAME."""
    try:
        answer = resolver.query(domain, "MX")
    except DnsTempError as exc:
        section.undone("mx", exc)
        return
    hosts = sorted(
        (r[0], str(r[1]))
        for r in answer.records
        if isinstance(r, tuple) and len(r) == 2 and isinstance(r[0], int)
    )
    section.facts["mx"] = [f"{pref} {shown(host, 80) or '.'}" for pref, host in hosts]
    if not hosts:
        section.add(
            Level.WARNING,
            "mx-missing",
            f"{domain} has no MX record: bounces and replies to it go to its A record, if any",
            f"publish {domain} MX 10 <your mail host>",
        )
        return
    if len(hosts) == 1 and not hosts[0][1]:
        section.add(
            Level.ADVICE,
            "mx-null",
            f"{domain} has a null MX (RFC 7505): it receives no mail, so bounces to its "
            "senders, and DMARC reports to it, are lost",
            f"use a MAIL FROM domain that receives mail, or remove the null MX of {domain}",
        )
        return
    for _, host in hosts:
        _mx_host(section, domain, host, resolver)


def _mx_host(section: Section, domain: str, host: str, resolver: Resolver) -> None:
    shown_host = shown(host, 80)
    try:
        alias = resolver.query(host, "CNAME")
        addresses = [resolver.query(host, t).records for t in ("A", "AAAA")]
    except DnsTempError as exc:
        section.undone("mx", exc)
        return
    if alias.records:
        section.add(
            Level.WARNING,
            "mx-cname",
            f"the MX host {shown_host} of {domain} is an alias (CNAME): RFC 5321 5.1 "
            "and RFC 2181 10.3 forbid it, and some senders refuse it",
            f"point the MX of {domain} at the name the CNAME leads to",
        )
    if not any(addresses):
        section.add(
            Level.ERROR,
            "mx-no-address",
            f"the MX host {shown_host} of {domain} has no A or AAAA record: mail to "
            f"{domain} cannot be delivered there",
            f"publish the address of {shown_host}, or correct the MX of {domain}",
        )
