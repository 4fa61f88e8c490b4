"""BodyHasher: streamed DKIM body canonicalisation + hashing, with dkimpy's as the oracle."""

from __future__ import annotations

import hashlib
import random
import tracemalloc

import pytest
from dkim.canonicalization import CanonicalizationPolicy

from authmilter.checks.dkim_body import BodyHasher, BodySpec, body_specs, hash_body
from authmilter.model import BodyDigest, HeaderField, parse_message, to_crlf

ALL_SPECS: list[BodySpec] = [
    ("simple", "sha256", None),
    ("relaxed", "sha256", None),
    ("simple", "sha1", None),
    ("relaxed", "sha1", None),
    ("simple", "sha256", 0),
    ("relaxed", "sha256", 0),
    ("simple", "sha256", 7),
    ("relaxed", "sha256", 3),
    ("relaxed", "sha256", 1 << 30),
]

TRICKY = [
    b"",
    b"\r\n",
    b"\r\n\r\n\r\n",
    b"abc",
    b"abc\r\n",
    b"abc\r\n\r\n\r\n",
    b"abc  \r\n\t\r\n \r\n",
    b" \t \r\n",
    b"   ",
    b"a \t b\t\tc  \r\n",
    b"a  ",
    b"a\r",
    b"a \r",
    b"\r",
    b"\r\r\n",
    b"\n\r\n\r\n",
    b"a\r\n\r\nb\r\n\r\n",
    b"line 1\r\n\r\n  indented\r\nlast line without CRLF  \t",
    b"a\rb \r c\r\n",
    b"trailing tab\t\r\n\r\n \r\n",
]


def oracle(body: bytes, spec: BodySpec) -> tuple[bytes, int]:
    """dkimpy's canonical body hashed as the spec says: (digest, canonical length).

    The body is normalised to CRLF first, as parse_message and the adapter do (and as
    dkimpy does when it parses a whole message).
    """
    body = to_crlf(body)
    canon, algorithm, length = spec
    policy = CanonicalizationPolicy.from_c_value(f"{canon}/{canon}".encode())
    canonical = policy.canonicalize_body(body)
    signed = canonical if length is None else canonical[:length]
    return hashlib.new(algorithm, signed).digest(), len(canonical)


def streamed(body: bytes, cuts: list[int], specs: list[BodySpec]) -> tuple[BodyDigest, ...]:
    hasher = BodyHasher(specs)
    last = 0
    for cut in [*cuts, len(body)]:
        hasher.update(body[last:cut])
        last = cut
    return hasher.digests()


def assert_matches(body: bytes, digests: tuple[BodyDigest, ...], specs: list[BodySpec]) -> None:
    assert sorted((d.canon, d.algorithm, d.length or 0) for d in digests) == sorted(
        (c, a, n or 0) for c, a, n in specs
    )
    for d in digests:
        want, length = oracle(body, (d.canon, d.algorithm, d.length))
        assert (d.digest, d.canonical_length) == (want, length), (body, d)


@pytest.mark.parametrize("body", TRICKY)
def test_whole_body_matches_dkimpy(body: bytes) -> None:
    assert_matches(body, hash_body(body, ALL_SPECS), ALL_SPECS)


@pytest.mark.parametrize("body", TRICKY)
def test_every_two_chunk_split_matches_dkimpy(body: bytes) -> None:
    for cut in range(len(body) + 1):
        assert_matches(body, streamed(body, [cut], ALL_SPECS), ALL_SPECS)


def test_every_three_chunk_split_of_a_tricky_body() -> None:
    body = b"a  \r\n\t\r\nb \t\r\n\r\n  \r\n\r"
    for i in range(len(body) + 1):
        for j in range(i, len(body) + 1):
            assert_matches(body, streamed(body, [i, j], ALL_SPECS), ALL_SPECS)


def test_one_byte_chunks() -> None:
    body = TRICKY[17] + b"\r\n" + TRICKY[6] + b"\r\n\r\n"
    assert_matches(body, streamed(body, list(range(len(body))), ALL_SPECS), ALL_SPECS)


@pytest.mark.parametrize("seed", range(4))
def test_random_bodies_and_chunks_match_dkimpy(seed: int) -> None:
    rnd = random.Random(seed)
    pieces = [b"a", b"bc", b" ", b"\t", b"  ", b"\r\n", b"\r\n\r\n", b"\r", b"\n", b"x y"]
    for _ in range(400):
        body = to_crlf(b"".join(rnd.choice(pieces) for _ in range(rnd.randrange(30))))
        cuts = sorted(rnd.randrange(len(body) + 1) for _ in range(rnd.randrange(4)))
        assert_matches(body, streamed(body, cuts, ALL_SPECS), ALL_SPECS)


def test_lf_only_chunks_hash_like_the_normalised_body() -> None:
    lf = b"one  \n\ntwo\n\n\n"
    got = streamed(lf, [4, 5, 9], ALL_SPECS)
    assert_matches(to_crlf(lf), got, ALL_SPECS)
    raw = BodyHasher(ALL_SPECS, lf_to_crlf=False)
    raw.update(lf)
    assert raw.digests() != got  # the option does something


