"""Incremental DKIM body canonicalisation and hashing (RFC 6376 3.4.3, 3.4.4, 3.7).

:class:`BodyHasher` is fed the body in chunks of any size and computes every requested
body hash in one pass, holding only O(1) state between chunks: a lone CR, "there was
white space" and a *count* of trailing CRLFs (an attacker's 10 MB of empty lines is
counted, never buffered). The output is byte-for-byte what dkimpy hashes, including its
handling of a body without a final CRLF (a CRLF is appended; relaxed keeps a trailing
space on that last line).

Use::

    hasher = BodyHasher(body_specs(headers, cfg.max_signatures))
    for chunk in chunks:
        hasher.update(chunk)
    digests = hasher.digests()   # -> Transaction(body_digests=...)
"""

from __future__ import annotations

import functools
import hashlib
import itertools
import re
from collections.abc import Iterable, Sequence
from typing import Any

import dkim.util

from authmilter.checks.taglist import parse_tag_list
from authmilter.model import BodyDigest, HeaderField

BodySpec = tuple[str, str, int | None]  # (canon, algorithm, l= or None)

CANONS = ("simple", "relaxed")
HASHES = {"rsa-sha256": "sha256", "ed25519-sha256": "sha256", "rsa-sha1": "sha1"}
_CRLF = b"\r\n"
_CRLF_BLOCK = _CRLF * 16384  # 32 KiB of empty lines, fed in pieces of this size
_L_DIGITS = re.compile(rb"\d{1,16}\Z")
_TAB_TO_SP = bytes.maketrans(b"\t", b" ")
_SPACES = itertools.repeat(b" ")
_JOIN_MAX = 4096  # parts joined at once (bytes.join holds 80 octets per part meanwhile)


def parse_c(value: bytes | None) -> tuple[str, str] | None:
    """(header canon, body canon) of a ``c=`` value; None when it is not valid."""
    if value is None:
        return ("simple", "simple")
    parts = value.strip().split(b"/")
    if len(parts) == 1:
        parts.append(b"simple")
    if len(parts) != 2:
        return None
    header, body = (p.decode("ascii", "replace") for p in parts)
    if header not in CANONS or body not in CANONS:
        return None
    return header, body


def spec_of(tags: dict[bytes, bytes]) -> BodySpec | None:
    """The body hash a parsed DKIM-Signature asks for; None when c=/a=/l= do not parse."""
    canon = parse_c(tags.get(b"c"))
    algorithm = HASHES.get(tags.get(b"a", b"").strip().lower().decode("ascii", "replace"))
    if canon is None or algorithm is None:
        return None
    length: int | None = None
    if b"l" in tags:
        raw = tags[b"l"].strip()
        if not _L_DIGITS.match(raw):
            return None
        length = int(raw)
    return canon[1], algorithm, length


_TAGS_KEPT = 2048  # octets: longer tag lists are parsed each time (the cache stays small)


@functools.lru_cache(maxsize=128)  # 16 sessions x 5 signatures in flight, at most 256 KiB
def _tags(value: bytes) -> dict[bytes, bytes]:
    tags: dict[bytes, bytes] = parse_tag_list(value)
    return tags


def parse_tags(value: bytes) -> dict[bytes, bytes]:
    """The tags of a tag list (:func:`~.taglist.parse_tag_list`), remembered for the values
    in flight: a signature is parsed at end of headers (its body hash) and again at end of
    message (its verification). A copy: the caller may change it."""
    if len(value) > _TAGS_KEPT:
        tags: dict[bytes, bytes] = parse_tag_list(value)
        return tags
    return dict(_tags(value))


def body_specs(headers: Sequence[HeaderField], max_signatures: int) -> frozenset[BodySpec]:
    """Body hashes needed by the first ``max_signatures`` DKIM-Signature fields."""
    specs: set[BodySpec] = set()
    seen = 0
    for hf in headers:
        if seen >= max_signatures:
            break
        if not hf.is_named("DKIM-Signature"):
            continue
        seen += 1
        try:
            tags = parse_tags(hf.value)
        except (dkim.util.InvalidTagValueList, ValueError):
            continue
        spec = spec_of(tags)
        if spec is not None:
            specs.add(spec)
    return frozenset(specs)


