"""Who is "us": the trust classification of an SMTP client, decided once per envelope.

Trusted mail (our own users' and hosts') is signed and never checked as inbound mail, so
each source of trust is named here and nowhere else. Mail trusted without a SASL login
(every source but ``AUTHENTICATED``) is bound by the sender login map as
:mod:`authmilter.outbound` says, and local submission may be checked as inbound instead.
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
    LOCAL = "local"  # sendmail/pickup: {daemon_name} in trust.local_daemon_names
    INTERNAL = "internal"  # client address in trust.internal_hosts
    DAEMON = "daemon"  # {daemon_name} in trust.daemon_names


@dataclass(frozen=True, slots=True)
class TrustPolicy:
    """trust.* with its networks parsed once."""

    authenticated: bool
    networks: tuple[Network, ...]
    daemon_names: frozenset[str]
    local_daemon_names: frozenset[str]
    local_submission: str  # "login-map" | "sign" | "check"

    @classmethod
    def from_config(cls, cfg: TrustConfig) -> TrustPolicy:
        """Parse the configured networks (already validated by the config loader)."""
        return cls(
            cfg.authenticated,
            cfg.networks(),
            frozenset(cfg.daemon_names),
            frozenset(cfg.local_daemon_names),
            cfg.local_submission,
        )

    def classify(self, env: Envelope) -> Trust | None:
        """The first source of trust that applies, or None for inbound mail.

        Local submission comes before the internal hosts: Postfix presents it as a client
        at 127.0.0.1. With ``local_submission = "check"`` it is inbound mail.
        """
        if self.authenticated and env.auth_user:
            return Trust.AUTHENTICATED
        if env.daemon_name and env.daemon_name in self.local_daemon_names:
            return None if self.local_submission == "check" else Trust.LOCAL
        if env.client_ip is not None and any(_in(env.client_ip, n) for n in self.networks):
            return Trust.INTERNAL
        if env.daemon_name and env.daemon_name in self.daemon_names:
            return Trust.DAEMON
        return None

    def login_map_binds(self, trust: Trust) -> bool:
        """Whether the sender login map applies to mail trusted for this reason."""
        return trust != Trust.LOCAL or self.local_submission == "login-map"


def _in(ip: IPAddress, net: Network) -> bool:
    if ip.version != net.version:
        mapped = getattr(ip, "ipv4_mapped", None)
        return mapped is not None and mapped in net
    return ip in net
