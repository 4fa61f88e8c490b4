"""The header data a DKIM signature signs (RFC 6376 3.4.1, 3.4.2, 3.7, 5.4.2).

Byte-for-byte what dkimpy hashes (checked against it by the differential tests): the
fields named in ``h=`` picked bottom-up (a name listed more often than it occurs picks
nothing the extra times), one *more* ``From`` than ``h=`` lists (dkimpy's guard against an
added From, Debian bug 644046: a second From field breaks the signature), then the
DKIM-Signature field itself with the value of its ``b=`` tag removed and no final CRLF.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from authmilter.model import HeaderField

_CRLF = b"\r\n"
_FIELD_NAME = re.compile(rb"[\x21-\x39\x3b-\x7e]+\Z")  # RFC 5322 ftext
_H_SPLIT = re.compile(rb"\s*:\s*")
_B_VALUE = re.compile(rb"(?:\s*[A-Za-z0-9+/=])*")
_WSP_RUN = re.compile(rb"[\t ]+")


class HeaderFormatError(ValueError):
    """A header field name that no DKIM implementation would hash."""


class CanonicalHeaders:
    """The message's header fields, canonicalised once per algorithm on first use."""

    def __init__(self, fields: Sequence[HeaderField]) -> None:
        self.fields = fields
        self.names: list[bytes] = []
        for hf in fields:
            name = hf.name.encode("ascii", "surrogateescape")
            if not _FIELD_NAME.match(name):
                raise HeaderFormatError(f"unexpected characters in header field name {name!r}")
            self.names.append(name)
        self._canon: dict[str, list[tuple[bytes, bytes]]] = {}

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

    def signed_data(self, canon: str, h_value: bytes, signature: HeaderField) -> bytes:
        """What ``signature`` (one of the fields, with this ``h=``) signs under ``canon``."""
        fields = self.canonical(canon)
        wanted = [n.lower() for n in _H_SPLIT.split(h_value.strip())]
        if b"from" in wanted:
            wanted.append(b"from")
        lowered = [n.lower() for n, _ in fields]
        out: list[bytes] = []
        last: dict[bytes, int] = {}
        for name in wanted:
            i = last.get(name, len(fields))
            while i > 0:
                i -= 1
                if lowered[i] == name:
                    out += (fields[i][0], b":", fields[i][1])
                    break
            last[name] = i
        value = strip_b_value(signature.value)
        raw_name = signature.name.encode("ascii", "surrogateescape")
        if canon == "relaxed":
            out += (relaxed_name(raw_name), b":", relaxed_value(value))
        else:
            out += (raw_name, b":", value.rstrip())
        return b"".join(out)


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
    """The DKIM-Signature value with the value of its ``b=`` tag deleted (RFC 6376 3.7).

    Tag values cannot contain ``;``, so the tags are the ``;``-separated pieces; only the
    tag named ``b`` loses its (base64 and folding) value.
    """
    pieces = value.split(b";")
    for i, piece in enumerate(pieces):
        name, eq, rest = piece.partition(b"=")
        if eq and name.strip() == b"b":
            m = _B_VALUE.match(rest)
            pieces[i] = name + eq + rest[m.end() if m else 0 :]
    return b";".join(pieces)
