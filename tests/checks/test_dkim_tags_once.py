"""A DKIM-Signature's tag list is parsed once per message, not at end of headers and again."""

from __future__ import annotations

import ipaddress

import dkim.util
import pytest

from authmilter.checks import dkim_body
from authmilter.checks.dkim_body import parse_tags
from authmilter.model import parse_message
from authmilter.session import Session
from tests.support.engines import GOOD_IP, make_engine
from tests.support.keys import sign, simple_message


def test_same_result_as_dkimpy_and_a_copy_each_time() -> None:
    value = b" v=1; a=rsa-sha256; d=example.com; s=rsa; h=from; bh=AAAA; b=BBBB"
    first = parse_tags(value)
    assert first == dkim.util.parse_tag_value(value)
    first[b"d"] = b"changed.example"
    assert parse_tags(value)[b"d"] == b"example.com"


@pytest.mark.parametrize("bad", [b"v=1; v=2", b"=x", b"a"])
def test_same_exceptions_as_dkimpy(bad: bytes) -> None:
    with pytest.raises(dkim.util.InvalidTagValueList):
        dkim.util.parse_tag_value(bad)
    with pytest.raises(dkim.util.InvalidTagValueList):
        parse_tags(bad)


def test_one_parse_of_the_signature_per_message(monkeypatch: pytest.MonkeyPatch) -> None:
    raw = sign(simple_message(), "example.com", "rsa")
    tx = parse_message(raw)
    signature = next(h.value for h in tx.headers if h.is_named("DKIM-Signature"))
    real = dkim_body.parse_tag_list
    parsed: list[bytes] = []

    def counting(value: bytes) -> dict[bytes, bytes]:
        parsed.append(value)
        result: dict[bytes, bytes] = real(value)
        return result

    monkeypatch.setattr(dkim_body, "parse_tag_list", counting)
    dkim_body._tags.cache_clear()
    session = Session(make_engine(), "1")
    session.connect("client.example", ipaddress.ip_address(GOOD_IP), "")
    session.mail_from("<alice@example.com>", None, "Q1")
    for h in tx.headers:
        session.header(h.name, h.value)
    session.end_of_headers()
    session.body(tx.body)
    session.end_of_message("Q1")
    assert "dkim=pass" in session.last_line
    assert parsed.count(signature) == 1


def test_a_long_tag_list_is_not_kept() -> None:
    dkim_body._tags.cache_clear()
    value = b" v=1; a=rsa-sha256; d=example.com; s=rsa; h=" + b"from:" * 1000 + b"to; b=x; bh=y"
    assert parse_tags(value) == dkim.util.parse_tag_value(value)
    assert dkim_body._tags.cache_info().currsize == 0
