"""Published DKIM vectors: RFC 8463 Appendix A (Ed25519 + RSA dual-signed), through verify_dkim.

``rfc8463-a3.eml`` is the signed message of RFC 8463 A.3 and ``rfc8463-a2.zone`` the key
records of A.2, transcribed from the RFC. ``dkimpy-rfc6376.signed.msg`` is the same message
signed simple/simple, from dkimpy's test data (zlib licence). Both signatures of each must
pass, with the static resolver and with the real resolver against a loopback DNS server.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from authmilter.checks.dkim_body import BodyHasher, body_specs
from authmilter.checks.dkim_verify import verify_dkim
from authmilter.config import DkimConfig
from authmilter.dnsresolver import DnspythonResolver, Resolver
from authmilter.model import parse_message
from authmilter.results import Result
from authmilter.staticresolver import StaticResolver
from tests.support.dnsserver import DnsServer

DATA = Path(__file__).resolve().parent.parent / "data" / "dkim"
ZONE = DATA / "rfc8463-a2.zone"
VECTORS = {
    "rfc8463-a3.eml": ("/gCrinpc", "F45dVWDf"),
    "dkimpy-rfc6376.signed.msg": ("9/dsDChY", "icKcLSEZ"),
}


def _static() -> StaticResolver:
    resolver = StaticResolver()
    resolver.add_zone_file(ZONE)
    return resolver


def _check(name: str, resolver: Resolver, crlf: bool = False) -> list[tuple[object, ...]]:
    raw = (DATA / name).read_bytes()
    if crlf:
        raw = raw.replace(b"\n", b"\r\n")
    results = verify_dkim(parse_message(raw), resolver, DkimConfig())
    return [(r.result, r.algorithm, r.selector, r.domain, r.key_bits, r.header_b) for r in results]


def _expected(name: str) -> list[tuple[object, ...]]:
    ed_b, rsa_b = VECTORS[name]
    return [
        (Result.PASS, "ed25519-sha256", "brisbane", "football.example.com", 256, ed_b),
        (Result.PASS, "rsa-sha256", "test", "football.example.com", 1024, rsa_b),
    ]


@pytest.mark.parametrize("name", sorted(VECTORS))
@pytest.mark.parametrize("crlf", [False, True])
def test_vectors_pass_with_static_resolver(name: str, crlf: bool) -> None:
    assert _check(name, _static(), crlf) == _expected(name)


@pytest.mark.parametrize("name", sorted(VECTORS))
@pytest.mark.parametrize("chunk", [1, 7, 64, 65536])
def test_vectors_pass_with_the_body_streamed(name: str, chunk: int) -> None:
    tx = parse_message((DATA / name).read_bytes())
    hasher = BodyHasher(body_specs(tx.headers, DkimConfig().max_signatures))
    for i in range(0, len(tx.body), chunk):
        hasher.update(tx.body[i : i + chunk])
    streamed = replace(tx, body=b"", body_size=hasher.size, body_digests=hasher.digests())
    results = verify_dkim(streamed, _static(), DkimConfig())
    got = [(r.result, r.algorithm, r.selector, r.domain, r.key_bits, r.header_b) for r in results]
    assert got == _expected(name)


def test_zone_has_multi_string_key_records() -> None:
    answer = _static().query("test._domainkey.football.example.com", "TXT")
    assert len(answer.records) == 1
    assert len(answer.records[0]) > 1  # several character-strings, joined for DKIM


@pytest.mark.parametrize(
    ("old", "new", "results"),
    [
        (b"Are you hungry yet?", b"Are you hungry now?", [Result.FAIL, Result.FAIL]),
        (b"Subject: Is dinner ready?", b"Subject: Is lunch ready?", [Result.FAIL, Result.FAIL]),
        (b"a=rsa-sha256", b"a=rsa-sha1", [Result.PASS, Result.FAIL]),
    ],
)
def test_tampered_vector_does_not_pass(old: bytes, new: bytes, results: list[Result]) -> None:
    raw = (DATA / "rfc8463-a3.eml").read_bytes()
    assert old in raw
    got = verify_dkim(parse_message(raw.replace(old, new)), _static(), DkimConfig())
    assert [r.result for r in got] == results


def test_ed25519_key_of_the_other_signature_does_not_verify() -> None:
    resolver = StaticResolver()
    brisbane = _static().query("brisbane._domainkey.football.example.com", "TXT").txt()[0]
    resolver.add("brisbane._domainkey.football.example.com", "TXT", brisbane)
    resolver.add("test._domainkey.football.example.com", "TXT", brisbane)
    got = verify_dkim(parse_message((DATA / "rfc8463-a3.eml").read_bytes()), resolver, DkimConfig())
    assert [r.result for r in got] == [Result.PASS, Result.PERMERROR]  # k= does not match a=


@pytest.fixture
def dns_server() -> DnsServer:
    with DnsServer(ZONE) as server:
        yield server


@pytest.mark.parametrize("name", sorted(VECTORS))
def test_vectors_pass_over_real_dns(dns_server: DnsServer, name: str) -> None:
    resolver = DnspythonResolver([dns_server.address], timeout=3)
    assert _check(name, resolver) == _expected(name)
    assert dns_server.queries("brisbane._domainkey.football.example.com") >= 1


@pytest.mark.parametrize("fault", ["servfail", "timeout", "refused"])
def test_dns_trouble_on_a_key_is_temperror(dns_server: DnsServer, fault: str) -> None:
    dns_server.set_fault("test._domainkey.football.example.com", fault)
    resolver = DnspythonResolver([dns_server.address], timeout=0.5)
    got = verify_dkim(parse_message((DATA / "rfc8463-a3.eml").read_bytes()), resolver, DkimConfig())
    assert [r.result for r in got] == [Result.PASS, Result.TEMPERROR]


def test_missing_key_over_real_dns_is_permerror() -> None:
    with DnsServer('football.example.com. 300 IN TXT "v=spf1 -all"\n') as server:
        resolver = DnspythonResolver([server.address], timeout=3)
        got = verify_dkim(
            parse_message((DATA / "rfc8463-a3.eml").read_bytes()), resolver, DkimConfig()
        )
    assert [(r.result, r.reason[:6]) for r in got] == [(Result.PERMERROR, "no key")] * 2
