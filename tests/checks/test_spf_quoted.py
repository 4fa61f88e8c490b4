"""SPF on a MAIL FROM whose quoted local part holds "@": checked at the domain we report.

pyspf splits its sender at the first "@", Envelope.mail_from_domain at the last; the check
must evaluate the record of the domain it reports, or ``"x@y"@victim`` escapes ``-all``.
"""

from __future__ import annotations

import ipaddress

import pytest

from authmilter.checks.spf import check_spf
from authmilter.config import SpfConfig
from authmilter.model import Envelope
from authmilter.results import Result
from authmilter.staticresolver import StaticResolver

CFG = SpfConfig()
DOMAIN = "victim.example"
ALLOWED, OTHER = "192.0.2.10", "198.51.100.1"

# (MAIL FROM without angle brackets, the RFC 5321 local part as received)
SHAPES = [
    ('"x@y"@victim.example', '"x@y"'),
    ('"a\\"@b"@victim.example', '"a\\"@b"'),
    ('"@"@victim.example', '"@"'),
    ('"x@y@z"@victim.example', '"x@y@z"'),
    ('"x y"@victim.example', '"x y"'),
    ('""@victim.example', '""'),
    ("x@victim.example", "x"),
    ("@victim.example", "postmaster"),  # no local part: RFC 7208 4.3
]


def env(mail_from: str, ip: str) -> Envelope:
    return Envelope(
        client_ip=ipaddress.ip_address(ip), helo="mx.client.example", mail_from=mail_from
    )


@pytest.mark.parametrize(("mail_from", "local"), SHAPES)
@pytest.mark.parametrize(("ip", "result"), [(ALLOWED, Result.PASS), (OTHER, Result.FAIL)])
def test_checked_at_the_reported_domain(
    mail_from: str, local: str, ip: str, result: Result
) -> None:
    envelope = env(mail_from, ip)
    assert envelope.mail_from_domain == DOMAIN
    resolver = StaticResolver({(DOMAIN, "TXT"): [f"v=spf1 ip4:{ALLOWED} -all"]})
    got = check_spf(envelope, resolver, CFG)
    assert got.result == result
    assert got.domain == DOMAIN
    assert got.sender == f"{local}@{DOMAIN}"
    assert {name for name, _ in resolver.queries} == {DOMAIN}


@pytest.mark.parametrize(("mail_from", "local"), SHAPES)
def test_l_macro_is_the_local_part_as_received(mail_from: str, local: str) -> None:
    resolver = StaticResolver({(DOMAIN, "TXT"): ["v=spf1 exists:%{l}._spf.%{d} -all"]})
    resolver.add(f"{local}._spf.{DOMAIN}", "A", "127.0.0.2")
    got = check_spf(env(mail_from, OTHER), resolver, CFG)
    assert got.result == Result.PASS
    assert resolver.queries == [(DOMAIN, "TXT"), (f"{local}._spf.{DOMAIN}".lower(), "A")]


def test_o_and_d_macros_are_the_reported_domain() -> None:
    resolver = StaticResolver({(DOMAIN, "TXT"): ["v=spf1 exists:%{o}.%{d}.x.example -all"]})
    resolver.add(f"{DOMAIN}.{DOMAIN}.x.example", "A", "127.0.0.2")
    got = check_spf(env('"x@y"@victim.example', OTHER), resolver, CFG)
    assert got.result == Result.PASS


def test_received_spf_names_the_whole_sender_and_the_domain() -> None:
    resolver = StaticResolver({(DOMAIN, "TXT"): [f"v=spf1 ip4:{ALLOWED} -all"]})
    cfg = SpfConfig(received_spf_header=True)
    got = check_spf(env('"x@y"@victim.example', OTHER), resolver, cfg)
    assert got.result == Result.FAIL
    assert f"domain of {DOMAIN} does not designate" in got.received_spf
    assert 'envelope-from="\\"x@y\\"@victim.example"' in got.received_spf
