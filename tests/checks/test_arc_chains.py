"""More ARC chain cases: tags, times, keys and the oldest-pass switch (checks/arc_*.py)."""

from __future__ import annotations

import pytest

from authmilter.checks.arc_chain import MAX_AMS, arc_body_specs, collect
from authmilter.checks.arc_verify import verify_arc
from authmilter.model import parse_message
from authmilter.results import Result
from authmilter.staticresolver import StaticResolver
from tests.support.arcchains import TIMESTAMP, Hop, chain, crlf, seal, three_hops, zone
from tests.support.keys import DkimKey, simple_message

HOPS = three_hops()


def test_oldest_pass_can_be_left_out() -> None:
    message = chain(simple_message(), HOPS)
    result = verify_arc(parse_message(message), zone(HOPS), oldest_pass=False)
    assert (result.result, result.oldest_pass) == (Result.PASS, None)


def test_body_specs_follow_the_depth_asked_for() -> None:
    relaxed = seal(simple_message(), HOPS[0])
    message = crlf(seal(relaxed, HOPS[1])).replace(b"c=relaxed/relaxed", b"c=simple/simple", 1)
    headers = parse_message(message).headers
    assert arc_body_specs(headers, 1) == {("simple", "sha256", None)}
    assert arc_body_specs(headers, MAX_AMS) == {
        ("simple", "sha256", None),
        ("relaxed", "sha256", None),
    }


def test_an_older_ams_is_parsed_only_when_validated() -> None:
    message = crlf(chain(simple_message(), HOPS[:1]))
    sets = collect(parse_message(message).headers)
    assert "ams_tags" not in vars(sets[0])
    assert sets[0].ams_tags[b"d"] == b"lists.example.org"


def test_timestamps_in_the_future_and_expiry_fail() -> None:
    message = chain(simple_message(), HOPS[:1])
    tx = parse_message(message)
    future = verify_arc(tx, zone(HOPS), now=TIMESTAMP - 2 * 86400)
    assert (future.result, future.reason) == (
        Result.FAIL,
        "ARC-Message-Signature i=1: t= value is in the future",
    )
    expired = crlf(message).replace(b"t=1796000000;", b"t=1796000000; x=1796000001;", 1)
    result = verify_arc(parse_message(expired), zone(HOPS), now=TIMESTAMP + 10)
    assert result.result is Result.FAIL
    assert "expired" in result.reason or "did not verify" in result.reason


def test_an_ams_that_does_not_sign_from_fails() -> None:
    message = crlf(chain(simple_message(), HOPS[:1]))
    bad = message.replace(b"h=from : ", b"h=", 1).replace(b"message-id : from;", b"message-id;", 1)
    assert b"from" not in bad.split(b"h=", 1)[1].split(b";", 1)[0]
    result = verify_arc(parse_message(bad), zone(HOPS))
    assert (result.result, result.reason) == (
        Result.FAIL,
        "ARC-Message-Signature i=1: From not signed (RFC 6376 6.1.1)",
    )


@pytest.mark.parametrize(
    ("record", "reason"),
    [
        ("v=DKIM1; k=rsa; p=", "key revoked (empty p=)"),
        ("v=DKIM1; k=ed25519; p=AAAA", "key type k=ed25519 does not match a=rsa-sha256"),
        ("v=DKIM1; k=rsa; p=!!!", "unusable key: p= is not base64: Non-base64 digit found"),
    ],
)
def test_unusable_keys_fail_without_naming_the_record(record: str, reason: str) -> None:
    hop = HOPS[0]
    message = chain(simple_message(), [hop])
    resolver = StaticResolver({(f"{hop.selector}._domainkey.{hop.domain}", "TXT"): [record]})
    result = verify_arc(parse_message(message), resolver)
    assert result.result is Result.FAIL
    assert result.reason.startswith("ARC-Message-Signature i=1: ")
    assert hop.domain not in result.reason


def test_a_small_rsa_key_fails() -> None:
    from pathlib import Path

    data = Path(__file__).resolve().parents[1] / "data" / "dkim"
    small = sorted(data.glob("*512*"))
    if not small:
        pytest.skip("no 512-bit test key in tests/data/dkim")
    private = next(p for p in small if p.suffix in (".pem", ".key", ".private"))
    public = next(p for p in small if p != private)
    key = DkimKey(private.read_bytes(), public.read_text().strip(), 512)
    hop = Hop("small.example.org", "s", key)
    message = chain(simple_message(), [hop])
    result = verify_arc(parse_message(message), zone([hop]))
    assert (result.result, result.reason) == (
        Result.FAIL,
        "ARC-Message-Signature i=1: key too small",
    )


def test_more_than_150_arc_fields_fail_before_parsing() -> None:
    junk = b"ARC-Seal: this is not a tag list\r\n" * 151
    result = verify_arc(parse_message(junk + simple_message()), StaticResolver({}))
    assert (result.result, result.reason) == (Result.FAIL, "more than 50 ARC sets")


def test_a_malformed_seal_fails_the_chain() -> None:
    message = crlf(chain(simple_message(), HOPS[:1]))
    bad = message.replace(b"ARC-Seal: i=1;", b"ARC-Seal: i=1; i=1;", 1)
    result = verify_arc(parse_message(bad), zone(HOPS))
    assert (result.result, result.reason) == (
        Result.FAIL,
        "ARC-Seal has a malformed tag list",
    )
