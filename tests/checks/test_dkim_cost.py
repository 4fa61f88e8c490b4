"""The work a DKIM signature can cause before its b= is checked is linear and capped.

``h=`` is applied before the signature is verified, so a sender with a key in his own DNS
and a correct ``bh=`` (``b=`` may be junk) chooses both the number of header fields and the
number of ``h=`` entries. Work is measured in executed lines of
:mod:`authmilter.checks.dkim_header` (``sys.settrace``), never in seconds: the count is
the same on any machine, and it stops at the bound, so a quadratic selection fails fast.
"""

from __future__ import annotations

import base64
import hashlib
import random
import re
import sys
from collections.abc import Callable
from types import FrameType
from typing import Any

import pytest

from authmilter.checks import dkim_header
from authmilter.checks.dkim_header import (
    CanonicalHeaders,
    HeaderBudgetError,
    relaxed_name,
    relaxed_value,
    strip_b_value,
)
from authmilter.checks.dkim_verify import MAX_HEADER_DATA, verify_dkim
from authmilter.config import MAX_HEADER_FIELDS, MAX_SIGNED_FIELDS, DkimConfig, from_dict
from authmilter.errors import ConfigError
from authmilter.model import HeaderField, parse_message
from authmilter.results import DkimResult, Result
from authmilter.staticresolver import StaticResolver
from tests.support.keys import dkim_record, sign, simple_message

KEY_NAME = "sel._domainkey.example.com"
BODY = b"hello\r\n"
UNCAPPED = DkimConfig(max_signed_fields=10**6, max_header_fields=10**6)


class _Stop(BaseException):
    """Raised by the tracer past the bound (not an Exception: the verifier must not catch it)."""


def lines_run(fn: Callable[[], object], limit: int) -> int:
    """Lines of dkim_header executed by ``fn()``; stops at ``limit`` + 1."""
    count = 0

    def local(frame: FrameType, event: str, arg: Any) -> Any:
        nonlocal count
        if event == "line":
            count += 1
            if count > limit:
                raise _Stop
        return local

    def calls(frame: FrameType, event: str, arg: Any) -> Any:
        return local if frame.f_code.co_filename == dkim_header.__file__ else None

    old = sys.gettrace()
    sys.settrace(calls)
    try:
        fn()
    except _Stop:
        pass
    finally:
        sys.settrace(old)
    return count


def resolver() -> StaticResolver:
    res = StaticResolver()
    res.add(KEY_NAME, "TXT", dkim_record("ed25519"))
    return res


def worst_case(fields: int, names: int, signatures: int = 1) -> bytes:
    """The review's message: many distinct fields, an h= of many distinct names (half of
    them absent, so that a bottom-up scan goes all the way up), correct bh=, junk b=."""
    listed = [f"x-f{i:05d}" if i % 2 else f"x-absent{i:05d}" for i in range(names - 1)]
    bh = base64.b64encode(hashlib.sha256(BODY).digest()).decode()
    sig = (
        "DKIM-Signature: v=1; a=ed25519-sha256; c=relaxed/simple; d=example.com; s=sel;\r\n"
        f" h={':'.join(['from', *listed])};\r\n bh={bh};\r\n b={'A' * 88}\r\n"
    )
    padding = "".join(f"X-F{i:05d}: value {i}\r\n" for i in range(fields - 1))
    return (sig * signatures + "From: a@example.com\r\n" + padding + "\r\n").encode() + BODY


def verify(raw: bytes, cfg: DkimConfig = UNCAPPED) -> tuple[DkimResult, ...]:
    return verify_dkim(parse_message(raw), resolver(), cfg)


# ----------------------------------------------------------------------- linear work


def selection_lines(fields: int, names: int, limit: int) -> int:
    tx = parse_message(worst_case(fields, names))
    sig = tx.headers[0]
    h = re.search(rb"h=([^;]*);", sig.value)
    assert h is not None

    def select() -> None:
        headers = CanonicalHeaders(tx.headers)
        for canon in ("relaxed", "simple"):
            headers.signed_data(canon, h.group(1), sig)

    return lines_run(select, limit)


