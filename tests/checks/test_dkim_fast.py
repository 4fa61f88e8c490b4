"""The OpenSSL/streaming verifier against dkimpy's ``verify`` as the oracle.

Every variant is signed with dkimpy (both canonicalisations for header and body, ``l=``,
RSA-1024/2048 and Ed25519), optionally tampered with, and then verified three ways:
dkimpy, ``verify_dkim`` on the kept body, and ``verify_dkim`` on digests streamed
through BodyHasher in chunks. All three must agree, pass or not.
"""

from __future__ import annotations

import base64
import itertools
import random
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import dkim
import nacl.signing
import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from authmilter.checks import dkim_verify
from authmilter.checks.dkim_body import BodyHasher, body_specs
from authmilter.checks.dkim_crypto import KeyFormatError, load_public_key, verify_signature
from authmilter.checks.dkim_header import strip_b_value
from authmilter.checks.dkim_verify import verify_dkim
from authmilter.config import DkimConfig
from authmilter.model import Transaction, parse_message
from authmilter.results import Result
from authmilter.staticresolver import StaticResolver
from tests.support.keys import DkimKey, new_ed25519_key, new_rsa_key

SEL = "sel._domainkey.example.com"


Key = DkimKey


def _rsa(bits: int) -> Key:
    return new_rsa_key(bits)


def _ed() -> Key:
    return new_ed25519_key(bytes(range(32)))


@pytest.fixture(scope="module")
def keys() -> list[Key]:
    return [_rsa(1024), _rsa(2048), _ed()]


HEADERS = (
    b"Received: from a.example by b.example; Tue, 01 Dec 2026 10:00:00 +0000\r\n"
    b"Received: from c.example\r\n\tby d.example; Tue, 01 Dec 2026 09:59:00 +0000\r\n"
    b"From: Alice <alice@example.com>\r\n"
    b"to: Bob <bob@example.net>,\r\n  Carol   <carol@example.net>\r\n"
    b"SUBJECT:   a  long\r\n\t subject\t \r\n  folded   over\r\n three lines  \r\n"
    b"Date: Tue, 01 Dec 2026 10:00:00 +0000\r\n"
    b"Message-ID: <m1@example.com>\r\n"
    b"X-Empty:\r\n"
    b"X-Tabs:\t\tvalue\t\r\n"
)

BODIES = {
    "plain": b"Hello.\r\n\r\nBye.\r\n",
    "trailing blank lines": b"text\r\n\r\n\r\n\r\n",
    "wsp at line ends": b"one \t\r\ntwo  \r\n  \r\n\tthree\t\r\n",
    "empty": b"",
    "only empty lines": b"\r\n\r\n",
    "no final crlf": b"first\r\nlast line",
    "no final crlf, trailing wsp": b"first\r\nlast  ",
    "lone cr": b"a\rb\r\n",
    "long": b"".join(b"line %d  with\t tabs \r\n" % i for i in range(300)),
}

INCLUDE = {
    "default": None,
    "repeated received": [b"from", b"to", b"subject", b"received", b"received"],
    "oversigned": [b"from", b"from", b"subject", b"subject", b"to", b"date"],
    "missing entries": [b"from", b"reply-to", b"cc", b"subject", b"x-empty", b"x-tabs"],
    "three received (one missing)": [b"received", b"received", b"received", b"from"],
}

CANONS = [(h, b) for h in (b"simple", b"relaxed") for b in (b"simple", b"relaxed")]


class _UpperH(dkim.DKIM):  # type: ignore[misc]
    """Writes h= in upper case (the names are matched case-insensitively)."""

    def gen_header(self, fields: list[tuple[bytes, bytes]], *args: Any, **kw: Any) -> Any:
        fields[:] = [(k, v.upper() if k == b"h" else v) for k, v in fields]
        return super().gen_header(fields, *args, **kw)


def sign(
    msg: bytes, key: Key, *, upper_h: bool = False, selector: bytes = b"sel", **kw: Any
) -> bytes:
    signer = (_UpperH if upper_h else dkim.DKIM)(msg)
    signer.should_not_sign = set(signer.should_not_sign) - {b"received"}
    alg = key.algorithm
    header = signer.sign(selector, b"example.com", key.private, signature_algorithm=alg, **kw)
    return bytes(header) + msg


def dkimpy_says(raw: bytes, key: Key) -> bool:
    d = dkim.DKIM(raw, minkey=1024)
    try:
        return bool(d.verify(idx=0, dnsfunc=lambda name, timeout=5: key.record.encode()))
    except dkim.ValidationError:  # body hash mismatch
        return False


