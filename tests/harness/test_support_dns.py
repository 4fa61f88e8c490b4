"""Self-tests of the loopback DNS server, queried through the real resolver."""

from __future__ import annotations

import socket
import struct
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import dns.flags
import dns.message
import dns.rcode
import pytest

from authmilter.dnsresolver import DnspythonResolver
from authmilter.errors import DnsTempError
from tests.support.dnsserver import DnsServer, split_long_strings
from tests.support.keys import new_rsa_key
from tests.support.mail import quoted, zone

pytestmark = pytest.mark.integration

ZONE = zone(
    "example.org",
    '@ TXT "v=spf1 ip4:192.0.2.0/24 -all"',
    "@ MX 10 mx.example.org.",
    "mx A 192.0.2.25",
    "www CNAME mx",
    "loop1 CNAME loop2",
    "loop2 CNAME loop1",
    '_dmarc TXT "v=DMARC1; p=reject"',
    '*.wild TXT "wildcard"',
)


@pytest.fixture
def server() -> Iterator[DnsServer]:
    with DnsServer(ZONE) as srv:
        yield srv


def resolver(server: DnsServer, timeout: float = 1.0) -> DnspythonResolver:
    return DnspythonResolver([server.address], timeout=timeout, cache_size=0)


def test_answer(server: DnsServer) -> None:
    r = resolver(server)
    assert r.query("example.org", "TXT").txt() == [b"v=spf1 ip4:192.0.2.0/24 -all"]
    assert r.query("mx.example.org", "A").records == ("192.0.2.25",)
    assert r.query("example.org", "MX").records == ((10, "mx.example.org"),)
    assert server.queries("example.org", "TXT") == 1


def test_nxdomain_and_nodata_differ(server: DnsServer) -> None:
    r = resolver(server)
    nx = r.query("nope.example.org", "TXT")
    assert nx.exists is False and nx.records == ()
    nodata = r.query("mx.example.org", "TXT")
    assert nodata.exists is True and nodata.records == ()
    # an empty non-terminal (only names below it exist) is NODATA, not NXDOMAIN
    assert r.query("wild.example.org", "TXT").exists is True
    # outside every zone: NXDOMAIN
    assert r.query("example.net", "A").exists is False


def test_cname_and_wildcard(server: DnsServer) -> None:
    r = resolver(server)
    assert r.query("www.example.org", "A").records == ("192.0.2.25",)
    assert r.query("anything.wild.example.org", "TXT").txt() == [b"wildcard"]


def test_cname_loop_is_not_an_answer(server: DnsServer) -> None:
    with pytest.raises(DnsTempError):
        resolver(server).query("loop1.example.org", "A")


def test_timeout_is_temperror(server: DnsServer) -> None:
    server.set_fault("slow.example.org", "timeout")
    with pytest.raises(DnsTempError):
        resolver(server, timeout=0.5).query("slow.example.org", "TXT")
    assert server.queries("slow.example.org", "TXT") >= 1
    server.clear_faults()
    assert resolver(server).query("slow.example.org", "TXT").exists is False


@pytest.mark.parametrize("fault", ["servfail", "refused"])
def test_servfail_and_refused_are_temperror(server: DnsServer, fault: str) -> None:
    server.set_fault("*.example.org", fault)
    with pytest.raises(DnsTempError):
        resolver(server).query("_dmarc.example.org", "TXT")
    # the parent itself is not covered by "*."
    assert resolver(server).query("example.org", "TXT").txt()


def test_long_txt_is_split_into_strings() -> None:
    text = "x" * 600
    assert split_long_strings(f'"{text}"') == " ".join(
        f'"{c}"' for c in ("x" * 255, "x" * 255, "x" * 90)
    )
    # escapes are never cut in half and count as one byte
    escaped = split_long_strings('"' + '\\"' * 300 + '"')
    assert escaped.startswith('"' + '\\"' * 255 + '" "')


def test_dkim_key_2048_over_udp_then_tcp(server: DnsServer) -> None:
    key = new_rsa_key(2048)
    server.add_zone(zone("example.org", f"sel._domainkey TXT {quoted(key.txt)}"))
    r = resolver(server)
    answer = r.query("sel._domainkey.example.org", "TXT")
    assert answer.txt() == [key.txt.encode()]
    assert all(len(s) <= 255 for s in answer.records[0])  # type: ignore[arg-type]
    udp_only = server.transport_count("tcp")
    # force truncation: the resolver must retry over TCP and still get the whole key
    server.set_fault("sel._domainkey.example.org", "truncate")
    assert resolver(server).query("sel._domainkey.example.org", "TXT").txt() == [key.txt.encode()]
    assert server.transport_count("tcp") == udp_only + 1


def test_big_answer_sets_tc_over_udp_without_edns(server: DnsServer) -> None:
    key = new_rsa_key(4096)
    server.add("big.example.org", "TXT", key.txt)
    query = dns.message.make_query("big.example.org", "TXT")  # no EDNS: 512-byte limit
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(2)
        s.sendto(query.to_wire(), ("127.0.0.1", server.port))
        reply = dns.message.from_wire(s.recv(65535))
    assert reply.flags & dns.flags.TC and not reply.answer
    with socket.create_connection(("127.0.0.1", server.port), timeout=2) as s:
        wire = query.to_wire()
        s.sendall(struct.pack("!H", len(wire)) + wire)
        length = struct.unpack("!H", s.recv(2))[0]
        data = b""
        while len(data) < length:
            data += s.recv(length - len(data))
    full = dns.message.from_wire(data)
    assert full.rcode() == dns.rcode.NOERROR
    assert b"".join(full.answer[0][0].strings) == key.txt.encode()


def test_bad_fault_name_is_refused() -> None:
    with pytest.raises(ValueError, match="fault must be one of"):
        DnsServer().set_fault("x.example", "explode")


def test_runs_as_a_process(tmp_path: Path) -> None:
    zone_file = tmp_path / "example.zone"
    zone_file.write_text(ZONE)
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.support.dnsserver", "--zone", str(zone_file)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        port = int(proc.stdout.readline())
        r = DnspythonResolver([f"127.0.0.1:{port}"], timeout=2)
        assert r.query("mx.example.org", "A").records == ("192.0.2.25",)
    finally:
        proc.terminate()
        assert proc.wait(10) == 0
