"""A StaticResolver's records as zone text and faults, so that a real DNS server
(:class:`tests.support.dnsserver.DnsServer`) answers what the unit-test resolver answers."""

from __future__ import annotations

import dns.name

from authmilter.staticresolver import StaticResolver
from tests.support.dnsserver import DnsServer


def _txt(strings: tuple[bytes, ...]) -> str:
    def one(s: bytes) -> str:
        out = "".join(
            chr(b) if 0x20 <= b < 0x7F and b not in (0x22, 0x5C) else f"\\{b:03d}" for b in s
        )
        return f'"{out}"'

    return " ".join(one(s) for s in strings)


def zone_text(resolver: StaticResolver) -> str:
    """RFC 1035 master-file lines for every record the resolver holds."""
    lines = []
    for (name, rdtype), values in resolver._records.items():
        owner = dns.name.Name([*(label.encode() for label in name.split(".")), b""]).to_text()
        for value in values:
            if rdtype in ("TXT", "SPF"):
                text = _txt(value)  # type: ignore[arg-type]
            elif rdtype == "MX":
                pref, host = value  # type: ignore[misc]
                text = f"{pref} {host}."
            elif rdtype in ("CNAME", "PTR", "NS"):
                text = f"{value}."
            else:
                text = str(value)
            lines.append(f"{owner} 300 IN {rdtype} {text}")
    return "\n".join(lines) + "\n"


def serve(server: DnsServer, resolver: StaticResolver, fault: str = "servfail") -> None:
    """Load the resolver's records into the server; its simulated timeouts become ``fault``."""
    server.add_zone(zone_text(resolver))
    for name in resolver._temperror:
        server.set_fault(name, fault)
