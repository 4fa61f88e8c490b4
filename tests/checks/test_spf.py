"""SPF check (RFC 7208) through pyspf, with all DNS from a StaticResolver."""

from __future__ import annotations

import ipaddress
import logging
import threading
import time
from collections.abc import Iterator

import dns.resolver
import pytest
import spf

from authmilter.checks.spf import check_helo, check_spf, domain_problem, install
from authmilter.config import SpfConfig
from authmilter.dnsresolver import Answer, DnspythonResolver
from authmilter.errors import DnsTempError
from authmilter.model import Envelope
from authmilter.results import Result
from authmilter.staticresolver import StaticResolver
from tests.support.dnsserver import DnsServer

CFG = SpfConfig()


def env(mail_from: str = "alice@example.com", ip: str | None = "192.0.2.10", **kw: str) -> Envelope:
    kw.setdefault("helo", "mx.client.example")
    client = ipaddress.ip_address(ip) if ip else None
    return Envelope(client_ip=client, mail_from=mail_from, **kw)  # type: ignore[arg-type]


def zone(record: str) -> StaticResolver:
    """example.com publishes ``record``; tests add more names with ``.add()``."""
    return StaticResolver({("example.com", "TXT"): [record]})


# --------------------------------------------------------------------------- results


@pytest.mark.parametrize(
    ("record", "ip", "result", "mechanism"),
    [
        ("v=spf1 ip4:192.0.2.0/24 -all", "192.0.2.10", Result.PASS, "ip4:192.0.2.0/24"),
        ("v=spf1 ip4:192.0.2.0/24 -all", "198.51.100.1", Result.FAIL, "-all"),
        ("v=spf1 ip4:192.0.2.0/24 ~all", "198.51.100.1", Result.SOFTFAIL, "~all"),
        ("v=spf1 ip4:192.0.2.0/24 ?all", "198.51.100.1", Result.NEUTRAL, "?all"),
        ("v=spf1 ip4:192.0.2.0/24", "198.51.100.1", Result.NEUTRAL, ""),
        ("v=spf1 -ip4:192.0.2.10 +all", "192.0.2.10", Result.FAIL, "-ip4:192.0.2.10"),
    ],
)
def test_result_words(record: str, ip: str, result: Result, mechanism: str) -> None:
    got = check_spf(env(ip=ip), zone(record), CFG)
    assert got.result == result
    assert got.identity == "mailfrom"
    assert got.domain == "example.com"
    assert got.sender == "alice@example.com"
    assert got.mechanism == mechanism
    assert got.reason


def test_no_record_is_none() -> None:
    r = StaticResolver({("example.com", "TXT"): ["google-site-verification=abc"]})
    got = check_spf(env(), r, CFG)
    assert got.result == Result.NONE


def test_nxdomain_is_none() -> None:
    got = check_spf(env("bob@nowhere.example"), StaticResolver(), CFG)
    assert got.result == Result.NONE
    assert got.domain == "nowhere.example"


def test_fail_reason_is_the_exp_explanation() -> None:
    r = zone("v=spf1 -all exp=why.example.com")
    r.add("why.example.com", "TXT", "%{i} is not one of %{d}'s hosts")
    got = check_spf(env(), r, CFG)
    assert got.result == Result.FAIL
    assert got.reason == "192.0.2.10 is not one of example.com's hosts"


@pytest.mark.parametrize(
    ("record", "words"),
    [
        ("v=spf1 ip4:192.0.2.300 -all", "Invalid IP4"),
        ("v=spf1 moo -all", "Unknown mechanism"),
        ("v=spf1 include: -all", ""),
        ("v=spf1 redirect=a.example.com redirect=b.example.com", ""),
    ],
)
def test_syntax_errors_are_permerror(record: str, words: str) -> None:
    got = check_spf(env(), zone(record), CFG)
    assert got.result == Result.PERMERROR
    assert words in got.reason


def test_two_records_are_permerror() -> None:
    r = StaticResolver({("example.com", "TXT"): ["v=spf1 -all", "v=spf1 +all"]})
    assert check_spf(env(), r, CFG).result == Result.PERMERROR


def test_too_many_lookups_is_permerror() -> None:
    r = zone(" ".join(["v=spf1"] + [f"a:h{i}.example.com" for i in range(11)] + ["-all"]))
    for i in range(11):
        r.add(f"h{i}.example.com", "A", "198.51.100.1")
    got = check_spf(env(), r, CFG)
    assert got.result == Result.PERMERROR
    assert "Too many DNS lookups" in got.reason