class _Sink:
    """Hashes of one canonical stream: one per (algorithm, l=), l= ones stop when full."""

    def __init__(self, wanted: Iterable[tuple[str, int | None]]) -> None:
        self.wanted = sorted(set(wanted), key=lambda w: (w[0], -1 if w[1] is None else w[1]))
        self.hashes: list[Any] = [hashlib.new(alg) for alg, _ in self.wanted]
        self.room: list[int | None] = [length for _, length in self.wanted]
        self.length = 0  # canonical octets so far

    def feed(self, data: bytes) -> None:
        if not data:
            return
        self.length += len(data)
        for i, h in enumerate(self.hashes):
            room = self.room[i]
            if room is None:
                h.update(data)
            elif room > 0:
                h.update(data[:room] if len(data) > room else data)
                self.room[i] = max(0, room - len(data))

    def feed_crlfs(self, count: int) -> None:
        while count > 0:
            n = min(count, len(_CRLF_BLOCK) // 2)
            self.feed(_CRLF_BLOCK if n * 2 == len(_CRLF_BLOCK) else _CRLF * n)
            count -= n

    def digests(self, canon: str) -> list[BodyDigest]:
        return [
            BodyDigest(canon, alg, length, h.digest(), self.length)
            for (alg, length), h in zip(self.wanted, self.hashes, strict=True)
        ]


class _TrailingLines:
    """RFC 6376 3.4.3/3.4.4 "ignore empty lines at the end": defers CRLFs by counting them.

    Input must not end in a lone CR (the caller holds that back).
    """

    def __init__(self, sink: _Sink, relaxed: bool) -> None:
        self.sink = sink
        self.relaxed = relaxed
        self.pending = 0  # CRLFs seen at the end of the data so far, not yet emitted
        self.emitted = False  # any octet other than those CRLFs emitted

    def feed(self, data: bytes) -> None:
        if not data:
            return
        if not data.endswith(b"\n"):
            self._emit(data, 0)
            return
        text = data.rstrip(b"\r\n")
        tail = data[len(text) :]
        # Longest suffix of ``tail`` (CR/LF only, ending in LF) that is whole CRLF pairs.
        start = max(tail.rfind(b"\r\r"), tail.rfind(b"\n\n")) + 1
        if tail[start : start + 1] == b"\n":
            start += 1
        cut = len(text) + start
        if cut == 0:
            self.pending += len(data) // 2
            return
        self._emit(data[:cut], (len(data) - cut) // 2)

    def _emit(self, data: bytes, pending: int) -> None:
        self.sink.feed_crlfs(self.pending)
        self.sink.feed(data)
        self.pending = pending
        self.emitted = True

    def close(self, lone_cr: bool) -> None:
        if lone_cr:
            self.sink.feed_crlfs(self.pending)
            self.sink.feed(b"\r")
            self.emitted = True
        if self.emitted:
            self.sink.feed(_CRLF)  # the last line's own CRLF (added when it had none)
        elif not self.relaxed:
            self.sink.feed(_CRLF)  # simple: an empty body is one CRLF; relaxed: nothing


class BodyHasher:
    """Canonicalise and hash a body fed in arbitrary chunks, for several specs at once.

    ``lf_to_crlf`` turns bare LF into CRLF like :func:`authmilter.model.to_crlf` (idempotent
    on CRLF input), so streamed chunks hash exactly like a kept, normalised ``tx.body``.
    """

    def __init__(self, specs: Iterable[BodySpec], *, lf_to_crlf: bool = True) -> None:
        specs = frozenset(specs)
        for canon, algorithm, length in specs:
            if canon not in CANONS or algorithm not in ("sha256", "sha1"):
                raise ValueError(f"unsupported body hash spec {(canon, algorithm, length)}")
        self.lf_to_crlf = lf_to_crlf
        self.size = 0  # raw octets fed
        self._cr = False  # the data so far ends in a CR held back
        self._wsp = False  # relaxed: a run of WSP held back (before the held CR, if any)
        self._closed: tuple[BodyDigest, ...] | None = None
        self._simple: tuple[_Sink, _TrailingLines] | None = None
        self._relaxed: tuple[_Sink, _TrailingLines] | None = None
        for canon in CANONS:
            wanted = [(alg, length) for c, alg, length in specs if c == canon]
            if wanted:
                sink = _Sink(wanted)
                stage = (sink, _TrailingLines(sink, relaxed=canon == "relaxed"))
                if canon == "simple":
                    self._simple = stage
                else:
                    self._relaxed = stage

    def update(self, chunk: bytes) -> None:
        """Feed the next piece of the body."""
        if self._closed is not None:
            raise ValueError("BodyHasher.update() after digests()")
        if not chunk:
            return
        self.size += len(chunk)
        data = b"\r" + chunk if self._cr else chunk
        self._cr = data.endswith(b"\r")
        if self._cr:
            data = data[:-1]
        if self.lf_to_crlf and data.count(b"\n") != data.count(_CRLF):
            data = data.replace(_CRLF, b"\n").replace(b"\n", _CRLF)
        if self._simple is not None:
            self._simple[1].feed(data)
        if self._relaxed is not None:
            self._relaxed_feed(data)

    def _relaxed_feed(self, data: bytes) -> None:
        assert self._relaxed is not None
        if self._wsp:
            data = b" " + data
        text = data.rstrip(b" \t")
        # The WSP at the end (before a held CR, if any) may yet be followed by CRLF.
        self._wsp = len(text) < len(data)
        self._relaxed[1].feed(relax(text))

    def digests(self) -> tuple[BodyDigest, ...]:
        """Finish (no more updates) and return one digest per spec."""
        if self._closed is not None:
            return self._closed
        out: list[BodyDigest] = []
        if self._simple is not None:
            self._simple[1].close(self._cr)
            out += self._simple[0].digests("simple")
        if self._relaxed is not None:
            tail = b" " if self._wsp else b""
            self._relaxed[1].feed(tail)
            self._relaxed[1].close(self._cr)
            out += self._relaxed[0].digests("relaxed")
        self._closed = tuple(out)
        return self._closed


def relax(text: bytes) -> bytes:
    """RFC 6376 3.4.4 a and b over whole lines: WSP runs become one SP, none before CRLF.

    Whole-chunk operations only (their cost is a few scans of the chunk, never a Python
    step per line): tabs by ``translate`` (after a ``memchr``), runs by one ``split`` and
    ``join`` on two spaces, the space left before a CRLF by one ``split`` and ``join``.
    The ``replace`` loop takes over for runs of three or more and for chunks with very
    many places to change (``join`` would hold a buffer descriptor for each part).
    """
    if b"\t" in text:
        text = text.translate(_TAB_TO_SP)
    parts = text.split(b"  ")
    if len(parts) > 1:
        # A part that is empty or starts with SP was inside a run of 3 or more.
        if len(parts) > _JOIN_MAX or b"" in parts or any(map(bytes.startswith, parts, _SPACES)):
            while b"  " in text:  # each pass halves every run
                text = text.replace(b"  ", b" ")
        else:
            text = b" ".join(parts)
    parts = text.split(b" \r\n")
    if len(parts) == 1:
        return text  # the same object: nothing copied
    if len(parts) > _JOIN_MAX:
        return text.replace(b" \r\n", _CRLF)
    return _CRLF.join(parts)


def hash_body(body: bytes, specs: Iterable[BodySpec]) -> tuple[BodyDigest, ...]:
    """All ``specs`` over a whole body held in memory (same code path as streaming)."""
    hasher = BodyHasher(specs)
    step = 1 << 20
    for i in range(0, len(body), step):
        hasher.update(body[i : i + step])
    return hasher.digests()
