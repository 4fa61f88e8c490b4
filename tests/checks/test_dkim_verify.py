"""verify_dkim: every signature, each mapped to its RFC 8601 word (StaticResolver, real crypto)."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import dkim
import pytest

from authmilter.checks import dkim_verify
from authmilter.checks.dkim_body import BodyHasher, body_specs
from authmilter.checks.dkim_verify import verify_dkim
from authmilter.config import DkimConfig
from authmilter.dnsresolver import Answer
from authmilter.model import HeaderField, Transaction, parse_message
from authmilter.results import DkimResult, Result
from authmilter.staticresolver import StaticResolver
from tests.support import keys
from tests.support.keys import DkimKey, new_ed25519_key, new_rsa_key

DATA = Path(__file__).resolve().parent.parent / "data" / "dkim"

MESSAGE = (
    b"From: Alice <alice@example.com>\r\n"
    b"To: Bob <bob@example.net>\r\n"
    b"Subject: lunch\r\n"
    b"Date: Tue, 01 Dec 2026 10:00:00 +0000\r\n"
    b"Message-ID: <lunch-1@example.com>\r\n"
    b"\r\n"
    b"Shall we have lunch at noon?  \r\n"
    b"\r\n"
    b"Alice\r\n"
)


Key = DkimKey


def rsa_key(bits: int) -> Key:
    return new_rsa_key(bits)


def file_key(bits: int) -> Key:
    """Small RSA keys that current `cryptography` refuses to generate (openssl genrsa)."""
    return keys.file_key(DATA / f"rsa{bits}.key", DATA / f"rsa{bits}.pub", bits)


def ed_key() -> Key:
    return new_ed25519_key()


@pytest.fixture(scope="module")
def rsa2048() -> Key:
    return rsa_key(2048)


@pytest.fixture(scope="module")
def ed() -> Key:
    return ed_key()


class _Signer(dkim.DKIM):  # type: ignore[misc]
    """dkimpy's signer with extra tags (x=, a fixed t=) put into the signed field."""

    extra: Sequence[tuple[bytes, bytes]] = ()

    def gen_header(self, fields: list[tuple[bytes, bytes]], *args: Any, **kw: Any) -> Any:
        names = {k for k, _ in self.extra}
        fields[:] = [f for f in fields if f[0] not in names]
        pos = next(i for i, f in enumerate(fields) if f[0] == b"h")
        fields[pos:pos] = list(self.extra)
        return super().gen_header(fields, *args, **kw)


def sign(
    msg: bytes,
    key: Key,
    *,
    selector: str = "sel",
    domain: str = "example.com",
    extra: Sequence[tuple[bytes, bytes]] = (),
    algorithm: bytes | None = None,
    **kw: Any,
) -> bytes:
    """``msg`` with one more DKIM-Signature on top."""
    signer = _Signer(msg)
    signer.extra = extra
    header = signer.sign(
        selector.encode(),
        domain.encode(),
        key.private,
        signature_algorithm=algorithm or key.algorithm,
        **kw,
    )
    return bytes(header) + msg


def resolver_for(*published: tuple[str, Key], **kw: Any) -> StaticResolver:
    r = StaticResolver(**kw)
    for name, key in published:
        r.add(name, "TXT", key.record)
    return r


def check(msg: bytes, resolver: Any, **cfg: Any) -> tuple[DkimResult, ...]:
    now = cfg.pop("now", None)
    return verify_dkim(parse_message(msg), resolver, DkimConfig(**cfg), now=now)


def one(msg: bytes, resolver: Any, **cfg: Any) -> DkimResult:
    results = check(msg, resolver, **cfg)
    assert len(results) == 1
    return results[0]


SEL = "sel._domainkey.example.com"


# ----------------------------------------------------------------------------- passes


def test_no_signature_is_empty() -> None:
    assert verify_dkim(parse_message(MESSAGE), StaticResolver(), DkimConfig()) == ()