def ours(tx: Transaction, key: Key) -> Result:
    """Our verdict, in dkimpy's terms: a valid l= signature that leaves part of the body
    unsigned is a cryptographic pass for dkimpy and ``policy`` for us (never a pass)."""
    resolver = StaticResolver()
    resolver.add(SEL, "TXT", key.record)
    (r,) = verify_dkim(tx, resolver, DkimConfig())
    if r.result is Result.POLICY and r.reason.startswith("l= signs only"):
        return Result.PASS
    return r.result


def streamed(tx: Transaction, cuts: list[int]) -> Transaction:
    """``tx`` as the adapter will hand it over: digests streamed in chunks, body dropped."""
    hasher = BodyHasher(body_specs(tx.headers, 5))
    last = 0
    for cut in [*cuts, len(tx.body)]:
        hasher.update(tx.body[last:cut])
        last = cut
    return replace(tx, body=b"", body_size=hasher.size, body_digests=hasher.digests())


def _tamper(signed: bytes, how: str) -> bytes:
    head, _, body = signed.partition(b"\r\n\r\n")
    if how == "header":
        return head.replace(b"Alice <", b"Alice  <").replace(b"Bob", b"Rob") + b"\r\n\r\n" + body
    if how == "body":
        return head + b"\r\n\r\n" + body + b"appended\r\n"
    if how == "body wsp":  # invisible to relaxed body canonicalisation, not to simple
        return head + b"\r\n\r\n" + body.replace(b"\r\n", b" \r\n", 1)
    if how == "added from below":  # picked first by the bottom-up selection
        return head + b"\r\nFrom: Mallory <m@example.org>\r\n\r\n" + body
    if how == "added from above":  # caught by dkimpy's one-more-From rule
        return b"From: Mallory <m@example.org>\r\n" + signed
    return signed


def _variants(keys: list[Key]) -> Iterator[tuple[str, bytes, Key]]:
    rnd = random.Random(6376)
    combos = list(itertools.product(BODIES, INCLUDE, CANONS))
    for n, (body_name, inc_name, canon) in enumerate(combos):
        key = keys[n % len(keys)]
        length = n % 4 == 0
        upper = n % 5 == 0
        msg = HEADERS + b"\r\n" + BODIES[body_name]
        signed = sign(
            msg,
            key,
            canonicalize=canon,
            include_headers=INCLUDE[inc_name],
            length=length,
            upper_h=upper,
        )
        how = rnd.choice(
            ["none", "none", "header", "body", "body wsp", "added from below", "added from above"]
        )
        label = f"{key.name} {canon[0].decode()}/{canon[1].decode()} {body_name!r} {inc_name!r}"
        label += f"{' l=' if length else ''}{' H=' if upper else ''} tamper={how}"
        yield label, _tamper(signed, how), key


