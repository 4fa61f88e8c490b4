"""The body canonicaliser as it was before the whole-chunk relaxed feed: a test oracle.

A verbatim copy of ``BodyHasher`` (and its helpers) from ``authmilter/checks/dkim_body.py``
at commit 19c597a, whose relaxed feed collapsed WSP runs with a ``replace`` loop. The new
one must give the same digests for every body and every chunking
(``tests/checks/test_dkim_body_chunks.py``, ``tests/fuzz/test_fuzz_dkim_body.py``).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from typing import Any

from authmilter.checks.dkim_body import CANONS, BodySpec
from authmilter.model import BodyDigest

_CRLF = b"\r\n"
_CRLF_BLOCK = _CRLF * 16384


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


class OldBodyHasher:
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
        if b"\t" in text:
            text = text.replace(b"\t", b" ")
        while b"  " in text:  # each pass halves every run: log2(longest run) passes
            text = text.replace(b"  ", b" ")
        self._relaxed[1].feed(text.replace(b" \r\n", _CRLF))

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