def test_rsa_2048_pass(rsa2048: Key) -> None:
    signed = sign(MESSAGE, rsa2048)
    r = one(signed, resolver_for((SEL, rsa2048)))
    b_value = dkim.util.parse_tag_value(parse_message(signed).headers[0].value)[b"b"]
    assert r.result is Result.PASS, r.reason
    assert (r.domain, r.selector, r.algorithm, r.identity) == (
        "example.com",
        "sel",
        "rsa-sha256",
        "@example.com",
    )
    assert r.header_b == b"".join(b_value.split()).decode()[:8]
    assert len(r.header_b) == 8
    assert r.key_bits == 2048
    assert r.body_length is None
    assert r.reason == ""


def test_ed25519_pass(ed: Key) -> None:
    r = one(sign(MESSAGE, ed, selector="ed"), resolver_for(("ed._domainkey.example.com", ed)))
    assert r.result is Result.PASS, r.reason
    assert (r.algorithm, r.selector, r.key_bits) == ("ed25519-sha256", "ed", 256)


def test_dual_signed_both_pass_in_message_order(rsa2048: Key, ed: Key) -> None:
    signed = sign(
        sign(MESSAGE, rsa2048, domain="example.com"), ed, selector="ed", domain="mail.example.com"
    )
    resolver = resolver_for((SEL, rsa2048), ("ed._domainkey.mail.example.com", ed))
    results = check(signed, resolver)
    assert [(r.result, r.algorithm, r.domain) for r in results] == [
        (Result.PASS, "ed25519-sha256", "mail.example.com"),  # the top field
        (Result.PASS, "rsa-sha256", "example.com"),
    ]


def test_one_good_one_bad_are_reported_separately(rsa2048: Key, ed: Key) -> None:
    signed = sign(sign(MESSAGE, rsa2048), ed, selector="ed")
    resolver = resolver_for((SEL, rsa2048))  # no key for the Ed25519 signature
    assert [r.result for r in check(signed, resolver)] == [Result.PERMERROR, Result.PASS]


def test_lf_only_input_through_parse_message(rsa2048: Key) -> None:
    lf = sign(MESSAGE, rsa2048).replace(b"\r\n", b"\n")
    assert b"\r" not in lf
    assert one(lf, resolver_for((SEL, rsa2048))).result is Result.PASS


def test_multi_string_txt_key_record(rsa2048: Key) -> None:
    record = rsa2048.record.encode()
    chunks = tuple(record[i : i + 100] for i in range(0, len(record), 100))
    assert len(chunks) > 2
    resolver = StaticResolver()
    resolver.add(SEL, "TXT", chunks)
    assert one(sign(MESSAGE, rsa2048), resolver).result is Result.PASS


def test_key_record_from_a_zone_file_with_several_strings(tmp_path: Path, rsa2048: Key) -> None:
    record = rsa2048.record
    strings = " ".join(f'"{record[i : i + 60]}"' for i in range(0, len(record), 60))
    zone = tmp_path / "z.zone"
    zone.write_text(f"{SEL}. 300 IN TXT ( {strings} )\n")
    resolver = StaticResolver()
    resolver.add_zone_file(zone)
    assert one(sign(MESSAGE, rsa2048), resolver).result is Result.PASS


def test_length_tag_with_appended_text_is_policy_never_pass(rsa2048: Key) -> None:
    signed = sign(MESSAGE, rsa2048, length=True)
    l_value = int(dkim.util.parse_tag_value(parse_message(signed).headers[0].value)[b"l"])
    whole = one(signed, resolver_for((SEL, rsa2048)))
    assert whole.result is Result.PASS
    assert whole.body_length == l_value
    assert "whole body" in whole.reason
    appended = signed + b"-- \r\nSent through a list: unsubscribe here\r\n"
    r = one(appended, resolver_for((SEL, rsa2048)))
    assert r.result is Result.POLICY, r.reason
    assert r.body_length == l_value
    assert "only" in r.reason and str(l_value) in r.reason


