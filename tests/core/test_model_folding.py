"""parse_message is linear in folded lines and byte-identical to the old quadratic version."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from authmilter import model
from authmilter.checks.fromfield import parse_from
from authmilter.model import CRLF, Envelope, HeaderField, Transaction, parse_message, to_crlf
from authmilter.results import FromStatus

DATA = Path(__file__).resolve().parent.parent / "data"


def old_parse_message(data: bytes) -> Transaction:
    """The implementation before the fix (one concatenation per fold), as the reference."""
    data = to_crlf(data)
    if data.startswith(CRLF):
        return Transaction(envelope=Envelope(), body=data[2:])
    head, sep, body = data.partition(b"\r\n\r\n")
    lines = head.split(CRLF)
    if not sep and lines[-1] == b"":
        lines.pop()
    headers: list[HeaderField] = []
    for i, line in enumerate(lines):
        if line[:1] in (b" ", b"\t") and headers:
            last = headers[-1]
            headers[-1] = HeaderField(last.name, last.value + CRLF + line)
            continue
        name, colon, value = line.partition(b":")
        bare = name.rstrip(b" \t")
        if not colon or not bare or bare != bare.lstrip() or any(c in bare for c in b" \t"):
            rest = CRLF.join(lines[i:]) + CRLF
            body = rest + (CRLF + body if sep else b"")
            break
        headers.append(HeaderField(name.decode("ascii", "surrogateescape"), value))
    return Transaction(envelope=Envelope(), headers=tuple(headers), body=body)


HANDWRITTEN = [
    b"",
    b"\n",
    b"\r\n\r\n",
    b"From: a@x\n",
    b"From: a@x",
    b"From: a@x\nSubject: one\n\ttwo\n  three\nX:  y \n\nbody\n\n",
    b"From: a@x\r\n\r\n",
    b" leading continuation: x\nFrom: a@x\n\nb\n",
    b"From :a@x\nFrom\t: b@y\n\n",
    b"From: a@x\nnot a header\n continuation after body\n\nbody\n",
    b"From: a@x\n \n\t\n\nbody",
    b"Subject:\n x\n\n",
    b"A:\n\tB\nC: d\ne f: g\n\n",
    b"From: caf\xe9\n \xff\n\n",
    b"From: a@x\nSubject: y\n",
    b"From: a@x\r\nSubject: y\r\n \r\n",
    b"X: 1\n\n\n\nbody after blank lines\n",
    b":no name\n\n",
    b"From: a@x\rstray CR\n\n",
]

FRAGMENTS = [
    b"From: a@example.com",
    b"Subject: s",
    b"X : y",
    b"Sub ject: x",
    b":x",
    b"A:",
    b" cont",
    b"\tcont",
    b" ",
    b"\t",
    b"",
    b"not a header",
    b"\xff: \xfe",
]


def random_messages(count: int) -> list[bytes]:
    rng = random.Random(5322)
    out = []
    for _ in range(count):
        lines = [rng.choice(FRAGMENTS) for _ in range(rng.randint(0, 12))]
        out.append(b"".join(line + rng.choice((b"\n", b"\r\n")) for line in lines))
    return out


FILES = [DATA / "dkim" / "rfc8463-a3.eml", DATA / "dkim" / "dkimpy-rfc6376.signed.msg"]


@pytest.mark.parametrize("msg", HANDWRITTEN + [p.read_bytes() for p in FILES])
def test_same_as_the_old_implementation(msg: bytes) -> None:
    new, old = parse_message(msg), old_parse_message(msg)
    assert new.headers == old.headers
    assert new.body == old.body


def test_same_as_the_old_implementation_on_random_messages() -> None:
    for msg in random_messages(2000):
        new, old = parse_message(msg), old_parse_message(msg)
        assert (new.headers, new.body) == (old.headers, old.body), msg


def folded_from(lines: int) -> tuple[bytes, bytes]:
    """A message whose From value is a comment folded over ``lines`` lines, and that value."""
    value = b" (" + b"\r\n\tx" * lines + b") user@example.com"
    return b"From:" + value + b"\r\nSubject: s\r\n\r\nbody\r\n", value


def test_one_megabyte_folded_from_is_kept_byte_for_byte() -> None:
    msg, value = folded_from(1 << 18)  # 262144 continuation lines, 1 MiB
    assert len(msg) > 1 << 20
    tx = parse_message(msg)
    assert [h.name for h in tx.headers] == ["From", "Subject"]
    assert tx.headers[0].value == value
    assert tx.raw_message() == msg
    from_field = parse_from(tx)
    assert from_field.status == FromStatus.OK
    assert from_field.domains == ("example.com",)


@pytest.mark.parametrize("lines", [1, 1000, 100_000])
def test_one_header_field_built_per_field(lines: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """Linearity without timing: folds are collected, never re-built per line."""
    built: list[int] = []
    real = model.HeaderField

    def counting(name: str, value: bytes) -> HeaderField:
        built.append(len(value))
        return real(name, value)

    monkeypatch.setattr(model, "HeaderField", counting)
    msg, value = folded_from(lines)
    tx = parse_message(msg)
    assert len(built) == len(tx.headers) == 2
    assert sum(built) == len(value) + len(b" s")  # each value's octets copied into one field
