"""The review's hostile shapes, each within a fixed budget of work and memory.

Every message runs the daemon's own path (:func:`authmilter.cli.run_session`, the session the
adapter drives). Work is counted, never timed: Python function calls and the lines run in
authmilter's own code (``sys.settrace``),
DNS queries (the StaticResolver's log) and peak memory (``tracemalloc``). Each shape is run
at size n and 2n; doubling the input may at most double the work (plus a constant): the
test fails on anything quadratic, such as the old ``h=`` selection or the old folding.
"""

from __future__ import annotations

import base64
import ipaddress
import re
import sys
import tracemalloc
from collections.abc import Callable
from dataclasses import dataclass
from types import FrameType
from typing import Any

import dkim
import pytest

from authmilter.cli import run_session
from authmilter.decision import Action, Decision
from authmilter.model import parse_message
from authmilter.results import AuthResults, Result
from authmilter.session import Session
from authmilter.staticresolver import StaticResolver
from tests.support.engines import make_engine
from tests.support.keys import shared_ed25519_key

ATTACKER = "attack.example"
ATTACKER_IP = "198.51.100.66"
KEY = shared_ed25519_key()
HEAD = (
    f"From: <a@{ATTACKER}>\r\nTo: <v@victim.example>\r\nSubject: hi\r\n"
    "Date: Tue, 01 Dec 2026 12:00:00 +0000\r\n"
).encode()


def zone() -> StaticResolver:
    r = StaticResolver()
    r.add(ATTACKER, "TXT", f"v=spf1 ip4:{ATTACKER_IP} -all")
    r.add("_dmarc." + ATTACKER, "TXT", "v=DMARC1; p=none")
    r.add("sel._domainkey." + ATTACKER, "TXT", KEY.txt)
    return r


def signed(head: bytes, body: bytes, h: list[bytes], copies: int = 1, junk_b: bool = True) -> bytes:
    """``copies`` attacker signatures over ``h`` with a correct bh= (b= junk when asked)."""
    raw = head + b"\r\n" + body
    sig = dkim.sign(
        raw,
        b"sel",
        ATTACKER.encode(),
        KEY.private,
        signature_algorithm=KEY.algorithm,
        include_headers=[b"from", b"to"],
    )
    if h != [b"from", b"to"]:
        sig = re.sub(rb"h=from ?: ?to", b"h=" + b":".join(h), sig, count=1)
    if junk_b:
        name, _, _ = sig.rpartition(b" b=")
        name += b" "
        sig = name + b"b=" + base64.b64encode(b"junk" * 16) + b"\r\n"
    return sig * copies + raw


# --------------------------------------------------------------------------- the shapes
# Each maker takes a size n and returns (message, extra zone records as (name, type, value)).

Shape = Callable[[int], tuple[bytes, list[tuple[str, str, str]]]]


def many_h_names(n: int) -> tuple[bytes, list[tuple[str, str, str]]]:
    fields = b"".join(b"X-F%d: v\r\n" % i for i in range(n))
    names = (
        [b"from", b"to"] + [b"x-f%d" % i for i in range(n)] + [b"x-none%d" % i for i in range(n)]
    )
    return signed(HEAD + fields, b"hi\r\n", names, copies=5), []


def many_fields(n: int) -> tuple[bytes, list[tuple[str, str, str]]]:
    return HEAD + b"".join(b"X-F%d: v\r\n" % i for i in range(4 * n)) + b"\r\nhi\r\n", []


def long_line(n: int) -> tuple[bytes, list[tuple[str, str, str]]]:
    return HEAD + b"X-Long: " + b"L" * (100 * n) + b"\r\n\r\nhi\r\n", []


def folded_from(n: int) -> tuple[bytes, list[tuple[str, str, str]]]:
    folds = b"".join(b"\r\n (c%d)" % i for i in range(10 * n))
    head = HEAD.replace(
        b"From: <a@" + ATTACKER.encode() + b">", b"From: <a@attack.example>" + folds
    )
    return head + b"\r\nhi\r\n", []


def nul_and_8bit(n: int) -> tuple[bytes, list[tuple[str, str, str]]]:
    junk = bytes(range(256)) * n
    return HEAD + b"X-Bin: " + junk.replace(b"\r", b"").replace(b"\n", b"") + b"\r\n\r\n" + junk, []