def test_u_label_domain_is_looked_up_as_a_label(rsa2048: Key) -> None:
    signed = sign(MESSAGE, rsa2048, domain="bücher.example")
    resolver = resolver_for(("sel._domainkey.xn--bcher-kva.example", rsa2048))
    r = one(signed, resolver)
    assert (r.result, r.domain) == (Result.PASS, "xn--bcher-kva.example"), r.reason
    assert resolver.queries == [("sel._domainkey.xn--bcher-kva.example", "TXT")]


# ----------------------------------------------------------------------------- fails


def test_modified_body_fails_with_body_hash_mismatch(rsa2048: Key) -> None:
    signed = sign(MESSAGE, rsa2048).replace(b"noon", b"one")
    r = one(signed, resolver_for((SEL, rsa2048)))
    assert (r.result, r.reason) == (Result.FAIL, "body hash mismatch")


def test_modified_signed_header_fails(rsa2048: Key) -> None:
    signed = sign(MESSAGE, rsa2048).replace(b"Subject: lunch", b"Subject: dinner")
    r = one(signed, resolver_for((SEL, rsa2048)))
    assert (r.result, r.reason) == (Result.FAIL, "signature did not verify")
    assert r.key_bits == 2048


def test_ed25519_modified_header_fails(ed: Key) -> None:
    signed = sign(MESSAGE, ed).replace(b"To: Bob", b"To: Eve")
    assert one(signed, resolver_for((SEL, ed))).result is Result.FAIL


def test_wrong_key_fails(rsa2048: Key) -> None:
    other = rsa_key(1024)
    r = one(sign(MESSAGE, rsa2048), resolver_for((SEL, other)))
    assert (r.result, r.key_bits) == (Result.FAIL, 1024)


def test_rsa_sha1_never_passes(rsa2048: Key) -> None:
    signed = sign(MESSAGE, rsa2048, algorithm=b"rsa-sha1")
    resolver = resolver_for((SEL, rsa2048))
    # dkimpy alone accepts it: the refusal is ours.
    assert dkim.verify(signed, dnsfunc=lambda name, timeout=5: rsa2048.record.encode())
    r = one(signed, resolver)
    assert (r.result, r.reason) == (Result.FAIL, "rsa-sha1 not accepted (RFC 8301)")
    assert r.algorithm == "rsa-sha1"
    assert resolver.queries == []  # refused before any DNS work


@pytest.mark.parametrize("bits", [512, 768])
def test_small_rsa_key_is_policy(bits: int) -> None:
    key = file_key(bits)
    r = one(sign(MESSAGE, key), resolver_for((SEL, key)))
    assert (r.result, r.reason, r.key_bits) == (Result.POLICY, f"key too small ({bits} bits)", bits)


def test_min_key_bits_never_below_1024() -> None:
    key = file_key(768)
    r = one(sign(MESSAGE, key), resolver_for((SEL, key)), min_key_bits=512)
    assert r.result is Result.POLICY


def test_min_key_bits_from_config(rsa2048: Key) -> None:
    r = one(sign(MESSAGE, rsa2048), resolver_for((SEL, rsa2048)), min_key_bits=3072)
    assert (r.result, r.reason) == (Result.POLICY, "key too small (2048 bits)")


def _expiring(key: Key, t: int, x: int) -> bytes:
    return sign(MESSAGE, key, extra=[(b"t", str(t).encode()), (b"x", str(x).encode())])


def test_expiry_in_the_future_passes(rsa2048: Key) -> None:
    now = int(time.time())
    signed = _expiring(rsa2048, now - 60, now + 3600)
    assert one(signed, resolver_for((SEL, rsa2048))).result is Result.PASS


@pytest.mark.parametrize("ago", [3600, 3 * 86400])  # 1 h: inside dkimpy's own 10 h slack
def test_expired_signature_fails(rsa2048: Key, ago: int) -> None:
    now = int(time.time())
    signed = _expiring(rsa2048, now - ago - 600, now - ago)
    r = one(signed, resolver_for((SEL, rsa2048)))
    assert (r.result, r.reason) == (Result.FAIL, "signature expired")