def test_header_selection_is_linear() -> None:
    # 4000 fields x 4000 names, both canonicalisations: the old bottom-up scan ran ~3 lines
    # per (name, field) pair it passed, tens of millions; now ~14 per field or name.
    n = 4000
    bound = 20 * (n + n)
    work = selection_lines(n, n, bound)
    assert work <= bound, f"{work} lines or more for {n} fields and {n} h= names"
    double = selection_lines(2 * n, 2 * n, 3 * work)
    assert double <= 2.2 * work  # twice the input, twice the work (not four times)


def test_review_worst_case_verifies_with_linear_work() -> None:
    # five signatures on the same message, caps lifted: still proportional to the input
    fields, names, signatures = 3000, 3000, 5
    raw = worst_case(fields, names, signatures)
    results: tuple[DkimResult, ...] = ()

    def run() -> None:
        nonlocal results
        results = verify(raw)

    bound = 10 * (fields + signatures * names)  # one canonicalisation: ~7 lines each
    work = lines_run(run, bound)
    assert work <= bound, f"{work} lines or more"
    assert [(r.result, r.reason) for r in results] == [
        (Result.FAIL, "signature did not verify")
    ] * signatures


# ------------------------------------------------- same bytes as the quadratic original


def reference_signed_data(
    fields: list[HeaderField], canon: str, h_value: bytes, signature: HeaderField
) -> bytes:
    """The selection as it was (bottom-up scan per h= name): the behaviour to keep."""
    headers = CanonicalHeaders(fields).canonical(canon)
    wanted = [n.lower() for n in re.split(rb"\s*:\s*", h_value.strip())]
    if b"from" in wanted:
        wanted.append(b"from")
    lowered = [n.lower() for n, _ in headers]
    out: list[bytes] = []
    last: dict[bytes, int] = {}
    for name in wanted:
        i = last.get(name, len(headers))
        while i > 0:
            i -= 1
            if lowered[i] == name:
                out += (headers[i][0], b":", headers[i][1])
                break
        last[name] = i
    value = strip_b_value(signature.value)
    raw_name = signature.name.encode()
    if canon == "relaxed":
        out += (relaxed_name(raw_name), b":", relaxed_value(value))
    else:
        out += (raw_name, b":", value.rstrip())
    return b"".join(out)


_NAMES = ["From", "from", "FROM", "To", "Subject", "X-A", "x-a", "Received", "Cc"]


@pytest.mark.parametrize("seed", range(5))
def test_output_is_byte_identical_to_the_quadratic_selection(seed: int) -> None:
    rnd = random.Random(seed)
    for _ in range(200):
        fields = [
            HeaderField(rnd.choice(_NAMES), rnd.choice([b" a", b"\tb  c ", b"", b" d\r\n e"]))
            for _ in range(rnd.randrange(12))
        ]
        signature = HeaderField("DKIM-Signature", b" v=1; h=x; b=abc\r\n\tdef; bh=x")
        fields.insert(rnd.randrange(len(fields) + 1), signature)
        wanted = [rnd.choice([*_NAMES, "reply-to", ""]) for _ in range(rnd.randrange(1, 14))]
        h_value = rnd.choice([":", " : ", ":\r\n\t"]).join(wanted).encode()
        headers = CanonicalHeaders(fields)
        for canon in ("simple", "relaxed"):
            expected = reference_signed_data(fields, canon, h_value, signature)
            assert headers.signed_data(canon, h_value, signature) == expected, (fields, h_value)


# ----------------------------------------------------------------------------- caps


def signed(extra_fields: int = 0, include: list[bytes] | None = None) -> bytes:
    """A genuine Ed25519 signature, ``extra_fields`` unsigned fields above it."""
    padding = "".join(f"X-Pad{i}: v\n" for i in range(max(0, len(include or []) - 1)))
    raw = sign(
        simple_message(extra=padding), "example.com", "sel", "ed25519", include_headers=include
    )
    return b"".join(b"Received: hop %d\r\n" % i for i in range(extra_fields)) + raw


