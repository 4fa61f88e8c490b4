"""The resolver seam: static answers, zone files, the three outcomes kept apart."""

from __future__ import annotations

import socket
import time
from pathlib import Path

import dns.message
import pytest

from authmilter.compose import load_engine
from authmilter.dnsresolver import DnspythonResolver, parse_nameserver
from authmilter.errors import ConfigError, DnsTempError
from authmilter.staticresolver import StaticResolver
from tests.integration.slowdns import SlowDns
from tests.support.dnsserver import DnsServer
from tests.support.procs import wait_for


def test_static_answers_nxdomain_and_nodata() -> None:
    r = StaticResolver(
        {
            ("example.com", "TXT"): ["v=spf1 -all"],
            ("s._domainkey.example.com", "TXT"): ["v=DKIM1; p=abc"],
        }
    )
    assert r.query("Example.COM.", "TXT").txt() == [b"v=spf1 -all"]
    nodata = r.query("_domainkey.example.com", "TXT")
    assert nodata.exists and nodata.records == ()
    assert not r.query("nope.example.com", "TXT").exists
    assert r.query("example.com", "A").exists  # NODATA, not NXDOMAIN


def test_static_temperror_exact_and_wildcard() -> None:
    r = StaticResolver(temperror=["slow.example", "*.slower.example"])
    with pytest.raises(DnsTempError):
        r.query("slow.example", "TXT")
    with pytest.raises(DnsTempError):
        r.query("a.b.slower.example", "TXT")
    assert not r.query("x.slow.example", "TXT").exists


def test_long_txt_is_split_into_strings_and_joined() -> None:
    r = StaticResolver({("k.example", "TXT"): ["p=" + "A" * 600]})
    ans = r.query("k.example", "TXT")
    assert len(ans.records[0]) == 3
    assert ans.txt() == [b"p=" + b"A" * 600]


def test_zone_file(tmp_path: Path) -> None:
    zone = tmp_path / "example.org.zone"
    zone.write_text(
        "$ORIGIN example.org.\n$TTL 300\n"
        '@ IN TXT "v=spf1 " "ip4:192.0.2.1 -all"\n'
        "@ IN MX 10 mx\nmx IN A 192.0.2.1\nmx IN AAAA 2001:db8::1\nwww IN CNAME mx\n"
        "1.2.0.192.in-addr.arpa. IN PTR mx.example.org.\n"
    )
    r = StaticResolver()
    r.add_zone_file(zone)
    assert r.query("example.org", "TXT").txt() == [b"v=spf1 ip4:192.0.2.1 -all"]
    assert r.query("example.org", "MX").records == ((10, "mx.example.org"),)
    assert r.query("www.example.org", "A").records == ("192.0.2.1",)
    assert r.query("mx.example.org", "AAAA").records == ("2001:db8::1",)
    assert r.query("1.2.0.192.in-addr.arpa", "PTR").records == ("mx.example.org",)


def test_bad_zone_file_names_the_file(tmp_path: Path) -> None:
    zone = tmp_path / "bad.zone"
    zone.write_text("$ORIGIN example.org.\n@ IN TXT\n")
    with pytest.raises(
        ConfigError, match=r"bad\.zone:3: bad zone file: Text input ended unexpectedly"
    ):
        StaticResolver().add_zone_file(zone)
    with pytest.raises(ConfigError, match="zone file does not exist"):
        StaticResolver().add_zone_file(tmp_path / "missing.zone")


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("127.0.0.1", ("127.0.0.1", 53)),
        ("127.0.0.1:5353", ("127.0.0.1", 5353)),
        ("::1", ("::1", 53)),
        ("[::1]:5353", ("::1", 5353)),
        ("[2001:db8::1]", ("2001:db8::1", 53)),
    ],
)
def test_parse_nameserver(spec: str, expected: tuple[str, int]) -> None:
    assert parse_nameserver(spec) == expected


