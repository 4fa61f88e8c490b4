"""Zone files for ``authmilter test --zone``: real BIND-style zones (SOA, NS, $ORIGIN), several
zones at once, files without an SOA, and a zone exported from the test DNS server."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import dns.rdata
import dns.rdataclass
import dns.rdatatype
import pytest

from authmilter.cli import main
from authmilter.dnsresolver import SUPPORTED_TYPES, DnspythonResolver
from authmilter.errors import ConfigError
from authmilter.staticresolver import StaticResolver
from tests.support.dnsserver import DnsServer

REPO = Path(__file__).resolve().parents[2]
EX = REPO / "conf" / "examples"
SOA = "ns1 hostmaster ( 2024010101 ; serial\n        7200 3600 1209600 300 )"

BIND_ZONE = f"""; example.org, as BIND or NSD would load it
$TTL 1h
$ORIGIN example.org.
@               IN SOA {SOA}
                IN NS ns1
                IN NS ns2.example.net.
                IN MX 10 mail
                IN TXT "v=spf1 " "ip4:192.0.2.25 -all"
ns1             IN A 192.0.2.53
mail       300  IN A 192.0.2.25
                IN AAAA 2001:db8::25
www             IN CNAME mail
_dmarc          IN TXT "v=DMARC1; p=reject"
sel._domainkey  IN TXT ( "v=DKIM1; k=rsa; "
                         "p=MIIB" )