def test_expiry_uses_the_given_clock(rsa2048: Key) -> None:
    now = int(time.time())
    signed = _expiring(rsa2048, now - 60, now + 3600)
    r = one(signed, resolver_for((SEL, rsa2048)), now=now + 7200)
    assert (r.result, r.reason) == (Result.FAIL, "signature expired")


def test_expiry_before_timestamp_is_permerror(rsa2048: Key) -> None:
    now = int(time.time())
    signed = _expiring(rsa2048, now + 100, now + 50)
    assert one(signed, resolver_for((SEL, rsa2048))).result is Result.PERMERROR


# ----------------------------------------------------------------------------- DNS and keys


def test_key_timeout_is_temperror(rsa2048: Key) -> None:
    resolver = resolver_for((SEL, rsa2048), temperror=[SEL])
    r = one(sign(MESSAGE, rsa2048), resolver)
    assert r.result is Result.TEMPERROR
    assert "timed out" in r.reason


def test_unexpected_resolver_error_is_permerror_not_escaping(rsa2048: Key) -> None:
    class Broken:
        def query(self, name: str, rdtype: str, timeout: float | None = None) -> Answer:
            raise RuntimeError("resolver bug")

    r = one(sign(MESSAGE, rsa2048), Broken())
    assert r.result is Result.PERMERROR
    assert "resolver bug" in r.reason


def test_dns_goes_through_our_resolver_only(rsa2048: Key, monkeypatch: pytest.MonkeyPatch) -> None:
    def forbidden(*a: Any, **kw: Any) -> None:
        raise AssertionError("dkimpy's own DNS was used")

    monkeypatch.setattr(dkim, "get_txt", forbidden)
    resolver = resolver_for((SEL, rsa2048))
    assert one(sign(MESSAGE, rsa2048), resolver).result is Result.PASS
    assert resolver.queries == [(SEL, "TXT")]


@pytest.mark.parametrize(
    ("records", "reason"),
    [
        ([], "no key"),  # NXDOMAIN
        (["v=spf1 -all", "v=DKIM1; p=AAAA"], "multiple key records"),
    ],
)
def test_missing_or_ambiguous_key_is_permerror(
    rsa2048: Key, records: list[str], reason: str
) -> None:
    resolver = StaticResolver()
    if records:
        resolver.add(SEL, "TXT", *records)
    r = one(sign(MESSAGE, rsa2048), resolver)
    assert r.result is Result.PERMERROR
    assert r.reason.startswith(reason)


def test_nodata_key_is_permerror_no_key(rsa2048: Key) -> None:
    resolver = StaticResolver()
    resolver.add("other.sel._domainkey.example.com", "TXT", "x")  # SEL exists, no TXT
    assert resolver.query(SEL, "TXT").exists
    r = one(sign(MESSAGE, rsa2048), resolver)
    assert (r.result, r.reason.startswith("no key")) == (Result.PERMERROR, True)


def _spki(key: Key) -> str:
    return key.record.rpartition("p=")[2]


KEY_RECORDS = [  # (record made from the good key's p=, result, reason prefix)
    ("v=DKIM1; k=rsa; p=", Result.PERMERROR, "key revoked"),
    ("v=DKIM1; k=rsa", Result.PERMERROR, "key record has no p="),
    ("v=DKIM1; k=rsa; p={p}; p={p}", Result.PERMERROR, "bad key record syntax"),
    ("v=DKIM1; k=rsa; junk; p={p}", Result.PERMERROR, "bad key record syntax"),
    ("v=DKIM2; k=rsa; p={p}", Result.PERMERROR, "bad key record version"),
    ("v=DKIM1; k=dsa; p={p}", Result.PERMERROR, "unknown key type k=dsa"),
    ("v=DKIM1; k=ed25519; p={p}", Result.PERMERROR, "key type k=ed25519 does not match"),
    ("v=DKIM1; k=rsa; h=sha1; p={p}", Result.PERMERROR, "key does not allow sha256"),
    ("v=DKIM1; k=rsa; s=tlsrpt; p={p}", Result.PERMERROR, "key is not for email"),
    ("v=DKIM1; k=rsa; p=!!notbase64!!", Result.PERMERROR, "unusable key"),
    ("v=DKIM1; k=rsa; p=QUJDRA==", Result.PERMERROR, "unusable key"),
    ("v=DKIM1; k=rsa; h=sha1:sha256; s=email; t=y; p={p}", Result.PASS, ""),
    ("k=rsa; s=*; p={p}", Result.PASS, ""),
    ("p={p}", Result.PASS, ""),  # v= and k= are optional
]