def test_ten_lookups_are_allowed() -> None:
    r = zone(" ".join(["v=spf1"] + [f"a:h{i}.example.com" for i in range(10)] + ["-all"]))
    for i in range(10):
        r.add(f"h{i}.example.com", "A", "198.51.100.1")
    r.add("h9.example.com", "A", "192.0.2.10")
    assert check_spf(env(), r, CFG).result == Result.PASS


def test_void_lookups_over_two_are_permerror() -> None:
    r = zone("v=spf1 a:v1.example.com a:v2.example.com a:v3.example.com -all")
    got = check_spf(env(), r, CFG)
    assert got.result == Result.PERMERROR
    assert "Void lookup limit" in got.reason


def test_two_void_lookups_are_allowed() -> None:
    r = zone("v=spf1 a:v1.example.com a:v2.example.com -all")
    assert check_spf(env(), r, CFG).result == Result.FAIL


# --------------------------------------------------------------------------- temperror


def test_timeout_on_the_record_is_temperror() -> None:
    r = StaticResolver({("example.com", "TXT"): ["v=spf1 -all"]}, temperror=["example.com"])
    got = check_spf(env(), r, CFG)
    assert got.result == Result.TEMPERROR
    assert "example.com" in got.reason


def test_timeout_in_an_include_is_temperror_not_fail() -> None:
    r = StaticResolver(
        {("example.com", "TXT"): ["v=spf1 include:_spf.slow.example -all"]},
        temperror=["*.slow.example"],
    )
    got = check_spf(env(), r, CFG)
    assert got.result == Result.TEMPERROR
    assert ("_spf.slow.example", "TXT") in r.queries


def test_timeout_in_an_a_lookup_is_temperror() -> None:
    r = StaticResolver(
        {("example.com", "TXT"): ["v=spf1 a:mx.slow.example -all"]}, temperror=["mx.slow.example"]
    )
    assert check_spf(env(), r, CFG).result == Result.TEMPERROR


class SleepyResolver:
    """Answers from a StaticResolver after sleeping; records the timeouts it was given."""

    def __init__(self, inner: StaticResolver, delay: float) -> None:
        self.inner, self.delay = inner, delay
        self.timeouts: list[float | None] = []

    def query(self, name: str, rdtype: str, timeout: float | None = None) -> Answer:
        self.timeouts.append(timeout)
        time.sleep(self.delay)
        return self.inner.query(name, rdtype, timeout)


def test_time_budget_is_enforced() -> None:
    inner = zone(" ".join(["v=spf1"] + [f"a:h{i}.example.com" for i in range(8)] + ["-all"]))
    slow = SleepyResolver(inner, delay=0.15)
    got = check_spf(env(), slow, SpfConfig(time_budget=0.4))
    assert got.result == Result.TEMPERROR
    assert "budget" in got.reason or "lookup time" in got.reason
    assert len(slow.timeouts) < 9  # stopped before all lookups were made


def test_each_lookup_gets_the_remaining_budget() -> None:
    inner = zone("v=spf1 a:h1.example.com a:h2.example.com -all")
    slow = SleepyResolver(inner, delay=0.05)
    got = check_spf(env(), slow, SpfConfig(time_budget=3.0))
    assert got.result == Result.FAIL
    assert len(slow.timeouts) == 3
    budgets = [t for t in slow.timeouts if t is not None]
    assert len(budgets) == 3
    assert all(0 < t <= 3.0 for t in budgets)
    assert budgets[0] > budgets[1] > budgets[2]


def test_resolver_bug_is_logged_temperror(caplog: pytest.LogCaptureFixture) -> None:
    class Broken:
        def query(self, name: str, rdtype: str, timeout: float | None = None) -> Answer:
            raise RuntimeError("resolver bug")

    with caplog.at_level(logging.ERROR, logger="authmilter.checks.spf"):
        got = check_spf(env(queue_id="4XyZ"), Broken(), CFG)
    assert got.result == Result.TEMPERROR
    assert "RuntimeError" in got.reason
    assert any("4XyZ" in rec.getMessage() and rec.exc_info for rec in caplog.records)


def test_dns_temp_error_text_reaches_reason() -> None:
    class ServFail:
        def query(self, name: str, rdtype: str, timeout: float | None = None) -> Answer:
            raise DnsTempError(f"{name}/{rdtype}: no nameserver answered (SERVFAIL)")

    got = check_spf(env(), ServFail(), CFG)
    assert got.result == Result.TEMPERROR
    assert "SERVFAIL" in got.reason


# --------------------------------------------------------------------------- identities