def many_signatures(n: int) -> tuple[bytes, list[tuple[str, str, str]]]:
    return signed(HEAD, b"hi\r\n", [b"from", b"to"], copies=n // 2), []


def deep_spf_includes(n: int) -> tuple[bytes, list[tuple[str, str, str]]]:
    depth = n // 20 + 5
    records = [(ATTACKER, "TXT", "v=spf1 include:i0.attack.example -all")]
    records += [
        (
            f"i{i}.attack.example",
            "TXT",
            f"v=spf1 a:a{i}.attack.example include:i{i + 1}.attack.example -all",
        )
        for i in range(depth)
    ]
    return HEAD + b"\r\nhi\r\n", records


def huge_txt(n: int) -> tuple[bytes, list[tuple[str, str, str]]]:
    big = "v=spf1 " + " ".join(f"ip4:10.{i // 250}.{i % 250}.1" for i in range(n * 10)) + " -all"
    records = [(ATTACKER, "TXT", big), ("_dmarc." + ATTACKER, "TXT", "x" * (300 * n))]
    return signed(HEAD, b"hi\r\n", [b"from", b"to"], junk_b=False), records


SHAPES: dict[str, Shape] = {
    "many distinct h= names, five signatures": many_h_names,
    "many distinct h= names, caps lifted": many_h_names,
    "thousands of header fields": many_fields,
    "long header line": long_line,
    "folded From": folded_from,
    "NUL and 8-bit bytes": nul_and_8bit,
    "many signatures": many_signatures,
    "deep SPF include chain": deep_spf_includes,
    "huge TXT answers": huge_txt,
}


def _refused_by_cap(r: AuthResults) -> bool:
    assert len(r.dkim) == 5 and all(d.result == Result.POLICY for d in r.dkim), r.dkim
    return True


def _spf_gave_up(r: AuthResults) -> bool:
    assert r.spf is not None and r.spf.result == Result.PERMERROR, r.spf
    return True


def _signatures_capped(r: AuthResults) -> bool:
    assert len(r.dkim) <= 20, len(r.dkim)
    return True


EXPECT: dict[str, Callable[[AuthResults], bool]] = {
    "many distinct h= names, five signatures": _refused_by_cap,
    "deep SPF include chain": _spf_gave_up,
    "many signatures": _signatures_capped,
}


# --------------------------------------------------------------------------- measuring


@dataclass(frozen=True)
class Cost:
    calls: int  # Python function calls, plus lines executed in authmilter's own code
    queries: int  # DNS questions
    peak: int  # bytes, tracemalloc
    size: int  # bytes of input
    decision: Decision
    results: AuthResults | None


# Config per shape: with the h= and field caps lifted, the selection itself must be linear.
CONFIG: dict[str, dict[str, Any]] = {
    "many distinct h= names, caps lifted": {
        "dkim": {"max_signed_fields": 1_000_000, "max_header_fields": 1_000_000}
    },
}


def cost(shape: Shape, n: int, config: dict[str, Any] | None = None) -> Cost:
    raw, records = shape(n)
    resolver = zone()
    for name, rdtype, value in records:
        if (name.lower(), rdtype) in resolver._records:
            del resolver._records[(name.lower(), rdtype)]
        resolver.add(name, rdtype, value)
    engine = make_engine(resolver, "mx.budget.test", **(config or {}))
    session = Session(engine, "budget")
    calls = 0

    def count_lines(frame: FrameType, event: str, arg: Any) -> Any:
        nonlocal calls
        calls += event == "line"
        return count_lines

    def count(frame: FrameType, event: str, arg: Any) -> Any:
        # every call counts; lines only in our own code (a quadratic loop there shows)
        nonlocal calls
        calls += 1
        return count_lines if OWN_CODE in frame.f_code.co_filename else None

    tracemalloc.start()
    sys.settrace(count)
    try:
        decision = run_session(
            session,
            parse_message(raw),
            client=("attacker", ipaddress.ip_address(ATTACKER_IP), ""),
            helo=ATTACKER,
            mail_from=f"a@{ATTACKER}",
            rcpts=["v@victim.example"],
            auth_user=None,
        )
    finally:
        sys.settrace(None)
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    return Cost(calls, len(resolver.queries), peak, len(raw), decision, session.results)


BASE = 200  # n for the first run; the second doubles it
OWN_CODE = "/authmilter/"
MAX_QUERIES = 40  # SPF (pyspf: 10 lookups, 2 void), DKIM keys (one per key), DMARC walk (8)


@pytest.mark.parametrize("name", list(SHAPES))
def test_hostile_shape_costs_linear_work_and_bounded_memory(name: str) -> None:
    config = CONFIG.get(name)
    small, large = cost(SHAPES[name], BASE, config), cost(SHAPES[name], 2 * BASE, config)
    for c in (small, large):
        assert c.decision.action in (Action.ACCEPT, Action.REJECT, Action.TEMPFAIL), c.decision
        assert c.queries <= MAX_QUERIES, (name, c.queries)
        # memory: a few copies of the input at most (the header block is kept, the body not)
        assert c.peak <= 8 * c.size + (4 << 20), (name, c.peak, c.size)
    # the shape reached what it attacks
    assert large.results is not None
    EXPECT.get(name, lambda _r: True)(large.results)
    # work: doubling the input at most doubles the calls (plus a constant for set-up)
    assert large.calls <= 2.2 * small.calls + 20_000, (name, small.calls, large.calls)
