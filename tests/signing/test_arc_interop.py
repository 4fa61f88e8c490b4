"""Our ARC seals as dkimpy's ``arc_verify`` (PyPI and Debian dkimpy alike) and our own
verifier see them: a first set, sets continuing dkimpy's chains, a three-hop chain of our
own, cv=fail, Ed25519."""

from __future__ import annotations

import base64
import functools
import hashlib

import dkim
import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from authmilter.decision import Action
from authmilter.results import Result
from tests.support import arcseal as a
from tests.support.keys import shared_ed25519_key, shared_rsa_key, sign, simple_message

FWD = ("forwarder.example", "arc")


@functools.cache  # one signature (its t= is the second it was made in)
def signed_message() -> bytes:
    """A message from example.com with a passing DKIM signature (DMARC pass)."""
    return sign(simple_message(body="Hello  there.\n\n"), "example.com", "rsa")


def test_first_seal_verifies_in_dkimpy() -> None:
    key = a.hop_key(0)
    decision, _ = a.run(a.engine(a.sealer(key)), signed_message())
    assert decision.action == Action.ACCEPT
    assert a.arc_names(decision) == [
        "ARC-Authentication-Results",
        "ARC-Message-Signature",
        "ARC-Seal",
    ]
    assert a.tags(decision, "ARC-Seal")["cv"] == "none"
    assert a.tags(decision, "ARC-Seal")["i"] == "1"
    aar = [e.value for e in decision.add_headers if e.name == "ARC-Authentication-Results"]
    ar = [e.value for e in decision.add_headers if e.name == "Authentication-Results"]
    assert aar[0] is not None and ar[0] is not None
    assert aar[0].replace("\n\t", " ").startswith("i=1; mx.test;")
    assert aar[0].endswith(ar[0])  # our A-R, not rendered a second time
    message = a.deliver(signed_message(), decision)
    cv, results, reason = a.dkimpy_verify(message, (*FWD, key))
    assert cv == dkim.CV_Pass, reason
    assert [r["instance"] for r in results] == [1]
    ours = a.our_verify(message, (*FWD, key))
    assert (ours.result, ours.chain, ours.oldest_pass) == (Result.PASS, 1, 0), ours.reason


@pytest.mark.parametrize("previous", [1, 2])
def test_continues_a_dkimpy_chain(previous: int) -> None:
    message = signed_message()
    keys = [(f"hop{i}.example", "s", a.hop_key(i)) for i in range(1, previous + 1)]
    for i, (domain, selector, key) in enumerate(keys, start=1):
        ar = "arc=pass" if i > 1 else "dkim=pass header.d=example.com"
        message = a.dkimpy_seal(message, key, domain, selector, srv_id=domain, ar=ar)
    assert a.oracle_arc(message, *keys).result == Result.PASS
    ours = a.hop_key(0)
    decision, results = a.run(a.engine(a.sealer(ours), a.zone_with(*keys)), message)
    assert results is not None and results.arc is not None  # the engine's own verifier
    assert (results.arc.result, results.arc.chain) == (Result.PASS, previous)
    assert a.tags(decision, "ARC-Seal")["i"] == str(previous + 1)
    assert a.tags(decision, "ARC-Seal")["cv"] == "pass"
    assert a.tags(decision, "ARC-Message-Signature")["i"] == str(previous + 1)
    delivered = a.deliver(message, decision)
    cv, results, reason = a.dkimpy_verify(delivered, (*FWD, ours), *keys)
    assert cv == dkim.CV_Pass, reason
    assert [r["instance"] for r in results] == list(range(previous + 1, 0, -1))
    assert all(r["as-valid"] for r in results)
    mine = a.our_verify(delivered, (*FWD, ours), *keys)
    assert (mine.result, mine.chain) == (Result.PASS, previous + 1), mine.reason


def test_three_hops_of_our_own_verify_in_dkimpy() -> None:
    message = signed_message()
    keys = []
    for hop in range(3):
        key = (f"hop{hop}.example", f"sel{hop}", a.hop_key(hop))
        seal = a.sealer(key[2], key[0], key[1])
        eng = a.engine(seal, a.zone_with(*keys), authserv_id=f"mx{hop}.test")
        decision, results = a.run(eng, message)  # each hop verifies the chain itself
        assert decision.action == Action.ACCEPT
        assert results is not None and results.arc is not None
        assert results.arc.result == a.oracle_arc(message, *keys).result
        assert a.tags(decision, "ARC-Seal")["i"] == str(hop + 1)
        message = a.deliver(message, decision)
        keys.append(key)
    cv, results, reason = a.dkimpy_verify(message, *keys)
    assert cv == dkim.CV_Pass, reason
    assert [r["cv"] for r in results] == [b"pass", b"pass", b"none"]
    assert [r["as-domain"] for r in results] == [b"hop2.example", b"hop1.example", b"hop0.example"]
    mine = a.our_verify(message, *keys)
    assert (mine.result, mine.chain, mine.oldest_pass) == (Result.PASS, 3, 0), mine.reason
    assert [s.domain for s in mine.sealers] == ["hop2.example", "hop1.example", "hop0.example"]