@pytest.mark.parametrize("spec", ["ns.example", "127.0.0.1:x", "127.0.0.1:70000", "[::1]x"])
def test_parse_nameserver_rejects(spec: str) -> None:
    with pytest.raises(ValueError):
        parse_nameserver(spec)


def test_unreachable_nameserver_is_temperror_not_nxdomain() -> None:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", 0))  # a port that swallows queries: nothing answers
    port = s.getsockname()[1]
    try:
        r = DnspythonResolver([f"127.0.0.1:{port}"], timeout=0.3)
        with pytest.raises(DnsTempError, match="timed out"):
            r.query("example.com", "TXT")
    finally:
        s.close()


# --------------------------------------------------------------------------- failure memory


def _black_hole() -> socket.socket:
    """A UDP port that swallows queries: they queue up unread, nothing ever answers."""
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", 0))
    return s


def _swallowed(s: socket.socket) -> list[str]:
    """The query names the black hole received so far (read without waiting)."""
    names = []
    s.setblocking(False)
    while True:
        try:
            wire = s.recv(65535)
        except BlockingIOError:
            return names
        names.append(dns.message.from_wire(wire).question[0].name.to_text())


def test_dead_server_costs_one_timeout_then_lookups_fail_at_once() -> None:
    hole = _black_hole()
    try:
        r = DnspythonResolver([f"127.0.0.1:{hole.getsockname()[1]}"], timeout=0.5, failure_ttl=30)
        with pytest.raises(DnsTempError, match="timed out"):
            r.query("example.org", "TXT")
        started = time.monotonic()
        for name in ("sel._domainkey.example.org", "_dmarc.example.org", "other.example"):
            with pytest.raises(DnsTempError, match="not answering"):
                r.query(name, "TXT")
        # the rest waited for the 1-second liveness probe at most, not for three timeouts
        assert time.monotonic() - started < 0.5 * 3
        # asked: the first name (retransmitted, perhaps) and the root once (the probe)
        assert set(_swallowed(hole)) == {"example.org.", "."}
        assert r.failures is not None and r.failures.fast_failures == 3
    finally:
        hole.close()


def test_a_slow_name_is_remembered_but_the_server_stays_in_use() -> None:
    with DnsServer('ok.example. 300 IN TXT "fine"\n') as server:
        server.set_fault("slow.example", "timeout")
        r = DnspythonResolver([server.address], timeout=0.5, cache_size=0, failure_ttl=1.0)
        with pytest.raises(DnsTempError, match="timed out after"):
            r.query("slow.example", "TXT")
        # the probe hears the server: other names are still asked and answered
        assert r.query("ok.example", "TXT").txt() == [b"fine"]
        with pytest.raises(DnsTempError, match="not asked again"):
            r.query("slow.example", "TXT")
        assert server.queries("slow.example", "TXT") >= 1
        asked = server.queries("slow.example", "TXT")
        with pytest.raises(DnsTempError, match="not asked again"):
            r.query("slow.example", "TXT")
        assert server.queries("slow.example", "TXT") == asked
        time.sleep(1.1)  # the memory is short: then the name is asked again
        server.clear_faults()
        server.add("slow.example", "TXT", "late")
        assert r.query("slow.example", "TXT").txt() == [b"late"]


def test_a_server_that_comes_back_is_used_again() -> None:
    with DnsServer('ok.example. 300 IN TXT "fine"\n') as server:
        server.set_fault("", "timeout")  # the probe's root query
        server.set_fault("*.example", "timeout")
        server.set_fault("ok.example", "timeout")
        r = DnspythonResolver([server.address], timeout=0.3, cache_size=0, failure_ttl=0.8)
        with pytest.raises(DnsTempError, match="timed out"):
            r.query("ok.example", "TXT")
        with pytest.raises(DnsTempError, match="not answering"):
            r.query("b.example", "TXT")
        server.clear_faults()
        time.sleep(0.9)
        assert r.query("ok.example", "TXT").txt() == [b"fine"]
        assert r.query("c.example", "TXT").exists is False