def test_null_sender_checks_helo() -> None:
    r = StaticResolver({("mx.client.example", "TXT"): ["v=spf1 ip4:192.0.2.10 -all"]})
    got = check_spf(env(""), r, CFG)
    assert got.result == Result.PASS
    assert got.identity == "helo"
    assert got.domain == "mx.client.example"
    assert got.sender == "postmaster@mx.client.example"


def test_null_sender_helo_fail() -> None:
    r = StaticResolver({("mx.client.example", "TXT"): ["v=spf1 -all"]})
    got = check_spf(env(""), r, CFG)
    assert (got.result, got.identity) == (Result.FAIL, "helo")


@pytest.mark.parametrize("mail_from", ["alice", "alice@", "<>"])
def test_mail_from_without_domain_uses_helo(mail_from: str) -> None:
    r = StaticResolver({("mx.client.example", "TXT"): ["v=spf1 -all"]})
    got = check_spf(env(mail_from), r, CFG)
    assert (got.result, got.identity, got.domain) == (Result.FAIL, "helo", "mx.client.example")


def test_empty_local_part_is_postmaster() -> None:
    r = zone("v=spf1 -all exp=e.example.com")
    r.add("e.example.com", "TXT", "%{l}")
    got = check_spf(env("@example.com"), r, CFG)
    assert got.result == Result.FAIL
    assert got.sender == "postmaster@example.com"
    assert got.reason == "postmaster"


def test_no_client_ip_is_none() -> None:
    r = zone("v=spf1 -all")
    got = check_spf(env(ip=None), r, CFG)
    assert got.result == Result.NONE
    assert "client address" in got.reason
    assert r.queries == []


@pytest.mark.parametrize("helo", ["[192.0.2.10]", "192.0.2.10", "localhost", "", "a..example"])
def test_helo_not_a_fqdn_is_none(helo: str) -> None:
    r = StaticResolver({("localhost", "TXT"): ["v=spf1 -all"]})
    got = check_helo(env(helo=helo), r, CFG)
    assert got.result == Result.NONE
    assert got.identity == "helo"
    assert got.reason
    assert r.queries == []


def test_check_helo_explicitly() -> None:
    r = StaticResolver(
        {
            ("example.com", "TXT"): ["v=spf1 -all"],
            ("mx.client.example", "TXT"): ["v=spf1 a -all"],
            ("mx.client.example", "A"): ["192.0.2.10"],
        }
    )
    e = env(helo="MX.Client.Example.")
    assert check_spf(e, r, CFG).result == Result.FAIL
    got = check_helo(e, r, CFG)
    assert (got.result, got.identity, got.domain) == (Result.PASS, "helo", "mx.client.example")


@pytest.mark.parametrize(
    ("domain", "ok"),
    [
        ("example.com", True),
        ("a" * 63 + ".example.com", True),
        ("a" * 64 + ".example.com", False),
        ("example", False),
        ("", False),
        ("[1.2.3.4]", False),
        ("::1", False),
        ("a..example.com", False),
        ("-a.example.com", False),
        ("_spf.example.com", True),
        ("xn--bcher-kva.example", True),
        ("ex(am)ple.com", False),
        ('a";b.example.com', False),
        (("a" * 60 + ".") * 5 + "com", False),
    ],
)
def test_domain_problem(domain: str, ok: bool) -> None:
    assert (domain_problem(domain) is None) is ok


def test_malformed_mail_from_domain_is_none_without_dns() -> None:
    r = StaticResolver()
    got = check_spf(env("x@[192.0.2.1]"), r, CFG)
    assert got.result == Result.NONE
    assert r.queries == []


def test_idn_domain_is_queried_as_a_label() -> None:
    r = StaticResolver({("xn--bcher-kva.example", "TXT"): ["v=spf1 ip4:192.0.2.10 -all"]})
    got = check_spf(env("anna@bücher.example"), r, CFG)
    assert got.result == Result.PASS
    assert got.domain == "xn--bcher-kva.example"


# --------------------------------------------------------------------------- mechanisms


def test_ipv6_client() -> None:
    r = zone("v=spf1 ip6:2001:db8::/32 -all")
    assert check_spf(env(ip="2001:db8::25"), r, CFG).result == Result.PASS
    assert check_spf(env(ip="2001:db9::25"), r, CFG).result == Result.FAIL


def test_ipv6_client_a_mechanism_uses_aaaa() -> None:
    r = zone("v=spf1 a:mail.example.com -all")
    r.add("mail.example.com", "A", "192.0.2.10")
    r.add("mail.example.com", "AAAA", "2001:db8::25")
    assert check_spf(env(ip="2001:db8::25"), r, CFG).result == Result.PASS
    assert ("mail.example.com", "AAAA") in r.queries


