"""Properties of DKIM header canonicalisation and h= selection (checks/dkim_header.py) and of
the tag-list handling: dkimpy's signatures over arbitrary header sets and h= lists verify
with our verifier, a changed signed field breaks them, and b= removal touches nothing else."""

from __future__ import annotations

import dkim
import dkim.util
from hypothesis import given
from hypothesis import strategies as st

from authmilter.checks.dkim_header import CanonicalHeaders, relaxed_value, strip_b_value
from authmilter.checks.dkim_verify import verify_dkim
from authmilter.config import DkimConfig
from authmilter.model import HeaderField, parse_message
from authmilter.results import Result
from authmilter.staticresolver import StaticResolver
from tests.fuzz.strategies import field_name, field_value, hostile_bytes
from tests.support.keys import shared_ed25519_key

NAMES = st.sampled_from(["To", "Subject", "X-A", "x-a", "Date", "Reply-To", "Cc"])
# Names a signer can list in h= (no ";", which ends the tag) and not From: the messages have
# exactly one From, as any message that can pass DMARC does.
SIGNABLE = NAMES | field_name.filter(lambda n: ";" not in n and n.lower() != "from")
FIELDS = st.lists(st.tuples(SIGNABLE, field_value()), min_size=1, max_size=12)
KEY = shared_ed25519_key()


def _message(fields: list[tuple[str, bytes]]) -> bytes:
    return b"".join(n.encode() + b":" + v + b"\r\n" for n, v in fields) + b"\r\nbody\r\n"


@given(
    FIELDS,
    st.lists(SIGNABLE, min_size=1, max_size=10),
    st.sampled_from([(b"relaxed", b"relaxed"), (b"simple", b"simple"), (b"relaxed", b"simple")]),
)
def test_dkimpy_signatures_over_any_header_set_verify(
    fields: list[tuple[str, bytes]], h: list[str], canon: tuple[bytes, bytes]
) -> None:
    fields = [("From", b" a@example.com"), *fields]
    message = _message(fields)
    sig = dkim.sign(
        message,
        b"sel",
        b"example.com",
        KEY.private,
        signature_algorithm=KEY.algorithm,
        canonicalize=canon,
        include_headers=[n.encode() for n in h] + [b"from"],
    )
    resolver = StaticResolver({("sel._domainkey.example.com", "TXT"): [KEY.txt]})
    (result,) = verify_dkim(parse_message(sig + message), resolver, DkimConfig())
    assert result.result == Result.PASS, (result, sig)


@given(FIELDS, st.integers(min_value=0, max_value=11))
def test_a_changed_signed_field_breaks_the_signature(
    fields: list[tuple[str, bytes]], which: int
) -> None:
    fields = [("From", b" a@example.com"), *fields]
    message = _message(fields)
    names = [n.lower() for n, _ in fields]  # every occurrence signed
    sig = dkim.sign(
        message,
        b"sel",
        b"example.com",
        KEY.private,
        signature_algorithm=KEY.algorithm,
        include_headers=[n.encode() for n in names],
    )
    name, value = fields[which % len(fields)]
    changed = _message([(n, v + (b"X" if (n, v) == (name, value) else b"")) for n, v in fields])
    resolver = StaticResolver({("sel._domainkey.example.com", "TXT"): [KEY.txt]})
    (result,) = verify_dkim(parse_message(sig + changed), resolver, DkimConfig())
    assert result.result == Result.FAIL


@given(FIELDS, st.lists(NAMES | field_name, max_size=40))
def test_selection_takes_each_field_at_most_once(
    fields: list[tuple[str, bytes]], h: list[str]
) -> None:
    """Bottom-up h= selection: a name listed k times picks min(k, occurrences) fields (one
    more From than listed), never a field twice."""
    hfs = [HeaderField(n, v) for n, v in fields]
    sig = HeaderField("DKIM-Signature", b" v=1; b=abc")
    data = CanonicalHeaders([*hfs, sig]).signed_data("relaxed", ":".join(h).encode(), sig)
    assert data.endswith(b"dkim-signature:v=1; b=")
    wanted = [n.lower() for n in h]
    if "from" in wanted:
        wanted.append("from")
    present = [n.lower() for n, _ in fields]
    expected = sum(min(wanted.count(w), present.count(w)) for w in set(wanted))
    assert data.count(b"\r\n") == expected


@given(st.lists(st.tuples(st.text("acdefghz", min_size=1, max_size=3), hostile_bytes), max_size=8))
def test_b_value_removal_touches_only_b(tags: list[tuple[str, bytes]]) -> None:
    value = b"; ".join(n.encode() + b"=" + v.replace(b";", b"").replace(b"=", b"") for n, v in tags)
    assert strip_b_value(b" " + value + b"; b=AbC+/\r\n\t d==") == b" " + value + b"; b="


@given(hostile_bytes)
def test_relaxed_value_is_idempotent_and_unfolded(value: bytes) -> None:
    once = relaxed_value(value)
    assert relaxed_value(once) == once
    assert b"\r\n" not in once and b"  " not in once and b"\t" not in once


@given(hostile_bytes)
def test_tag_list_parser_raises_only_its_own_error(value: bytes) -> None:
    try:
        tags = dkim.util.parse_tag_value(value)
    except dkim.util.InvalidTagValueList:
        return
    assert all(isinstance(k, bytes) for k in tags)
