"""ARC chain validation (checks/arc_verify.py) against chains built by dkimpy's arc_sign.

dkimpy's ``arc_verify`` is the independent verifier: for every chain here both must agree
on pass or fail.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from authmilter.checks.arc_chain import arc_body_specs
from authmilter.checks.arc_verify import verify_arc
from authmilter.checks.dkim_body import BodyHasher
from authmilter.model import Transaction, parse_message
from authmilter.results import Result
from authmilter.staticresolver import StaticResolver
from tests.support.arcchains import (
    Hop,
    chain,
    crlf,
    dkimpy_verify,
    fake_sets,
    seal,
    three_hops,
    zone,
)
from tests.support.keys import simple_message

HOPS = three_hops()


def streamed(message: bytes) -> Transaction:
    """The transaction as the session builds it: body hashed while it streams, not kept."""
    tx = parse_message(message)
    hasher = BodyHasher(arc_body_specs(tx.headers))
    for i in range(0, len(tx.body), 7):
        hasher.update(tx.body[i : i + 7])
    return Transaction(headers=tx.headers, body_size=hasher.size, body_digests=hasher.digests())


@pytest.mark.parametrize("hops", [1, 2, 3])
def test_chains_built_by_dkimpy_pass(hops: int) -> None:
    message = chain(simple_message(), HOPS[:hops])
    resolver = zone(HOPS)
    result = verify_arc(streamed(message), resolver)
    assert result.result is Result.PASS, result.reason
    assert result.chain == hops
    assert result.oldest_pass == 0
    assert [s.instance for s in result.sealers] == list(range(hops, 0, -1))
    assert [s.domain for s in result.sealers] == [h.domain for h in reversed(HOPS[:hops])]
    assert {s.result for s in result.sealers} == {Result.PASS}
    assert dkimpy_verify(message, resolver)[0] == "pass"
    # the same result with the body kept in memory
    assert verify_arc(parse_message(message), resolver).result is Result.PASS


def test_no_arc_fields_is_none() -> None:
    result = verify_arc(parse_message(simple_message()), zone(HOPS))
    assert (result.result, result.chain, result.sealers) == (Result.NONE, 0, ())


def _arc_lines(message: bytes) -> list[tuple[int, int]]:
    """(start, end) offsets of each ARC field of the header block."""
    head = message.split(b"\r\n\r\n", 1)[0] + b"\r\n"
    return [
        (m.start(), m.end())
        for m in re.finditer(rb"(?im)^arc-[a-z-]+:.*\r\n(?:[ \t].*\r\n)*", head)
    ]


def _tampered(message: bytes, start: int, end: int) -> bytes:
    field = message[start:end]
    name, _, value = field.partition(b":")
    if name.lower() == b"arc-authentication-results":
        new = value.replace(b"spf=pass", b"spf=fail", 1)
    else:
        new = value.replace(b"t=1796000000", b"t=1796000001", 1)
    assert new != value
    return message[:start] + name + b":" + new + message[end:]


@pytest.mark.parametrize("index", range(9))
def test_tampering_with_any_arc_field_fails(index: int) -> None:
    message = crlf(chain(simple_message(), HOPS))
    start, end = _arc_lines(message)[index]
    bad = _tampered(message, start, end)
    resolver = zone(HOPS)
    result = verify_arc(streamed(bad), resolver)
    assert result.result is Result.FAIL
    assert "did not verify" in result.reason
    assert dkimpy_verify(bad, resolver)[0] == "fail"


def test_body_tampering_fails() -> None:
    message = chain(simple_message(), HOPS)
    bad = message.replace(b"Hello.", b"Hello!")
    result = verify_arc(streamed(bad), zone(HOPS))
    assert (result.result, result.reason) == (
        Result.FAIL,
        "ARC-Message-Signature i=3: body hash mismatch",
    )


def test_signed_header_tampering_fails() -> None:
    message = chain(simple_message(), HOPS)
    bad = message.replace(b"Subject: test", b"Subject: pay now")
    result = verify_arc(streamed(bad), zone(HOPS))
    assert result.result is Result.FAIL
    assert result.reason == "ARC-Message-Signature i=3: signature did not verify"


def test_oldest_pass_names_the_oldest_validating_ams() -> None:
    """A list changes the body after hop 1: AMS 1 no longer validates, the chain still does."""
    first = seal(simple_message(), HOPS[0])
    altered = first.replace(b"Hello.", b"Hello.\r\n-- \r\nlist footer")
    message = chain(altered, HOPS[1:])
    resolver = zone(HOPS)
    result = verify_arc(streamed(message), resolver)
    assert result.result is Result.PASS, result.reason
    assert result.oldest_pass == 2
    assert dkimpy_verify(message, resolver)[0] == "pass"


def _strip_field(message: bytes, index: int) -> bytes:
    start, end = _arc_lines(message)[index]
    return message[:start] + message[end:]


def test_missing_member_fails() -> None:
    message = crlf(chain(simple_message(), HOPS))
    # fields are newest first: AS3, AMS3, AAR3, A-R, AS2, ...; drop AMS 2
    bad = _strip_field(message, 4)
    result = verify_arc(streamed(bad), zone(HOPS))
    assert (result.result, result.reason) == (
        Result.FAIL,
        "ARC set i=2 has no ARC-Message-Signature",
    )


def test_instance_gap_fails() -> None:
    message = crlf(chain(simple_message(), HOPS))
    bad = message
    for index in (5, 4, 3):  # the whole set 2
        bad = _strip_field(bad, index)
    result = verify_arc(streamed(bad), zone(HOPS))
    assert result.result is Result.FAIL
    assert result.reason == "ARC sets are not numbered 1 to 3 (no i=2)"


def test_duplicate_instance_fails() -> None:
    message = crlf(chain(simple_message(), HOPS[:2]))
    start, end = _arc_lines(message)[0]  # AS 2, once more
    bad = message[:start] + message[start:end] + message[start:]
    result = verify_arc(streamed(bad), zone(HOPS))
    assert (result.result, result.reason) == (Result.FAIL, "duplicate ARC-Seal for i=2")


def test_cv_fail_set_fails() -> None:
    message = chain(simple_message(), HOPS[:1])
    message = seal(message, HOPS[1], cv="fail")
    resolver = zone(HOPS)
    result = verify_arc(streamed(message), resolver)
    assert (result.result, result.reason) == (Result.FAIL, "ARC-Seal i=2 says cv=fail")
    assert dkimpy_verify(message, resolver)[0] in ("fail", "none")


def test_first_seal_must_say_cv_none() -> None:
    message = crlf(chain(simple_message(), HOPS[:1]))
    bad = message.replace(b"cv=none", b"cv=pass", 1)
    result = verify_arc(streamed(bad), zone(HOPS))
    assert (result.result, result.reason) == (
        Result.FAIL,
        "ARC-Seal i=1 has cv=pass, not cv=none",
    )


def test_a_chain_of_51_sets_fails_without_dns() -> None:
    resolver = StaticResolver({}, temperror=["*.example"])  # any lookup would be a temperror
    result = verify_arc(streamed(fake_sets(51)), resolver)
    assert (result.result, result.reason) == (Result.FAIL, "more than 50 ARC sets")
    fifty = verify_arc(streamed(fake_sets(50)), resolver)
    assert (fifty.result, fifty.chain) == (Result.FAIL, 50)  # judged further: the body hash
    assert fifty.reason == "ARC-Message-Signature i=50: body hash mismatch"


def test_instance_above_50_fails() -> None:
    bad = fake_sets(1).replace(b"i=1;", b"i=51;")
    result = verify_arc(streamed(bad), StaticResolver({}))
    assert (result.result, result.reason) == (Result.FAIL, "more than 50 ARC sets")


def test_a_chain_of_50_sets_passes() -> None:
    hops = [Hop("h.example.org", "s")] * 50  # one key: a single lookup
    message = chain(simple_message(), hops)
    result = verify_arc(streamed(message), zone(hops))
    assert (result.result, result.chain) == (Result.PASS, 50), result.reason
    assert result.oldest_pass is None  # only the newest 5 AMSs are checked


def test_a_chain_needing_too_many_keys_fails() -> None:
    hops = [Hop(f"h{i}.example.org", "s") for i in range(20)]
    message = chain(simple_message(), hops)
    result = verify_arc(streamed(message), zone(hops))
    assert result.result is Result.FAIL
    assert result.reason == "ARC-Seal i=4: chain needs more than 16 keys"


def test_key_lookup_timeout_is_temperror() -> None:
    message = chain(simple_message(), HOPS)
    resolver = zone(HOPS, temperror=["s2._domainkey.fwd.example.net"])
    result = verify_arc(streamed(message), resolver)
    assert (result.result, result.reason) == (Result.TEMPERROR, "ARC-Seal i=2: key lookup failed")
    assert [s.result for s in result.sealers] == [Result.PASS, Result.TEMPERROR, Result.NONE]


def test_missing_key_fails() -> None:
    message = chain(simple_message(), HOPS)
    records = dict(h.record for h in HOPS[1:])
    result = verify_arc(streamed(message), StaticResolver(records))
    assert (result.result, result.reason) == (Result.FAIL, "ARC-Seal i=1: no key")


def test_ams_signing_arc_seal_fails() -> None:
    message = crlf(chain(simple_message(), HOPS[:1]))
    bad = message.replace(b"h=from", b"h=arc-seal : from", 1)
    result = verify_arc(streamed(bad), zone(HOPS))
    assert result.result is Result.FAIL
    assert "h= signs ARC-Seal" in result.reason


def test_reasons_never_carry_message_bytes() -> None:
    message = crlf(chain(simple_message(), HOPS[:1]))
    bad = message.replace(b"a=rsa-sha256", b"a=<script>", 1)
    result = verify_arc(streamed(bad), zone(HOPS))
    assert result.result is Result.FAIL
    assert "<script>" not in result.reason


DEBIAN_VECTOR = Path("/usr/lib/python3/dist-packages/dkim/tests")


@pytest.mark.skipif(not DEBIAN_VECTOR.is_dir(), reason="Debian's python3-dkim tests not installed")
def test_dkimpy_published_vector_verifies() -> None:
    """dkimpy's own fixed ARC vector (test_arc.py: test.message sealed at t=12345)."""
    source = (DEBIAN_VECTOR / "test_arc.py").read_text()
    lines = re.search(r"expected_sig = (\[b'ARC-Seal.*?\])\n", source)
    assert lines is not None
    import ast

    fields = ast.literal_eval(lines.group(1))
    message = b"".join(fields) + (DEBIAN_VECTOR / "data" / "test.message").read_bytes()
    key = (DEBIAN_VECTOR / "data" / "test.txt").read_bytes().decode().strip()
    resolver = StaticResolver({("test._domainkey.example.com", "TXT"): [key]})
    result = verify_arc(streamed(message), resolver, now=12345)
    assert result.result is Result.PASS, result.reason
