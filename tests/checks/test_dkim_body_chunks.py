"""The whole-chunk relaxed canonicaliser against the one it replaced, at every chunk boundary.

The old ``BodyHasher`` (``tests/checks/dkim_body_oracle.py``) is the oracle here; dkimpy
remains the oracle of ``test_dkim_body.py``, run on a sample of the same bodies too.
"""

from __future__ import annotations

import random
import re

import pytest

from authmilter.checks.dkim_body import BodyHasher, BodySpec, relax
from authmilter.model import BodyDigest
from tests.checks.dkim_body_oracle import OldBodyHasher
from tests.checks.test_dkim_body import ALL_SPECS, assert_matches

# WSP runs of every length (3 and more take the replace loop), tabs, bare CR and LF,
# CRLF runs (empty lines at the end), CRLF split by a cut, text.
PIECES = [
    b"a",
    b"word",
    b" ",
    b"  ",
    b"   ",
    b"    ",
    b"\t",
    b" \t ",
    b"\t\t",
    b"\r\n",
    b"\r\n\r\n",
    b"\r\n\r\n\r\n",
    b"\r",
    b"\n",
    b"x y",
    b" \r\n",
    b"\t\r\n",
    b"  \r\n",
]


def chunked(hasher: BodyHasher | OldBodyHasher, body: bytes, cuts: list[int]) -> list[BodyDigest]:
    last = 0
    for cut in [*cuts, len(body)]:
        hasher.update(body[last:cut])
        last = cut
    return sorted(hasher.digests(), key=lambda d: (d.canon, d.algorithm, d.length or 0))


def same_as_before(body: bytes, cuts: list[int], specs: list[BodySpec] = ALL_SPECS) -> None:
    new = chunked(BodyHasher(specs), body, cuts)
    old = chunked(OldBodyHasher(specs), body, cuts)
    assert new == old, (body, cuts)


def random_body(rnd: random.Random, pieces: int) -> bytes:
    return b"".join(rnd.choice(PIECES) for _ in range(rnd.randrange(pieces)))


def random_cuts(rnd: random.Random, size: int) -> list[int]:
    how = rnd.randrange(4)
    if how == 0:  # one-byte chunks
        return list(range(1, size))
    if how == 1:  # a few cuts anywhere
        return sorted(rnd.randrange(size + 1) for _ in range(rnd.randrange(6)))
    if how == 2:  # fixed-size chunks (libmilter's are 64 KiB; small ones here)
        step = rnd.randrange(1, 9)
        return list(range(step, size, step))
    return []  # the whole body at once


@pytest.mark.parametrize("seed", range(8))
def test_random_bodies_in_random_chunks_hash_as_before(seed: int) -> None:
    rnd = random.Random(seed)
    for _ in range(300):
        body = random_body(rnd, 40)
        same_as_before(body, random_cuts(rnd, len(body)))


@pytest.mark.parametrize("seed", range(2))
def test_random_bodies_match_dkimpy_too(seed: int) -> None:
    rnd = random.Random(1000 + seed)
    for _ in range(100):
        body = random_body(rnd, 30)
        cuts = random_cuts(rnd, len(body))
        hasher = BodyHasher(ALL_SPECS)
        assert_matches(body, tuple(chunked(hasher, body, cuts)), ALL_SPECS)


def test_every_cut_of_a_body_with_every_hazard() -> None:
    body = b"a   b\t\t c  \r\n \t\r\n\r\nd \r e\r\n\n  x\t\r\n\r\n\r\n  \t"
    for i in range(len(body) + 1):
        for j in range(i, len(body) + 1):
            same_as_before(body, [i, j])


def test_large_bodies_in_libmilter_sized_chunks() -> None:
    rnd = random.Random(7)
    lines = [b" ".join(rnd.choice([b"ab", b"cde", b"f"]) for _ in range(12)) for _ in range(50)]
    tails = [b"", b" ", b"  ", b"\t", b"   \t "]
    body = b"".join(rnd.choice(lines) + rnd.choice(tails) + b"\r\n" for _ in range(30000))
    body += b"\r\n" * 5000 + b"last  line   \t"
    for size in (65535, 65536, 4096, 1000):
        same_as_before(body, list(range(size, len(body), size)))


def reference_relax(text: bytes) -> bytes:
    """RFC 6376 3.4.4 a and b for text that ends where a line may go on: the plain reading."""
    return re.sub(rb" \r\n", b"\r\n", re.sub(rb"[ \t]+", b" ", text))


@pytest.mark.parametrize("seed", range(4))
def test_relax_is_the_plain_reading_of_the_rfc(seed: int) -> None:
    rnd = random.Random(seed)
    for _ in range(500):
        text = random_body(rnd, 30).rstrip(b" \t")  # the caller holds trailing WSP back
        assert relax(text) == reference_relax(text), text


def test_a_chunk_with_nothing_to_change_is_not_copied() -> None:
    text = b"nothing to change here\r\nnor here\r\n" * 100
    assert relax(text) is text
