"""Names are asked for literally: what a sender puts into an SPF macro is never read as a
zone-file escape (a backslash, a quote), and a name that cannot exist is NXDOMAIN, not a
temperror that would turn an SPF ``-all`` into a 451."""

from __future__ import annotations

import ipaddress

from authmilter.checks.spf import check_spf
from authmilter.config import SpfConfig
from authmilter.dnsresolver import DnspythonResolver
from authmilter.dnswire import literal_name
from authmilter.model import Envelope
from authmilter.results import Result
from tests.support.dnsserver import DnsServer


def test_backslash_and_quote_are_label_characters() -> None:
    name = literal_name('"\\065".example')
    assert name is not None and name.labels[0] == b'"\\065"'
    assert literal_name("a" * 64 + ".example") is None
    assert literal_name("a..example") is None
    assert literal_name(".".join(["a" * 60] * 5)) is None


def test_an_escape_lookalike_does_not_reach_another_name() -> None:
    with DnsServer() as dns:
        dns.add("xa.example", "TXT", "wrong record")
        resolver = DnspythonResolver([dns.address], timeout=2.0)
        answer = resolver.query("x\\065.example", "TXT")  # \\065 would be "A" as an escape
        assert answer.txt() == [] and not answer.exists
        assert dns.queries("xa.example") == 0
        assert resolver.query("a" * 70 + ".example", "TXT").exists is False


def test_spf_macro_with_a_quoted_local_part_is_fail_not_temperror() -> None:
    with DnsServer() as dns:
        dns.add("victim.example", "TXT", "v=spf1 exists:%{l}._spf.%{d} -all")
        resolver = DnspythonResolver([dns.address], timeout=2.0)
        env = Envelope(
            client_ip=ipaddress.ip_address("203.0.113.9"),
            helo="mx.example",
            mail_from='"\\1"@victim.example',
        )
        result = check_spf(env, resolver, SpfConfig(), receiver="mx.test")
        assert result.result == Result.FAIL, result