@pytest.mark.parametrize(("template", "result", "reason"), KEY_RECORDS)
def test_key_record_table(rsa2048: Key, template: str, result: Result, reason: str) -> None:
    resolver = StaticResolver()
    resolver.add(SEL, "TXT", template.format(p=_spki(rsa2048)))
    r = one(sign(MESSAGE, rsa2048), resolver)
    assert r.result is result, r.reason
    assert r.reason.startswith(reason), r.reason


def test_ed25519_key_with_bad_point_is_permerror(ed: Key) -> None:
    resolver = StaticResolver()
    resolver.add(SEL, "TXT", "v=DKIM1; k=ed25519; p=QUJDRA==")
    r = one(sign(MESSAGE, ed), resolver)
    assert (r.result, r.reason.startswith("unusable key")) == (Result.PERMERROR, True)


def test_key_t_s_forbids_subdomain_identity(rsa2048: Key) -> None:
    signed = sign(MESSAGE, rsa2048, identity=b"alice@mail.example.com")
    resolver = StaticResolver()
    resolver.add(SEL, "TXT", f"v=DKIM1; t=s; p={_spki(rsa2048)}")
    r = one(signed, resolver)
    assert r.result is Result.PERMERROR
    assert r.identity == "alice@mail.example.com"
    resolver2 = StaticResolver()
    resolver2.add(SEL, "TXT", f"v=DKIM1; t=y; p={_spki(rsa2048)}")
    assert one(signed, resolver2).result is Result.PASS


# ----------------------------------------------------------------------------- malformed


def _replace_tag(signed: bytes, old: bytes, new: bytes) -> bytes:
    head, sep, rest = signed.partition(b"\r\nFrom: ")
    assert old in head, (old, head)
    return head.replace(old, new, 1) + sep + rest


@pytest.mark.parametrize(
    ("old", "new", "reason"),
    [
        (b"bh=", b"xh=", "missing tag bh="),
        (b"v=1;", b"v=2;", "unsupported version"),
        (b"a=rsa-sha256", b"a=rsa-sha512", "unknown algorithm a=rsa-sha512"),
        (b"d=example.com", b"d=exa(mple.com", "bad d= or s="),
        (b"s=sel", b"s=", "bad d= or s="),
        (b"v=1;", b"v=1; garbage;", "bad tag list"),
        (b"v=1;", b"v=1; a=rsa-sha256;", "bad tag list"),  # duplicate tag
        (b"c=relaxed/simple", b"c=fuzzy/simple", "invalid c="),
        (b"i=@example.com", b"i=@example.org", "i= domain"),
        (b"q=dns/txt", b"q=http", "q= value"),
        (b"t=", b"t=12a", "t= is not a number"),
    ],
)
def test_malformed_signature_is_permerror(
    rsa2048: Key, old: bytes, new: bytes, reason: str
) -> None:
    signed = _replace_tag(sign(MESSAGE, rsa2048), old, new)
    r = one(signed, resolver_for((SEL, rsa2048)))
    assert r.result is Result.PERMERROR
    assert reason in r.reason, r.reason


def test_empty_s_tag_is_permerror_without_dns(rsa2048: Key) -> None:
    signed = _replace_tag(sign(MESSAGE, rsa2048), b"s=sel", b"s=")
    resolver = resolver_for((SEL, rsa2048))
    assert one(signed, resolver).result is Result.PERMERROR
    assert resolver.queries == []