def test_ipv4_mapped_ipv6_client_is_ipv4() -> None:
    r = zone("v=spf1 ip4:192.0.2.10 -all")
    assert check_spf(env(ip="::ffff:192.0.2.10"), r, CFG).result == Result.PASS


def test_mx_mechanism() -> None:
    r = zone("v=spf1 mx -all")
    r.add("example.com", "MX", (10, "mx1.example.com"), (20, "mx2.example.com"))
    r.add("mx1.example.com", "A", "198.51.100.1")
    r.add("mx2.example.com", "A", "192.0.2.10")
    got = check_spf(env(), r, CFG)
    assert (got.result, got.mechanism) == (Result.PASS, "mx")


def test_ptr_mechanism() -> None:
    r = zone("v=spf1 ptr -all")
    r.add("10.2.0.192.in-addr.arpa", "PTR", "host.example.com")
    r.add("host.example.com", "A", "192.0.2.10")
    assert check_spf(env(), r, CFG).result == Result.PASS


def test_include_and_redirect() -> None:
    r = zone("v=spf1 include:_a.example.com redirect=_b.example.com")
    r.add("_a.example.com", "TXT", "v=spf1 ip4:198.51.100.0/24 -all")
    r.add("_b.example.com", "TXT", "v=spf1 ip4:192.0.2.0/24 ~all")
    assert check_spf(env(ip="198.51.100.7"), r, CFG).result == Result.PASS
    assert check_spf(env(ip="192.0.2.10"), r, CFG).result == Result.PASS
    assert check_spf(env(ip="203.0.113.1"), r, CFG).result == Result.SOFTFAIL


def test_record_behind_cname() -> None:
    r = StaticResolver(
        {
            ("example.com", "CNAME"): ["spf.provider.example"],
            ("spf.provider.example", "TXT"): ["v=spf1 ip4:192.0.2.10 -all"],
        }
    )
    assert check_spf(env(), r, CFG).result == Result.PASS


def test_macro_expansion() -> None:
    r = zone("v=spf1 exists:%{l}.%{ir}.%{v}._spf.%{d} -all")
    r.add("alice.10.2.0.192.in-addr._spf.example.com", "A", "127.0.0.2")
    assert check_spf(env(), r, CFG).result == Result.PASS
    assert check_spf(env("bob@example.com"), r, CFG).result == Result.FAIL
    assert ("bob.10.2.0.192.in-addr._spf.example.com", "A") in r.queries


def test_macro_expansion_ipv6_and_helo() -> None:
    r = zone("v=spf1 exists:%{h}.%{i}.x.example.com -all")
    nibbles = ".".join("20010db8000000000000000000000025")
    r.add(f"mx.client.example.{nibbles}.x.example.com", "A", "127.0.0.2")
    assert check_spf(env(ip="2001:db8::25"), r, CFG).result == Result.PASS


# --------------------------------------------------------------------------- Received-SPF


def test_received_spf_header() -> None:
    cfg = SpfConfig(received_spf_header=True)
    got = check_spf(env(), zone("v=spf1 ip4:192.0.2.0/24 -all"), cfg, receiver="mx.test")
    assert got.received_spf.startswith("Pass (mx.test: domain of example.com designates")
    for part in (
        "client-ip=192.0.2.10;",
        'envelope-from="alice@example.com";',
        "helo=mx.client.example;",
        "receiver=mx.test;",
        'mechanism="ip4:192.0.2.0/24";',
        "identity=mailfrom",
    ):
        assert part in got.received_spf
    assert "\r" not in got.received_spf
    assert "\n" not in got.received_spf


def test_received_spf_off_by_default() -> None:
    assert check_spf(env(), zone("v=spf1 -all"), CFG).received_spf == ""


def test_received_spf_for_helo_and_none() -> None:
    cfg = SpfConfig(received_spf_header=True)
    r = StaticResolver({("mx.client.example", "TXT"): ["v=spf1 -all"]})
    got = check_spf(env(""), r, cfg, receiver="mx.test")
    assert got.received_spf.startswith("Fail (mx.test:")
    assert got.received_spf.endswith("identity=helo")
    assert "envelope-from" not in got.received_spf
    none = check_spf(env(ip=None), r, cfg, receiver="mx.test")
    assert none.received_spf.startswith("None (mx.test: client address unknown)")


def test_received_spf_strips_line_breaks_from_explanation() -> None:
    cfg = SpfConfig(received_spf_header=True)
    r = zone("v=spf1 -all exp=e.example.com")
    r.add("e.example.com", "TXT", "go away\r\nX-Injected: yes")
    got = check_spf(env(), r, cfg)
    assert got.result == Result.FAIL
    assert "\n" not in got.reason and "\r" not in got.reason
    assert "\n" not in got.received_spf and "\r" not in got.received_spf


