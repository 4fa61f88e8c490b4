"""The resolver seam: static answers, zone files, the three outcomes kept apart."""

from __future__ import annotations

from pathlib import Path

import pytest

from authmilter.dnsresolver import DnspythonResolver, StaticResolver, parse_nameserver
from authmilter.errors import ConfigError, DnsTempError


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
    import socket

    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", 0))  # a port that swallows queries: nothing answers
    port = s.getsockname()[1]
    try:
        r = DnspythonResolver([f"127.0.0.1:{port}"], timeout=0.3)
        with pytest.raises(DnsTempError, match="timed out"):
            r.query("example.com", "TXT")
    finally:
        s.close()
