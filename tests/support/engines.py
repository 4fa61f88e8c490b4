"""Shared test set-up for the pipeline: a static zone for example.com and engines over a
StaticResolver, configured like an MX (an authserv-id, no internal hosts)."""

from __future__ import annotations

from typing import Any

from authmilter.config import from_dict
from authmilter.engine import Engine
from authmilter.staticresolver import StaticResolver
from tests.support.keys import dkim_record

GOOD_IP = "192.0.2.25"  # example.com's SPF allows it
BAD_IP = "203.0.113.9"


def example_zone(*temperror: str) -> StaticResolver:
    """example.com: SPF for GOOD_IP, DMARC p=reject, an RSA (``rsa``) and Ed25519 (``ed``) key."""
    return StaticResolver(
        {
            ("example.com", "TXT"): [f"v=spf1 ip4:{GOOD_IP} -all"],
            ("_dmarc.example.com", "TXT"): ["v=DMARC1; p=reject"],
            ("rsa._domainkey.example.com", "TXT"): [dkim_record("rsa")],
            ("ed._domainkey.example.com", "TXT"): [dkim_record("ed25519")],
            ("example.com", "A"): [GOOD_IP],
        },
        temperror=temperror,
    )


def make_engine(
    resolver: StaticResolver | None = None, authserv_id: str = "mx.test", **sections: Any
) -> Engine:
    """An engine over ``resolver`` (default: :func:`example_zone`); ``sections`` override config."""
    milter = {"authserv_id": authserv_id, **sections.pop("milter", {})}
    data = {"milter": milter, "trust": {"internal_hosts": []}, **sections}
    return Engine(from_dict(data), resolver if resolver is not None else example_zone())