def test_from_not_signed_is_permerror(rsa2048: Key) -> None:
    signed = sign(MESSAGE, rsa2048, include_headers=[b"from", b"subject"])
    signed = _replace_tag(signed, b"h=from : subject", b"h=subject")
    r = one(signed, resolver_for((SEL, rsa2048)))
    assert (r.result, r.reason) == (Result.PERMERROR, "From not signed (RFC 6376 6.1.1)")


def test_unparseable_tag_list_keeps_going(rsa2048: Key) -> None:
    broken = b"DKIM-Signature: this is not a tag list\r\n" + sign(MESSAGE, rsa2048)
    results = check(broken, resolver_for((SEL, rsa2048)))
    assert [r.result for r in results] == [Result.PERMERROR, Result.PASS]
    assert results[0].domain == ""


# ----------------------------------------------------------------------------- limits


def test_signatures_beyond_the_cap_are_not_verified(rsa2048: Key) -> None:
    msg = MESSAGE
    for n in range(7):
        msg = sign(msg, rsa2048, selector=f"s{n}")
    resolver = StaticResolver()
    for n in range(7):
        resolver.add(f"s{n}._domainkey.example.com", "TXT", rsa2048.record)
    results = check(msg, resolver, max_signatures=5)
    assert len(results) == 6
    # dkimpy never signs DKIM-Signature fields, so all seven are independently valid.
    assert [r.result for r in results[:5]] == [Result.PASS] * 5
    assert [r.selector for r in results[:5]] == [f"s{n}" for n in reversed(range(2, 7))]
    assert (results[5].result, results[5].reason) == (
        Result.POLICY,
        "2 more signatures not verified (limit 5)",
    )
    assert len(resolver.queries) == 5


def test_body_too_large_is_neutral_and_not_verified(rsa2048: Key) -> None:
    signed = sign(MESSAGE, rsa2048)
    size = len(parse_message(signed).body)
    resolver = resolver_for((SEL, rsa2048))
    r = one(signed, resolver, max_body_bytes=size - 1)
    assert (r.result, r.reason) == (Result.NEUTRAL, f"message too large to verify ({size} bytes)")
    assert resolver.queries == []
    assert one(signed, resolver, max_body_bytes=size).result is Result.PASS


def test_body_too_large_does_not_build_the_message(
    rsa2048: Key, monkeypatch: pytest.MonkeyPatch
) -> None:
    def boom(self: Transaction) -> bytes:
        raise AssertionError("raw_message built for a message that is too large")

    monkeypatch.setattr(Transaction, "raw_message", boom)
    assert one(sign(MESSAGE, rsa2048), StaticResolver(), max_body_bytes=10).result is (
        Result.NEUTRAL
    )


def test_signatures_are_verified_without_dkimpy(
    rsa2048: Key, ed: Key, monkeypatch: pytest.MonkeyPatch
) -> None:
    def forbidden(*a: Any, **kw: Any) -> None:
        raise AssertionError("dkimpy's verifier was used")

    signed = sign(sign(MESSAGE, rsa2048), ed, selector="ed")
    monkeypatch.setattr(dkim.DKIM, "__init__", forbidden)
    monkeypatch.setattr(dkim.DKIM, "verify", forbidden)
    resolver = resolver_for((SEL, rsa2048), ("ed._domainkey.example.com", ed))
    assert [r.result for r in check(signed, resolver)] == [Result.PASS, Result.PASS]


def test_unexpected_crypto_exception_is_permerror(
    rsa2048: Key, monkeypatch: pytest.MonkeyPatch
) -> None:
    def explode(*a: Any, **kw: Any) -> bool:
        raise ZeroDivisionError("crypto bug")

    monkeypatch.setattr(dkim_verify, "verify_signature", explode)
    r = one(sign(MESSAGE, rsa2048), resolver_for((SEL, rsa2048)))
    assert r.result is Result.PERMERROR
    assert "crypto bug" in r.reason