$ORIGIN sub.example.org.
host            IN A 192.0.2.26
outside.example.net. IN A 192.0.2.99 ; out of the zone: ignored, as BIND does
"""


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_bind_zone_with_soa_ns_origin_ttl_and_relative_names(tmp_path: Path) -> None:
    r = StaticResolver()
    r.add_zone_file(write(tmp_path, "db.example.org", BIND_ZONE))
    assert r.query("example.org", "TXT").txt() == [b"v=spf1 ip4:192.0.2.25 -all"]
    assert sorted(r.query("example.org", "NS").records) == ["ns1.example.org", "ns2.example.net"]
    assert r.query("example.org", "MX").records == ((10, "mail.example.org"),)
    assert r.query("mail.example.org", "AAAA").records == ("2001:db8::25",)  # owner left out
    assert r.query("www.example.org", "A").records == ("192.0.2.25",)  # through the CNAME
    assert r.query("_dmarc.example.org", "TXT").txt() == [b"v=DMARC1; p=reject"]
    assert r.query("sel._domainkey.example.org", "TXT").txt() == [b"v=DKIM1; k=rsa; p=MIIB"]
    assert r.query("host.sub.example.org", "A").records == ("192.0.2.26",)
    assert not r.query("outside.example.net", "A").exists


def test_soa_owner_is_the_origin_when_there_is_no_origin_line(tmp_path: Path) -> None:
    text = "example.com. 3600 IN SOA ns1.example.com. h.example.com. 1 2 3 4 5\n"
    text += "www 300 IN A 192.0.2.1\n"  # relative to the SOA owner
    r = StaticResolver()
    r.add_zone_file(write(tmp_path, "example.com.zone", text))
    assert r.query("www.example.com", "A").records == ("192.0.2.1",)


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        (
            f"$TTL 300\n@ IN SOA {SOA}\n",
            "2: bad zone file: the SOA owner is relative and no \\$ORIGIN is set",
        ),
        (
            f"$ORIGIN a.example.\n@ 300 IN SOA {SOA}\n$ORIGIN b.example.\n@ 300 IN SOA {SOA}\n",
            r"5: bad zone file: an SOA of another zone than line 2's \(give one zone per file\)",
        ),
        ("$ORIGIN example.org.\n@ 300 IN TXT\n", "3: bad zone file: Text input ended unexpectedly"),
        ("$ORIGIN example.org.\n@ 300 IN BOGUS x\n", "2: bad zone file: unknown record type$"),
    ],
)
def test_bad_zone_files_name_the_file_and_the_problem(
    tmp_path: Path, text: str, problem: str
) -> None:
    path = write(tmp_path, "broken.zone", text)
    with pytest.raises(ConfigError, match=rf"broken\.zone:{problem}"):
        StaticResolver().add_zone_file(path)


def test_not_utf8_is_a_config_error(tmp_path: Path) -> None:
    path = tmp_path / "latin1.zone"
    path.write_bytes(b'x.example. 300 IN TXT "caf\xe9"\n')
    with pytest.raises(ConfigError, match=r"latin1\.zone:1: zone file is not UTF-8 text"):
        StaticResolver().add_zone_file(path)


def test_several_zone_files_with_different_origins(tmp_path: Path) -> None:
    other = f'$ORIGIN example.com.\n$TTL 300\n@ IN SOA {SOA}\n@ IN NS ns1\n@ IN TXT "v=spf1 -all"\n'
    r = StaticResolver()
    r.add_zone_file(write(tmp_path, "db.example.org", BIND_ZONE))
    r.add_zone_file(write(tmp_path, "db.example.com", other))
    r.add_zone_file(EX / "example.net.zone")  # no SOA: kept working
    r.add_zone_file(REPO / "tests" / "data" / "dkim" / "rfc8463-a2.zone")
    assert r.query("example.org", "MX").records == ((10, "mail.example.org"),)
    assert r.query("example.com", "TXT").txt() == [b"v=spf1 -all"]
    assert r.query("example.com", "NS").records == ("ns1.example.com",)
    assert r.query("mail.example.net", "A").records == ("192.0.2.25",)
    assert r.query("brisbane._domainkey.football.example.com", "TXT").exists
    assert not r.query("nope.example.com", "TXT").exists


# ------------------------------------------------------------------ the test DNS server

SERVER_ZONE = """
example.com.                    300 IN TXT "v=spf1 mx include:_spf.example.com -all"
example.com.                    300 IN MX 10 mx.example.com.
example.com.                    300 IN NS ns1.example.com.
mx.example.com.                 300 IN A 203.0.113.5
mx.example.com.                 300 IN AAAA 2001:db8::5
_spf.example.com.               300 IN CNAME spf-real.example.com.
spf-real.example.com.           300 IN TXT "v=spf1 ip4:198.51.100.0/24 " "ip6:2001:db8::/64 -all"
k1._domainkey.example.com.      300 IN TXT "v=DKIM1; p=LONG"
7.113.0.203.in-addr.arpa.       300 IN PTR mx.example.com.
example.net.                    300 IN TXT "v=spf1 -all"
"""
QUESTIONS = [
    "example.com",
    "mx.example.com",
    "_spf.example.com",
    "spf-real.example.com",
    "k1._domainkey.example.com",
    "_domainkey.example.com",  # empty non-terminal: NODATA
    "nx.example.com",  # NXDOMAIN
    "7.113.0.203.in-addr.arpa",
    "example.net",
]


@pytest.fixture
def server() -> Iterator[DnsServer]:
    with DnsServer(SERVER_ZONE.replace("LONG", "A" * 600)) as srv:  # 600: several strings
        yield srv


def same_answers(server: DnsServer, static: StaticResolver, names: list[str]) -> None:
    live = DnspythonResolver([server.address], timeout=2, cache_size=0)
    for name in names:
        for rdtype in SUPPORTED_TYPES:
            want, got = live.query(name, rdtype), static.query(name, rdtype)
            assert (got.exists, sorted(got.records)) == (want.exists, sorted(want.records)), (
                name,
                rdtype,
            )


def test_zone_exported_from_the_test_server_answers_the_same(
    server: DnsServer, tmp_path: Path
) -> None:
    text = server.to_zone().to_text(relativize=False)  # type: ignore[no-untyped-call]
    static = StaticResolver()
    static.add_zone_file(write(tmp_path, "export.zone", text))
    same_answers(server, static, QUESTIONS)


def test_exported_zone_with_soa_and_origin_answers_the_same(
    server: DnsServer, tmp_path: Path
) -> None:
    zone = server.to_zone("example.com")
    soa = dns.rdata.from_text(
        dns.rdataclass.IN, dns.rdatatype.SOA, "ns1.example.com. h.example.com. 1 7200 3600 9 300"
    )
    with zone.writer() as txn:
        txn.add(zone.origin, 3600, soa)
    text = zone.to_text(want_origin=True)  # type: ignore[no-untyped-call]
    assert "$ORIGIN example.com." in text and " SOA " in text
    static = StaticResolver()
    static.add_zone_file(write(tmp_path, "example.com.zone", text))
    same_answers(server, static, [n for n in QUESTIONS if n.endswith("example.com")])


# ------------------------------------------------------------------ authmilter test --zone


def test_cli_test_takes_bind_zones_of_two_origins(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    sample = (EX / "example.net.zone").read_text()
    net = write(
        tmp_path,
        "db.example.net",
        sample.replace("$TTL 300\n", f"$TTL 300\n@ IN SOA {SOA}\n@ IN NS ns1\n"),
    )
    org = write(tmp_path, "db.example.org", BIND_ZONE)
    args = ["test", "--json", "--zone", str(net), "--zone", str(org), "--client-ip", "192.0.2.25"]
    assert main([*args, "--mail-from", "a@example.org", str(EX / "signed.eml")]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["spf"]["result"] == "pass" and result["spf"]["domain"] == "example.org"
    assert [d["result"] for d in result["dkim"]] == ["pass", "pass"]  # keys from db.example.net
    assert result["dmarc"]["result"] == "pass"
