"""The header data a DKIM signature signs (RFC 6376 3.4.1, 3.4.2, 3.7, 5.4.2).

Byte-for-byte what dkimpy hashes (checked against it by the differential tests): the
fields named in ``h=`` picked bottom-up (a name listed more often than it occurs picks
nothing the extra times), one *more* ``From`` than ``h=`` lists (dkimpy's guard against an
added From, Debian bug 644046: a second From field breaks the signature), then the
DKIM-Signature field itself with the value of its ``b=`` tag removed and no final CRLF.

The selection is linear in the fields plus the ``h=`` entries (an index by name, built once
per message and canonicalisation), never their product: ``h=`` is read before ``b=`` is
checked, so anyone with a key in DNS and a correct ``bh=`` chooses both sizes.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from authmilter.model import HeaderField

_CRLF = b"\r\n"
_FIELD_NAME = re.compile(rb"[\x21-\x39\x3b-\x7e]+\Z")  # RFC 5322 ftext
_H_SPLIT = re.compile(rb"\s*:\s*")
# a tag spec named b; group 1: its value up to the last base64 character
_B_TAG = re.compile(rb"\s*b\s*=((?:[\sA-Za-z0-9+/=]*[A-Za-z0-9+/=])?)")
_WSP_RUN = re.compile(rb"[\t ]+")


class HeaderFormatError(ValueError):
    """A header field name that no DKIM implementation would hash."""


class HeaderBudgetError(ValueError):
    """The data a signature signs does not fit in what is left of the message's budget."""

    def __init__(self, size: int, left: int, limit: int) -> None:
        super().__init__(
            f"signed header data of {size} bytes exceeds the per-message budget"
            f" ({left} of {limit} bytes left)"
        )


class CanonicalHeaders:
    """The message's header fields, canonicalised once per algorithm on first use.

    ``max_bytes`` bounds the total length of what :meth:`signed_data` returns over all
    calls (one instance per message): the cost of hashing it for every signature.
    """

    def __init__(self, fields: Sequence[HeaderField], max_bytes: int | None = None) -> None:
        self.fields = fields
        self.names: list[bytes] = []
        for hf in fields:
            name = hf.name.encode("ascii", "surrogateescape")
            if not _FIELD_NAME.match(name):
                raise HeaderFormatError(f"unexpected characters in header field name {name!r}")
            self.names.append(name)
        self._canon: dict[str, list[tuple[bytes, bytes]]] = {}
        self._index: dict[str, dict[bytes, list[int]]] = {}
        self.max_bytes = max_bytes
        self.hashed = 0  # bytes returned by signed_data so far

    def canonical(self, canon: str) -> list[tuple[bytes, bytes]]:
        """(name used for selection and hashing, value with CRLF), in message order."""
        done = self._canon.get(canon)
        if done is None:
            pairs = zip(self.names, (hf.value for hf in self.fields), strict=True)
            if canon == "relaxed":
                done = [(relaxed_name(n), relaxed_value(v) + _CRLF) for n, v in pairs]
            else:
                done = [(n, v + _CRLF) for n, v in pairs]
            self._canon[canon] = done
        return done

    def index(self, canon: str) -> dict[bytes, list[int]]:
        """Lower-case canonical name -> positions of the fields so named, bottom first."""
        index = self._index.get(canon)
        if index is None:
            index = {}
            fields = self.canonical(canon)
            for i in range(len(fields) - 1, -1, -1):
                index.setdefault(fields[i][0].lower(), []).append(i)
            self._index[canon] = index
        return index

    def signed_data(self, canon: str, h_value: bytes, signature: HeaderField) -> bytes:
        """What ``signature`` (one of the fields, with this ``h=``) signs under ``canon``.

        Linear in the fields and the ``h=`` entries: each name takes the next unused field
        of that name, bottom-up, from :meth:`index`. Raises :class:`HeaderBudgetError`
        (and counts nothing) when the result would overrun ``max_bytes``.
        """
        fields = self.canonical(canon)
        index = self.index(canon)
        wanted = [n.lower() for n in _H_SPLIT.split(h_value.strip())]
        if b"from" in wanted:
            wanted.append(b"from")
        out: list[bytes] = []
        taken: dict[bytes, int] = {}  # per name: fields already picked
        for name in wanted:
            positions = index.get(name, ())
            n = taken.get(name, 0)
            if n < len(positions):
                taken[name] = n + 1
                out += (fields[positions[n]][0], b":", fields[positions[n]][1])
        if canon == "relaxed":
            out.append(relaxed_signature(signature))
        else:
            raw_name = signature.name.encode("ascii", "surrogateescape")
            out += (raw_name, b":", strip_b_value(signature.value).rstrip())
        size = sum(map(len, out))
        if self.max_bytes is not None and self.hashed + size > self.max_bytes:
            raise HeaderBudgetError(size, self.max_bytes - self.hashed, self.max_bytes)
        self.hashed += size
        return b"".join(out)


def relaxed_field(hf: HeaderField) -> bytes:
    """One field under relaxed canonicalisation, with its CRLF (as a signature covers it)."""
    return (
        relaxed_name(hf.name.encode("ascii", "surrogateescape"))
        + b":"
        + relaxed_value(hf.value)
        + _CRLF
    )


def relaxed_signature(hf: HeaderField) -> bytes:
    """A signature or seal field relaxed, with ``b=`` empty and no CRLF: the last part of
    what it signs (RFC 6376 3.7, RFC 8617 5.1.1)."""
    name = relaxed_name(hf.name.encode("ascii", "surrogateescape"))
    return name + b":" + relaxed_value(strip_b_value(hf.value))


def relaxed_name(name: bytes) -> bytes:
    """RFC 6376 3.4.2: lower-case, no WSP before the colon."""
    return name.lower().rstrip()


def relaxed_value(value: bytes) -> bytes:
    """RFC 6376 3.4.2: unfold, compress WSP runs to one SP, strip (no CRLF)."""
    value = value.replace(_CRLF, b"").replace(b"\n", b"")
    if b"\t" in value or b"  " in value:
        value = _WSP_RUN.sub(b" ", value)
    return value.strip()


def strip_b_value(value: bytes) -> bytes:
    r"""The DKIM-Signature value with the value of its ``b=`` tag deleted (RFC 6376 3.7).

    Tag values cannot contain ``;``, so a tag starts the value or follows a ``;``; only the
    tag named ``b`` loses its value: base64 characters with the white space between them,
    up to the last base64 character (white space after it stays, as in the regular expression
    ``((?:^|(?<=;))\s*b\s*=)(?:\s*[A-Za-z0-9+/=])*`` that tests hold this to).
    """
    pieces = value.split(b";")
    for n, piece in enumerate(pieces):
        tag = _B_TAG.match(piece)
        if tag:
            pieces[n] = piece[: tag.start(1)] + piece[tag.end(1) :]
    return b";".join(pieces)