def test_length_beyond_the_body_hashes_the_whole_body() -> None:
    body = b"short\r\n"
    (d,) = hash_body(body, [("simple", "sha256", 1000)])
    assert d.digest == hashlib.sha256(body).digest()
    assert (d.length, d.canonical_length) == (1000, len(body))


def test_digests_is_final() -> None:
    h = BodyHasher([("simple", "sha256", None)])
    h.update(b"x\r\n")
    first = h.digests()
    assert h.digests() == first
    with pytest.raises(ValueError, match="after digests"):
        h.update(b"more")


def test_no_specs_no_digests_but_size_counted() -> None:
    h = BodyHasher([])
    h.update(b"abc")
    h.update(b"de")
    assert (h.digests(), h.size) == ((), 5)


@pytest.mark.parametrize("spec", [("fuzzy", "sha256", None), ("simple", "md5", None)])
def test_unknown_spec_is_refused(spec: BodySpec) -> None:
    with pytest.raises(ValueError, match="unsupported"):
        BodyHasher([spec])


# ----------------------------------------------------------------------------- memory


@pytest.mark.parametrize(
    "chunk",
    [
        b"\r\n" * 32768,  # 10 MB of empty lines: counted, not buffered
        b" " * 65536,  # 10 MB of one WSP run
        b"\t \r" * 21845 + b" ",  # WSP and lone CRs
        (b"text line with  some  spaces\r\n" * 2200)[:65536],
    ],
)
def test_ten_megabytes_in_64k_chunks_stay_small(chunk: bytes) -> None:
    specs: list[BodySpec] = [("simple", "sha256", None), ("relaxed", "sha256", None)]
    hasher = BodyHasher(specs)
    count = (10 * 1024 * 1024) // len(chunk)
    tracemalloc.start()
    try:
        for _ in range(count):
            hasher.update(chunk)
        digests = hasher.digests()
        _current, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 1024 * 1024, peak
    assert hasher.size == count * len(chunk)
    if chunk.startswith(b"\r\n"):  # only empty lines: nothing but the one CRLF (simple)
        by_canon = {d.canon: d for d in digests}
        assert by_canon["simple"].digest == hashlib.sha256(b"\r\n").digest()
        assert by_canon["relaxed"].digest == hashlib.sha256(b"").digest()


def test_empty_lines_then_text_are_all_hashed() -> None:
    """The counted CRLFs are emitted when text follows them."""
    body = b"\r\n" * 100_000 + b"end\r\n"
    got = streamed(body, list(range(0, len(body), 65536))[1:], ALL_SPECS[:4])
    assert_matches(body, got, ALL_SPECS[:4])


# ----------------------------------------------------------------------------- body_specs


def _sig(tags: str) -> HeaderField:
    return HeaderField(
        "DKIM-Signature", f" v=1; {tags}; d=example.com; s=s; h=from; b=; bh=".encode()
    )


def test_body_specs_reads_c_a_l_of_the_first_signatures() -> None:
    headers = [
        HeaderField("From", b" a@example.com"),
        _sig("a=rsa-sha256; c=relaxed/relaxed"),
        HeaderField("dkim-signature", b" a=ed25519-sha256; c=simple/simple; l=10; b=; bh="),
        _sig("a=rsa-sha256"),  # no c=: simple/simple
        _sig("a=rsa-sha256; c=relaxed"),  # body defaults to simple
        _sig("a=rsa-sha1; c=simple/relaxed"),
        _sig("a=rsa-sha256; c=relaxed/relaxed; l=5"),  # beyond the cap
    ]
    assert body_specs(headers, 5) == {
        ("relaxed", "sha256", None),
        ("simple", "sha256", 10),
        ("simple", "sha256", None),
        ("relaxed", "sha1", None),
    }
    assert body_specs(headers, 1) == {("relaxed", "sha256", None)}


@pytest.mark.parametrize(
    "bad",
    [
        "a=rsa-sha256; c=fuzzy/simple",
        "a=rsa-sha512",
        "a=rsa-sha256; l=12x",
        "a=rsa-sha256; c=relaxed/relaxed/relaxed",
        "a=rsa-sha256; a=rsa-sha256",  # duplicate tag: not a tag list
    ],
)
def test_body_specs_ignores_signatures_that_do_not_parse(bad: str) -> None:
    assert body_specs([_sig(bad)], 5) == frozenset()


def test_body_specs_of_a_parsed_message() -> None:
    msg = (
        b"DKIM-Signature: v=1; a=rsa-sha256; c=relaxed/relaxed;\r\n"
        b"\tl=42; b=; bh=\r\nFrom: x\r\n\r\n"
    )
    assert body_specs(parse_message(msg).headers, 5) == {("relaxed", "sha256", 42)}
