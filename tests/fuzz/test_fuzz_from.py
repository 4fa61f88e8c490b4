"""Properties of the From parser (checks/fromfield.py): the author domain it finds is the
one every other reader would find, and hostile bytes never escape as anything but a
FromSyntaxError."""

from __future__ import annotations

from collections.abc import Callable
from email import policy
from email.errors import HeaderParseError

from hypothesis import example, given
from hypothesis import strategies as st

from authmilter.checks import fromfield
from authmilter.checks.fromfield import FromSyntaxError, parse_from, parse_mailboxes
from authmilter.model import HeaderField, Transaction
from authmilter.results import FromStatus
from tests.checks.fromfield_oracle import old_tokenize, old_unfold
from tests.fuzz.strategies import domain, dot_atom, hostile_bytes

DISPLAY = st.text("abcdefghijklmnopqrstuvwxyz ABC.,@<>\"'()\\:;", max_size=20)


@given(hostile_bytes)
@example(b"\x00")
@example(b' "a@b" <c@d.example>')
def test_any_bytes_parse_or_raise_from_syntax_error(value: bytes) -> None:
    try:
        boxes = parse_mailboxes(value)
    except FromSyntaxError:
        return
    for box in boxes:
        assert box.domain == box.domain.lower() and box.domain.isascii()


@given(dot_atom, domain, DISPLAY, st.sampled_from(["bare", "angle", "named", "quoted"]))
def test_well_formed_mailbox_gives_its_domain(local: str, dom: str, name: str, shape: str) -> None:
    quoted_name = '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'
    value = {
        "bare": f" {local}@{dom}",
        "angle": f" <{local}@{dom.upper()}>",
        "named": f" {quoted_name} <{local}@{dom}>",
        "quoted": f' "{local}" <x@{dom}>',
    }[shape]
    ff = parse_from(Transaction(headers=(HeaderField("From", value.encode()),)))
    assert (ff.status, ff.domain) == (FromStatus.OK, dom)


@given(hostile_bytes)
def test_when_both_parsers_see_one_address_they_see_one_domain(value: bytes) -> None:
    """Ours and Python's email package never disagree about a single From domain."""
    try:
        ours = parse_mailboxes(value)
    except FromSyntaxError:
        return
    if len(ours) != 1:
        return
    try:
        text = value.decode("utf-8")
        header = policy.default.header_factory("From", text.strip())
        addresses = header.addresses  # type: ignore[attr-defined]
    except (HeaderParseError, UnicodeDecodeError, IndexError, ValueError):
        return
    if len(addresses) != 1 or header.defects or not addresses[0].domain:  # type: ignore[attr-defined]
        return
    theirs = addresses[0].domain.lower().rstrip(".")
    assert theirs in (ours[0].domain, ours[0].domain.encode().decode("idna")), (value, ours)


def _outcome(
    unfold: Callable[[bytes], str], tokenize: Callable[..., object], value: bytes
) -> object:
    try:
        comments: list[str] = []
        return tokenize(unfold(value), comments), comments
    except FromSyntaxError as exc:
        return str(exc)


@given(hostile_bytes)
@example(b"Alice \x7f <a@b.example>")
@example("Bob \u0085 <a@b.example>".encode())
@example(b'a\tb.c@d.example (x) , "q" <e@[1.2.3.4]>')
def test_tokens_and_errors_are_those_of_the_character_loops(value: bytes) -> None:
    ours = _outcome(fromfield._unfold, fromfield._tokenize, value)
    assert ours == _outcome(old_unfold, old_tokenize, value)