def test_unexpected_error_preparing_the_message_is_permerror(
    rsa2048: Key, monkeypatch: pytest.MonkeyPatch
) -> None:
    signed = sign(MESSAGE, rsa2048)

    def explode(*a: Any, **kw: Any) -> None:
        raise MemoryError("out of memory hashing")

    monkeypatch.setattr(dkim_verify, "hash_body", explode)
    r = one(signed, resolver_for((SEL, rsa2048)))
    assert (r.result, r.reason) == (Result.PERMERROR, "internal error: out of memory hashing")


def test_header_dkimpy_cannot_parse_is_permerror(rsa2048: Key) -> None:
    signed = sign(MESSAGE, rsa2048)
    # A field name with a byte outside %x21-7E: parse_message keeps it, the verifier refuses
    # the message (as dkimpy does).
    weird = signed.replace(b"To: Bob", b"X-\xffWeird: 1\r\nTo: Bob")
    assert len(parse_message(weird).headers) == len(parse_message(signed).headers) + 1
    r = one(weird, resolver_for((SEL, rsa2048)))
    assert r.result is Result.PERMERROR
    assert r.reason.startswith("message unparseable")


def _streamed(tx: Transaction) -> Transaction:
    """The body replaced by its digests, as the adapter hands over a streamed body."""
    hasher = BodyHasher(body_specs(tx.headers, 5))
    hasher.update(tx.body)
    return replace(tx, body=b"", body_size=len(tx.body), body_digests=hasher.digests())


def test_precomputed_digest_is_used_when_the_body_was_not_kept(rsa2048: Key) -> None:
    tx = _streamed(parse_message(sign(MESSAGE, rsa2048, length=True)))
    assert not tx.body_kept and tx.body == b""
    r = verify_dkim(tx, resolver_for((SEL, rsa2048)), DkimConfig())[0]
    assert (r.result, r.reason.startswith("l= signs the whole body")) == (Result.PASS, True)
    size = tx.size
    r = verify_dkim(tx, resolver_for((SEL, rsa2048)), DkimConfig(max_body_bytes=size - 1))[0]
    assert (r.result, r.reason) == (Result.NEUTRAL, f"message too large to verify ({size} bytes)")


def test_precomputed_digest_wins_over_the_body(rsa2048: Key) -> None:
    tx = parse_message(sign(MESSAGE, rsa2048))
    wrong = replace(_streamed(tx), body=tx.body, body_size=None)
    wrong = replace(
        wrong, body_digests=tuple(replace(d, digest=b"x" * 32) for d in wrong.body_digests)
    )
    r = verify_dkim(wrong, resolver_for((SEL, rsa2048)), DkimConfig())[0]
    assert (r.result, r.reason) == (Result.FAIL, "body hash mismatch")


def test_body_not_kept_and_no_digest_is_neutral_without_dns(rsa2048: Key) -> None:
    tx = replace(parse_message(sign(MESSAGE, rsa2048)), body=b"", body_size=100)
    resolver = resolver_for((SEL, rsa2048))
    r = verify_dkim(tx, resolver, DkimConfig())[0]
    assert (r.result, r.reason) == (Result.NEUTRAL, "body hash not computed")
    assert resolver.queries == []


@pytest.mark.parametrize(
    ("old", "new", "reason"),
    [
        (b"b=", b"b=!!", "b= value is not valid base64"),
        (b"bh=", b"bh=A", "bh= value is not valid base64"),
        (b"t=", b"t=9", "t= value is in the future"),
        (b"q=dns/txt", b"q=dns", "q= value"),
    ],
)
def test_more_malformed_signatures(rsa2048: Key, old: bytes, new: bytes, reason: str) -> None:
    signed = sign(MESSAGE, rsa2048)
    head, sep, rest = signed.partition(b"\r\nFrom: ")
    head = re.sub(rb"([; ])" + re.escape(old), rb"\g<1>" + new, head, count=1)
    r = one(head + sep + rest, resolver_for((SEL, rsa2048)))
    assert r.result is Result.PERMERROR
    assert reason in r.reason, r.reason


