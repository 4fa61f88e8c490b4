"""Properties: the tag-list parser is dkimpy's, and ``b=`` stripping is the regex it replaced.

Oracles: ``dkim.util.parse_tag_value`` (same dict, or the same exception class) and the one
regular expression ``strip_b_value`` used before (``_OLD_B_TAG``).
"""

from __future__ import annotations

import binascii
import re

import dkim.util
import pytest
from hypothesis import given
from hypothesis import strategies as st

from authmilter.checks.dkim_header import strip_b_value
from authmilter.checks.taglist import decode_base64, is_base64, parse_tag_list

_OLD_B_TAG = re.compile(rb"((?:^|(?<=;))\s*b\s*=)(?:\s*[A-Za-z0-9+/=])*")
_OLD_BASE64 = re.compile(rb"[\s0-9A-Za-z+/]+[\s=]*\Z")
_OLD_SPACE = re.compile(rb"\s+")

# the characters that decide how a tag list parses, and a few that must not matter
PIECES = [
    b"b", b"bh", b"v", b"d", b"1", b"_", b"-", b"=", b";", b" ", b"\t", b"\r\n", b"\x0b",
    b"\x0c", b"AbC+/9", b"==", b"x=y", b" b = QUJD ", b"\xff", b"\x00", b"\xc3\xa9", b":",
]  # fmt: skip
tag_lists = st.lists(st.sampled_from(PIECES) | st.binary(max_size=3), max_size=40).map(b"".join)


def _dkimpy(value: bytes) -> dict[bytes, bytes] | type[Exception]:
    try:
        return dict(dkim.util.parse_tag_value(value))
    except dkim.util.InvalidTagValueList as exc:
        return type(exc)


def _ours(value: bytes) -> dict[bytes, bytes] | type[Exception]:
    try:
        return parse_tag_list(value)
    except dkim.util.InvalidTagValueList as exc:
        return type(exc)


@given(value=tag_lists)
def test_tag_lists_parse_as_dkimpy_parses_them(value: bytes) -> None:
    assert _ours(value) == _dkimpy(value)


@given(value=tag_lists)
def test_b_values_are_stripped_as_the_regex_stripped_them(value: bytes) -> None:
    assert strip_b_value(value) == _OLD_B_TAG.sub(rb"\1", value)


@given(value=tag_lists)
def test_base64_checks_are_the_regex_checks(value: bytes) -> None:
    compact = _OLD_SPACE.sub(b"", value)
    assert is_base64(value) == (bool(_OLD_BASE64.match(value)) and len(compact) % 4 == 0)
    if is_base64(value):
        try:
            expected = binascii.a2b_base64(compact)
        except binascii.Error:
            expected = b""
        assert decode_base64(value) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (b"", {}),
        (b"v=1;", {b"v": b"1"}),
        (b" v = 1 ; a=rsa-sha256 ;", {b"v": b"1", b"a": b"rsa-sha256"}),
        (b"v=1;;", dkim.util.InvalidTagSpec),  # an empty spec in the middle
        (b"1v=1", dkim.util.InvalidTagSpec),
        (b"v", dkim.util.InvalidTagSpec),
        (b"v=1; v=2", dkim.util.DuplicateTag),
    ],
)
def test_tag_list_edges(value: bytes, expected: object) -> None:
    assert _ours(value) == expected == _dkimpy(value)


def test_b_strip_edges() -> None:
    value = b" v=1; b = QU JD= \r\n\t; bh=AAAA; b=x;b"
    assert strip_b_value(value) == b" v=1; b = \r\n\t; bh=AAAA; b=;b"
    assert strip_b_value(value) == _OLD_B_TAG.sub(rb"\1", value)