# --------------------------------------------------------------------------- the DNS seam


def test_pyspf_never_uses_dnspython_globals(monkeypatch: pytest.MonkeyPatch) -> None:
    def forbidden(*args: object, **kwargs: object) -> None:
        raise AssertionError("pyspf reached dns.resolver")

    monkeypatch.setattr(dns.resolver, "query", forbidden, raising=False)
    monkeypatch.setattr(dns.resolver, "resolve", forbidden)
    assert check_spf(env(), zone("v=spf1 a mx -all"), CFG).result == Result.FAIL
    # outside check_spf the dispatcher has no resolver: temperror, still no global DNS
    install()
    res, _code, _exp = spf.query(i="192.0.2.10", s="a@example.com", h="x.example").check()
    assert res == "temperror"


def test_install_is_idempotent() -> None:
    install()
    first = spf.DNSLookup
    install()
    assert spf.DNSLookup is first


def test_threads_get_their_own_resolver() -> None:
    barrier = threading.Barrier(2, timeout=10)

    class Meeting:
        """Both threads are inside a lookup at the same time before either answers."""

        def __init__(self, record: str) -> None:
            self.inner = StaticResolver({("example.com", "TXT"): [record]})
            self.met = False

        def query(self, name: str, rdtype: str, timeout: float | None = None) -> Answer:
            if not self.met:
                barrier.wait()
                self.met = True
            return self.inner.query(name, rdtype, timeout)

    results: dict[str, list[Result]] = {"pass": [], "fail": []}

    def run(key: str, record: str) -> None:
        for _ in range(5):
            resolver = Meeting(record)
            results[key].append(check_spf(env(), resolver, CFG).result)
            barrier.wait()  # next round starts together again

    threads = [
        threading.Thread(target=run, args=("pass", "v=spf1 ip4:192.0.2.10 -all")),
        threading.Thread(target=run, args=("fail", "v=spf1 -all")),
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert results["pass"] == [Result.PASS] * 5
    assert results["fail"] == [Result.FAIL] * 5


# --------------------------------------------------------------------------- real dnspython path


LOOPBACK_ZONE = """
example.com. 300 IN TXT "v=spf1 include:_spf.example.com mx ptr:example.com -all"
_spf.example.com. 300 IN CNAME _spf2.example.com.
_spf2.example.com. 300 IN TXT "v=spf1 ip4:198.51.100.0/24 " "ip6:2001:db8::/32 -all"
example.com. 300 IN MX 10 mx1.example.com.
mx1.example.com. 300 IN A 203.0.113.5
7.113.0.203.in-addr.arpa. 300 IN PTR host.example.com.
host.example.com. 300 IN A 203.0.113.7
slow.example. 300 IN TXT "v=spf1 include:t.slow.example -all"
"""


@pytest.fixture
def loopback_dns() -> Iterator[DnsServer]:
    with DnsServer(LOOPBACK_ZONE) as server:
        yield server


@pytest.mark.parametrize(
    ("ip", "result", "mechanism"),
    [
        ("198.51.100.9", Result.PASS, "include:_spf.example.com"),  # CNAME + two strings
        ("2001:db8::9", Result.PASS, "include:_spf.example.com"),
        ("203.0.113.5", Result.PASS, "mx"),
        ("203.0.113.7", Result.PASS, "ptr:example.com"),
        ("192.0.2.99", Result.FAIL, "-all"),
    ],
)
def test_through_dnspython_and_a_real_server(
    loopback_dns: DnsServer, ip: str, result: Result, mechanism: str
) -> None:
    resolver = DnspythonResolver([loopback_dns.address], timeout=2)
    got = check_spf(env(ip=ip), resolver, CFG)
    assert (got.result, got.mechanism) == (result, mechanism)


def test_real_server_nxdomain_is_none(loopback_dns: DnsServer) -> None:
    resolver = DnspythonResolver([loopback_dns.address], timeout=2)
    assert check_spf(env("a@nx.example.com"), resolver, CFG).result == Result.NONE


@pytest.mark.parametrize("fault", ["timeout", "servfail"])
def test_real_server_fault_is_temperror(loopback_dns: DnsServer, fault: str) -> None:
    loopback_dns.set_fault("t.slow.example", fault)
    resolver = DnspythonResolver([loopback_dns.address], timeout=2)
    got = check_spf(env("a@slow.example"), resolver, SpfConfig(time_budget=1.0))
    assert got.result == Result.TEMPERROR
