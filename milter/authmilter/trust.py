"""Who is "us": the trust classification of an SMTP client, decided once per envelope.

Trusted mail (our own users' and hosts') is signed and never checked as inbound mail, so
each source of trust is named here and nowhere else.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from enum import StrEnum

from authmilter.config import TrustConfig
from authmilter.model import Envelope, IPAddress

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class Trust(StrEnum):
    """Why a sender is "us" (the value is what the log line and ``test --json`` show)."""

    AUTHENTICATED = "auth"  # SASL-authenticated client ({auth_authen})
    INTERNAL = "internal"  # client address in trust.internal_hosts
    DAEMON = "daemon"  # {daemon_name} in trust.daemon_names


@dataclass(frozen=True, slots=True)
class TrustPolicy:
    """trust.* with its networks parsed once."""

    authenticated: bool
    networks: tuple[Network, ...]
    daemon_names: frozenset[str]

    @classmethod
    def from_config(cls, cfg: TrustConfig) -> TrustPolicy:
        """Parse the configured networks (already validated by the config loader)."""
        networks = tuple(ipaddress.ip_network(n, strict=False) for n in cfg.internal_hosts)
        return cls(cfg.authenticated, networks, frozenset(cfg.daemon_names))

    def classify(self, env: Envelope) -> Trust | None:
        """The first source of trust that applies, or None for inbound mail."""
        if self.authenticated and env.auth_user:
            return Trust.AUTHENTICATED
        if env.client_ip is not None and any(_in(env.client_ip, n) for n in self.networks):
            return Trust.INTERNAL
        if env.daemon_name and env.daemon_name in self.daemon_names:
            return Trust.DAEMON
        return None


def _in(ip: IPAddress, net: Network) -> bool:
    if ip.version != net.version:
        mapped = getattr(ip, "ipv4_mapped", None)
        return mapped is not None and mapped in net
    return ip in net