def test_h_with_more_entries_than_the_cap_is_policy() -> None:
    at_cap = [b"from"] + [b"x-pad%d" % i for i in range(MAX_SIGNED_FIELDS - 1)]
    (ok,) = verify(signed(include=at_cap), DkimConfig())
    assert ok.result is Result.PASS, ok.reason
    (over,) = verify(signed(include=[*at_cap, b"x-absent"]), DkimConfig())
    assert over.result is Result.POLICY
    assert over.reason == "h= lists 257 header fields; not verified (limit 256)"
    assert over.domain == "example.com" and over.selector == "sel"
    (raised,) = verify(signed(include=[*at_cap, b"x-absent"]), DkimConfig(max_signed_fields=257))
    assert raised.result is Result.PASS


def test_message_with_more_fields_than_the_cap_is_policy() -> None:
    fields = len(parse_message(signed()).headers)
    (ok,) = verify(signed(MAX_HEADER_FIELDS - fields), DkimConfig())
    assert ok.result is Result.PASS, ok.reason
    (over,) = verify(signed(MAX_HEADER_FIELDS - fields + 1), DkimConfig())
    assert over.result is Result.POLICY
    assert over.reason == "message has 1001 header fields; not verified (limit 1000)"
    (raised,) = verify(signed(MAX_HEADER_FIELDS), DkimConfig(max_header_fields=2000))
    assert raised.result is Result.PASS


def test_review_worst_case_is_refused_by_the_caps_without_selection() -> None:
    raw = worst_case(8000, 10000, 5)
    results: tuple[DkimResult, ...] = ()

    def run() -> None:
        nonlocal results
        results = verify(raw, DkimConfig())

    assert lines_run(run, 0) == 0  # refused before any header is canonicalised
    assert {r.reason for r in results} == {"h= lists 10000 header fields; not verified (limit 256)"}
    assert {r.result for r in results} == {Result.POLICY}


@pytest.mark.parametrize("key", ["max_signed_fields", "max_header_fields"])
def test_caps_must_be_positive(key: str) -> None:
    with pytest.raises(ConfigError, match=f"dkim.{key}: must be greater than 0"):
        from_dict({"dkim": {key: 0}}, "x")


# --------------------------------------------------------------------------- budget


def test_header_data_budget_counts_what_is_returned() -> None:
    fields = [HeaderField("From", b" a@example.com"), HeaderField("Subject", b" " + b"s" * 100)]
    sig = HeaderField("DKIM-Signature", b" v=1; b=")
    one = len(CanonicalHeaders(fields).signed_data("simple", b"from:subject", sig))
    headers = CanonicalHeaders([*fields, sig], max_bytes=2 * one + 60)
    for _ in range(2):
        assert len(headers.signed_data("simple", b"from:subject", sig)) == one
    assert headers.hashed == 2 * one
    with pytest.raises(HeaderBudgetError, match=f"{one} bytes exceeds .* \\(60 of "):
        headers.signed_data("simple", b"from:subject", sig)
    assert headers.hashed == 2 * one  # a refused signature costs nothing
    assert headers.signed_data("simple", b"from", sig)  # a smaller one still fits


def test_signatures_past_the_header_data_budget_are_policy() -> None:
    # 11 fields of 100 KB (Postfix's header_size_limit), each signature signs all of them:
    # 1.1 MB per signature, and the fourth does not fit in 4 MiB.
    big = "".join(f"X-Big: {'b' * 100_000}\n" for _ in range(11))
    msg = simple_message(extra=big)
    include = [b"from", *[b"x-big"] * 11]
    raw = msg
    for selector in ("s4", "s3", "s2", "s1"):
        raw = sign(raw, "example.com", selector, "ed25519", include_headers=include)
    res = StaticResolver()
    for selector in ("s1", "s2", "s3", "s4"):
        res.add(f"{selector}._domainkey.example.com", "TXT", dkim_record("ed25519"))
    results = verify_dkim(parse_message(raw), res, DkimConfig())
    assert [r.result for r in results] == [Result.PASS] * 3 + [Result.POLICY]
    assert results[3].reason.startswith("signed header data of 1100")
    assert f"of {MAX_HEADER_DATA} bytes left" in results[3].reason