def test_failure_memory_is_off_when_ttl_is_zero() -> None:
    hole = _black_hole()
    try:
        r = DnspythonResolver([f"127.0.0.1:{hole.getsockname()[1]}"], timeout=0.2)
        assert r.failures is None
        for _ in range(2):
            with pytest.raises(DnsTempError, match="timed out"):
                r.query("example.org", "TXT")
        assert _swallowed(hole).count("example.org.") >= 2
    finally:
        hole.close()


def test_reload_keeps_the_resolver_when_dns_settings_are_unchanged(tmp_path: Path) -> None:
    conf = tmp_path / "a.toml"
    conf.write_text('[dns]\nnameservers = ["127.0.0.1"]\n')
    first = load_engine(str(conf))
    assert load_engine(str(conf), first).resolver is first.resolver
    conf.write_text('[dns]\nnameservers = ["127.0.0.1"]\n[milter]\nauthserv_id = "x.example"\n')
    assert load_engine(str(conf), first).resolver is first.resolver
    conf.write_text('[dns]\nnameservers = ["127.0.0.1"]\ntimeout = 2.0\n')
    assert load_engine(str(conf), first).resolver is not first.resolver


# --------------------------------------------------------------------------- on the wire


def test_a_server_slower_than_two_seconds_is_used_within_the_timeout() -> None:
    # dnspython's resolver gave each attempt 2 s and a new socket: a 2.5 s answer was lost
    with (
        DnsServer('slow.example. 300 IN TXT "late but fine"\n') as server,
        SlowDns(server, delay=2.5, answer_only_first=True) as slow,
    ):
        r = DnspythonResolver([slow.address], timeout=4.0, cache_size=0)
        assert r.query("slow.example", "TXT").txt() == [b"late but fine"]
        # retransmitted on the same socket meanwhile (at 1 s): the first copy's answer counts
        # (the server counts an answer after sending it: wait for its thread to get there)
        assert slow.received >= 2
        assert wait_for(lambda: slow.answered == 1)


def test_a_lost_datagram_is_retransmitted_before_the_timeout() -> None:
    with DnsServer('lossy.example. 300 IN TXT "second copy"\n') as server:
        hole = _black_hole()  # the first server swallows everything: the next one is asked
        try:
            r = DnspythonResolver(
                [f"127.0.0.1:{hole.getsockname()[1]}", server.address], timeout=4.0
            )
            started = time.monotonic()
            assert r.query("lossy.example", "TXT").txt() == [b"second copy"]
            assert time.monotonic() - started < 3.0  # the second server at 1 s, not at 4
        finally:
            hole.close()


def test_servfail_from_every_server_is_a_temperror_at_once() -> None:
    with DnsServer() as one, DnsServer() as two:
        one.set_fault("bad.example", "servfail")
        two.set_fault("bad.example", "refused")
        r = DnspythonResolver([one.address, two.address], timeout=5.0)
        started = time.monotonic()
        with pytest.raises(DnsTempError, match=r"no nameserver answered.*SERVFAIL.*REFUSED"):
            r.query("bad.example", "TXT")
        assert time.monotonic() - started < 2.5  # both asked, no waiting for the timeout


def test_answers_follow_cnames_and_keep_nodata_and_nxdomain_apart() -> None:
    zone = (
        "alias.example. 300 IN CNAME target.example.\n"
        'target.example. 60 IN TXT "at the end"\n'
        "target.example. 60 IN A 192.0.2.1\n"
    )
    with DnsServer(zone) as server:
        r = DnspythonResolver([server.address], timeout=2.0)
        assert r.query("alias.example", "TXT").txt() == [b"at the end"]
        assert r.query("alias.example", "MX").records == ()  # NODATA after the CNAME
        assert r.query("alias.example", "MX").exists
        assert not r.query("missing.example", "TXT").exists
        assert r.query("target.example", "A").records == ("192.0.2.1",)