def test_failed_chain_gets_cv_fail_over_our_set_only() -> None:
    hop = ("hop1.example", "s", a.hop_key(1))
    message = a.dkimpy_seal(signed_message(), hop[2], *hop[:2], srv_id=hop[0], ar="spf=pass")
    tampered = message.replace(b"Hello  there.", b"Hello there!")
    assert a.oracle_arc(tampered, hop).result == Result.FAIL
    ours = a.hop_key(0)
    decision, results = a.run(a.engine(a.sealer(ours), a.zone_with(hop)), tampered)
    assert results is not None and results.arc is not None
    assert results.arc.result == Result.FAIL
    seal = a.tags(decision, "ARC-Seal")
    assert (seal["i"], seal["cv"]) == ("2", "fail")
    delivered = a.deliver(tampered, decision)
    # dkimpy: our AMS verifies, and a cv=fail seal terminates the chain
    cv, results, reason = a.dkimpy_verify(delivered, (*FWD, ours), hop)
    assert cv is None and "terminated" in reason, reason
    assert results[0]["ams-valid"]
    assert a.our_verify(delivered, (*FWD, ours), hop).result == Result.FAIL
    # RFC 8617 5.1.2: the seal signs only the new set (dkimpy's canonicalisation, OpenSSL)
    assert _seal_verifies(delivered, ours.private, only_newest=True)
    assert not _seal_verifies(delivered, ours.private, only_newest=False)


def _seal_verifies(message: bytes, private_pem: bytes, *, only_newest: bool) -> bool:
    """Check the newest ARC-Seal over the newest set alone, or over every set."""
    parsed = dkim.ARC(message)
    _, arc_headers = parsed.sorted_arc_headers()  # newest first, AS/AMS/AAR within a set
    newest = arc_headers[0][0]
    chosen = [h for i, h in arc_headers if not only_newest or i == newest]
    ordered = sorted(chosen, key=lambda h: _order(h, arc_headers))
    seal_name, seal_value = ordered.pop()
    assert seal_name.lower() == b"arc-seal"
    unsigned = dkim.RE_BTAG.sub(b"\\1", seal_value)
    data = b"".join(n + b":" + v for n, v in ordered) + seal_name + b":" + unsigned.rstrip()
    b = dkim.util.parse_tag_value(seal_value)[b"b"]
    key = serialization.load_pem_private_key(private_pem, None)
    assert isinstance(key, rsa.RSAPrivateKey)
    try:
        key.public_key().verify(
            base64.b64decode(b"".join(b.split())), data, padding.PKCS1v15(), hashes.SHA256()
        )
    except InvalidSignature:
        return False
    return True


def _order(header: tuple[bytes, bytes], all_headers: list[tuple[int, tuple[bytes, bytes]]]) -> int:
    instance = next(i for i, h in all_headers if h is header)
    rank = [b"arc-authentication-results", b"arc-message-signature", b"arc-seal"]
    return instance * 3 + rank.index(header[0].lower())


def test_ed25519_seal_verifies_in_dkimpy_taught_ed25519(monkeypatch: pytest.MonkeyPatch) -> None:
    # dkimpy's ARC knows rsa-sha256 only (ARC_HASH_ALGORITHMS); its DKIM code verifies
    # Ed25519 (RFC 8463): taught the name, it checks our Ed25519 AMS and AS
    monkeypatch.setitem(dkim.ARC_HASH_ALGORITHMS, b"ed25519-sha256", hashlib.sha256)
    key = shared_ed25519_key()
    rsa_hop = ("hop1.example", "s", shared_rsa_key())
    message = a.dkimpy_seal(
        signed_message(), rsa_hop[2], *rsa_hop[:2], srv_id=rsa_hop[0], ar="spf=pass"
    )
    decision, _ = a.run(a.engine(a.ed25519_sealer(), a.zone_with(rsa_hop)), message)
    assert a.tags(decision, "ARC-Seal")["a"] == "ed25519-sha256"
    delivered = a.deliver(message, decision)
    cv, results, reason = a.dkimpy_verify(delivered, ("forwarder.example", "ed", key), rsa_hop)
    assert cv == dkim.CV_Pass, reason
    assert results[0]["ams-valid"] and results[0]["as-valid"]
    mine = a.our_verify(delivered, ("forwarder.example", "ed", key), rsa_hop)
    assert (mine.result, mine.chain) == (Result.PASS, 2), mine.reason