def test_differential_against_dkimpy(keys: list[Key]) -> None:
    seen = {True: 0, False: 0}
    for label, raw, key in _variants(keys):
        tx = parse_message(raw)
        expected = dkimpy_says(tx.raw_message(), key)
        seen[expected] += 1
        want = Result.PASS if expected else Result.FAIL
        assert ours(tx, key) is want, label
        assert ours(streamed(tx, [len(tx.body) // 2]), key) is want, label
    assert seen[True] > 60 and seen[False] > 60, seen  # both outcomes well covered


def test_chunk_boundaries_at_every_offset(keys: list[Key]) -> None:
    body = b"a  \r\n\t\r\nb \t\r\n\r\n  x\r\n\r\n\r\n"
    msg = HEADERS + b"\r\n" + body
    for key, canon in itertools.product(keys, CANONS):
        tx = parse_message(sign(msg, key, canonicalize=canon))
        assert dkimpy_says(tx.raw_message(), key), (key.name, canon)
        for cut in range(len(body) + 1):
            assert ours(streamed(tx, [cut]), key) is Result.PASS, (key.name, canon, cut)
        bad = parse_message(sign(msg, key, canonicalize=canon) + b"x")
        for cut in range(0, len(bad.body) + 1, 3):
            assert ours(streamed(bad, [cut]), key) is Result.FAIL, (key.name, canon, cut)


def test_lf_message_and_crlf_message_agree(keys: list[Key]) -> None:
    signed = sign(HEADERS + b"\r\n" + BODIES["wsp at line ends"], keys[1], canonicalize=CANONS[0])
    lf = parse_message(signed.replace(b"\r\n", b"\n"))
    assert ours(lf, keys[1]) is Result.PASS
    assert ours(streamed(lf, [3, 9]), keys[1]) is Result.PASS


def test_dual_signed_vector_streamed() -> None:
    from pathlib import Path

    data = Path(__file__).resolve().parent.parent / "data" / "dkim"
    resolver = StaticResolver()
    resolver.add_zone_file(data / "rfc8463-a2.zone")
    tx = streamed(parse_message((data / "rfc8463-a3.eml").read_bytes()), [10, 40])
    assert not tx.body_kept
    results = verify_dkim(tx, resolver, DkimConfig())
    assert [(r.result, r.algorithm) for r in results] == [
        (Result.PASS, "ed25519-sha256"),
        (Result.PASS, "rsa-sha256"),
    ]


def test_streamed_digest_is_what_is_compared(keys: list[Key]) -> None:
    tx = streamed(parse_message(sign(HEADERS + b"\r\nbody\r\n", keys[1])), [])
    (d,) = tx.body_digests
    forged = replace(tx, body_digests=(replace(d, digest=bytes(32)),))
    assert ours(forged, keys[1]) is Result.FAIL
    assert ours(tx, keys[1]) is Result.PASS


def test_dkimpy_is_not_used_to_verify(keys: list[Key], monkeypatch: pytest.MonkeyPatch) -> None:
    def forbidden(*a: Any, **kw: Any) -> None:
        raise AssertionError("dkimpy used at run time")

    signed = sign(HEADERS + b"\r\nbody\r\n", keys[1])
    monkeypatch.setattr(dkim.DKIM, "__init__", forbidden)
    monkeypatch.setattr(dkim, "evaluate_pk", forbidden)
    assert ours(parse_message(signed), keys[1]) is Result.PASS


# ----------------------------------------------------------------------------- pieces


def test_strip_b_value_only_touches_the_b_tag() -> None:
    value = b" v=1; bh=AAAA; z=x b=y;\r\n\tb=ab+/\r\n\t cd==; t=1"
    assert strip_b_value(value) == b" v=1; bh=AAAA; z=x b=y;\r\n\tb=; t=1"
    assert strip_b_value(b" a=1; b=\r\n\tAbC=") == b" a=1; b="


def test_rsa_signature_without_leading_zero_octets_verifies() -> None:
    k = rsa.generate_private_key(public_exponent=65537, key_size=1024)  # noqa: S505
    spki = k.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    key = load_public_key("rsa", base64.b64encode(spki))
    for n in range(5000):
        data = b"header data %d" % n
        sig = k.sign(data, padding.PKCS1v15(), hashes.SHA256())
        if sig[0] == 0:
            break
    else:
        pytest.fail("no signature with a leading zero octet")
    assert verify_signature(key, "sha256", sig.lstrip(b"\0"), data)
    assert not verify_signature(key, "sha256", sig.lstrip(b"\0"), data + b"x")
    assert not verify_signature(key, "sha256", b"\1" + sig, data)  # longer than the modulus


def test_ed25519_signs_the_sha256_of_the_header_data() -> None:
    import hashlib

    sk = nacl.signing.SigningKey(bytes(range(32)))
    key = load_public_key("ed25519", base64.b64encode(bytes(sk.verify_key)))
    data = b"from:a\r\nsubject:b\r\ndkim-signature:v=1; b="
    assert verify_signature(key, "sha256", sk.sign(hashlib.sha256(data).digest()).signature, data)
    assert not verify_signature(key, "sha256", sk.sign(data).signature, data)
    assert not verify_signature(key, "sha256", b"short", data)


@pytest.mark.parametrize(
    ("kind", "p"),
    [("rsa", b"!!!!"), ("rsa", b"QUJDRA=="), ("ed25519", b"QUJDRA=="), ("dsa", b"QUJDRA==")],
)
def test_unusable_keys_are_refused(kind: str, p: bytes) -> None:
    with pytest.raises(KeyFormatError):
        load_public_key(kind, p)


def test_ed25519_spki_published_as_rsa_is_refused() -> None:
    from cryptography.hazmat.primitives.asymmetric import ed25519

    spki = (
        ed25519.Ed25519PrivateKey.generate()
        .public_key()
        .public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    with pytest.raises(KeyFormatError, match="not an RSA key"):
        load_public_key("rsa", base64.b64encode(spki))


def test_pkcs1_rsa_public_key_is_accepted(keys: list[Key]) -> None:
    spki = base64.b64decode(keys[0].record.rpartition("p=")[2])
    pub = serialization.load_der_public_key(spki)
    pkcs1 = pub.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.PKCS1)
    assert load_public_key("rsa", base64.b64encode(pkcs1)).bits == 1024


def test_body_is_hashed_once_for_all_signatures(
    keys: list[Key], monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[int] = []
    real = dkim_verify.hash_body

    def counting(body: bytes, specs: Any) -> Any:
        calls.append(len(set(specs)))
        return real(body, specs)

    msg = HEADERS + b"\r\nbody\r\n"
    signed = sign(msg, keys[1], canonicalize=(b"relaxed", b"relaxed"))
    signed = sign(sign(signed, keys[2], selector=b"ed"), keys[0], selector=b"old")
    monkeypatch.setattr(dkim_verify, "hash_body", counting)
    resolver = StaticResolver()
    resolver.add(SEL, "TXT", keys[1].record)
    resolver.add("ed._domainkey.example.com", "TXT", keys[2].record)
    resolver.add("old._domainkey.example.com", "TXT", keys[0].record)
    tx = parse_message(signed)
    assert [r.result for r in verify_dkim(tx, resolver, DkimConfig())] == [Result.PASS] * 3
    assert calls == [2]  # one pass for three signatures, two specs (relaxed and simple body)


def test_der_reader_agrees_with_openssl(keys: list[Key]) -> None:
    for key in keys[:2]:
        spki = base64.b64decode(key.record.rpartition("p=")[2])
        ours_ = load_public_key("rsa", base64.b64encode(spki)).key
        assert isinstance(ours_, rsa.RSAPublicKey)
        theirs = serialization.load_der_public_key(spki)
        assert isinstance(theirs, rsa.RSAPublicKey)
        assert ours_.public_numbers() == theirs.public_numbers()


@pytest.mark.parametrize(
    ("mangle", "message"),
    [
        (lambda der: der + b"\0", "not one DER SEQUENCE"),  # trailing octets
        (lambda der: der[:-1], "truncated"),
        (lambda der: der[:10], "truncated"),
        (lambda der: der.replace(bytes.fromhex("2a864886f70d010101"), bytes(9)), "OID"),
        (lambda der: b"\x30\x85" + der[2:], "bad length"),
    ],
)
def test_der_reader_refuses_malformed_keys(keys: list[Key], mangle: Any, message: str) -> None:
    spki = base64.b64decode(keys[0].record.rpartition("p=")[2])
    with pytest.raises(KeyFormatError, match=message):
        load_public_key("rsa", base64.b64encode(mangle(spki)))


_WS = [b" ", b"\t", b"  ", b"", b"\r\n ", b"\r\n\t", b" \t "]
_NAMES = [b"From", b"from", b"FROM", b"To", b"Subject", b"X-A", b"x-a", b"Received", b"Cc"]
_H = [b"from", b"to", b"subject", b"x-a", b"cc", b"received", b"from", b"x-a", b"reply-to"]


def _random_message(rnd: random.Random) -> bytes:
    def value() -> bytes:
        v = b"".join(rnd.choice([b"a", b"b c", b"x", *_WS]) for _ in range(rnd.randrange(1, 8)))
        return b" " + v if v.startswith(b"\r\n") else v

    fields = [b"From:" + rnd.choice([b" ", b""]) + b"a@example.com" + rnd.choice(_WS[:4])]
    for _ in range(rnd.randrange(7)):
        field = rnd.choice(_NAMES) + rnd.choice([b":", b": "]) + value()
        fields.insert(rnd.randrange(len(fields) + 1), field)
    pieces = [b"a", b" ", b"\t", b"\r\n", b"b  c", b"\r\n\r\n"]
    body = b"".join(rnd.choice(pieces) for _ in range(rnd.randrange(12)))
    return b"\r\n".join(fields) + b"\r\n\r\n" + body


@pytest.mark.parametrize("seed", range(3))
def test_random_messages_against_dkimpy(keys: list[Key], seed: int) -> None:
    rnd = random.Random(seed)
    key = keys[2]  # Ed25519: cheap to sign with dkimpy
    seen = {True: 0, False: 0}
    for _ in range(250):
        msg = _random_message(rnd)
        include = rnd.sample(_H, rnd.randrange(1, 7))
        canon = (rnd.choice([b"simple", b"relaxed"]), rnd.choice([b"simple", b"relaxed"]))
        signed = sign(
            msg,
            key,
            canonicalize=canon,
            include_headers=[*include, b"from"],
            length=rnd.random() < 0.3,
        )
        signed = rnd.choice(
            [
                lambda m: m,
                lambda m: m.replace(b"a@", b"a @", 1),  # header tamper (relaxed-visible too)
                lambda m: m.replace(b"\r\n\r\n", b"\r\n\r\n ", 1),  # body tamper
                lambda m: m + rnd.choice([b" ", b"\r\n", b"x", b"\t\r\n"]),
                lambda m: m.replace(b"\r\nFrom", b"\r\nX-A: new\r\nFrom", 1),
                lambda m: b"From: b@example.org\r\n" + m,
            ]
        )(signed)
        tx = parse_message(signed)
        expected = dkimpy_says(tx.raw_message(), key)
        seen[expected] += 1
        want = Result.PASS if expected else Result.FAIL
        assert ours(tx, key) is want, signed
        assert ours(streamed(tx, list(range(1, len(tx.body), 3))), key) is want, signed
    assert min(seen.values()) > 40, seen