def test_i_subdomain_of_d_passes(rsa2048: Key) -> None:
    signed = sign(MESSAGE, rsa2048, identity=b"alice@mail.example.com")
    assert one(signed, resolver_for((SEL, rsa2048))).result is Result.PASS


def test_q_list_with_dns_txt_is_accepted(rsa2048: Key) -> None:
    # q= is signed, so a changed q= cannot pass: check the judgement itself.
    field = parse_message(sign(MESSAGE, rsa2048)).headers[0]
    listed = HeaderField(field.name, field.value.replace(b"q=dns/txt", b"q=dns/txt:other/x"))
    assert listed.value != field.value
    assert dkim_verify._precheck(dkim_verify._parse(listed), time.time()) is None
    only_other = HeaderField(field.name, field.value.replace(b"q=dns/txt", b"q=other/x"))
    early = dkim_verify._precheck(dkim_verify._parse(only_other), time.time())
    assert early is not None and early.result is Result.PERMERROR


# ----------------------------------------------------------------------------- the table


@dataclass(frozen=True)
class Case:
    name: str
    result: Result
    reason: str  # prefix


def _table_cases(rsa2048: Key, ed: Key) -> Iterator[tuple[Case, bytes, StaticResolver]]:
    now = int(time.time())
    good = resolver_for((SEL, rsa2048))
    signed = sign(MESSAGE, rsa2048)
    yield Case("valid", Result.PASS, ""), signed, good
    yield (Case("ed25519 valid", Result.PASS, ""), sign(MESSAGE, ed), resolver_for((SEL, ed)))
    yield (
        Case("header changed", Result.FAIL, "signature did not verify"),
        signed.replace(b"lunch\r\n", b"brunch\r\n", 1),
        good,
    )
    yield (Case("body changed", Result.FAIL, "body hash mismatch"), signed + b"P.S.\r\n", good)
    yield (
        Case("key timeout", Result.TEMPERROR, "key lookup failed"),
        signed,
        resolver_for((SEL, rsa2048), temperror=["*._domainkey.example.com"]),
    )
    yield Case("no key", Result.PERMERROR, "no key"), signed, StaticResolver()
    revoked = StaticResolver({(SEL, "TXT"): ["v=DKIM1; p="]})
    yield Case("revoked key", Result.PERMERROR, "key revoked"), signed, revoked
    bad = StaticResolver({(SEL, "TXT"): ["v=DKIM1; k=rsa; p=%%%"]})
    yield Case("bad key", Result.PERMERROR, "unusable key"), signed, bad
    yield (
        Case("malformed", Result.PERMERROR, "missing tag bh="),
        _replace_tag(signed, b"bh=", b"xh="),
        good,
    )
    yield (
        Case("expired", Result.FAIL, "signature expired"),
        _expiring(rsa2048, now - 7200, now - 3600),
        good,
    )
    yield (
        Case("rsa-sha1", Result.FAIL, "rsa-sha1 not accepted (RFC 8301)"),
        sign(MESSAGE, rsa2048, algorithm=b"rsa-sha1"),
        good,
    )
    small = file_key(512)
    yield (
        Case("512-bit key", Result.POLICY, "key too small (512 bits)"),
        sign(MESSAGE, small),
        resolver_for((SEL, small)),
    )
    yield (
        Case("l= partial", Result.POLICY, "l= signs only"),
        sign(MESSAGE, rsa2048, length=True) + b"footer\r\n",
        good,
    )


def test_result_mapping_table(rsa2048: Key, ed: Key) -> None:
    seen: dict[str, tuple[Result, str]] = {}
    for case, msg, resolver in _table_cases(rsa2048, ed):
        r = one(msg, resolver)
        seen[case.name] = (r.result, r.reason)
        assert r.result is case.result, (case.name, r)
        assert r.reason.startswith(case.reason), (case.name, r.reason)
    assert len(seen) == 13
    assert [name for name, (res, _) in seen.items() if res is Result.PASS] == [
        "valid",
        "ed25519 valid",
    ]
