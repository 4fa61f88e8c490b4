"""The immutable transaction the checks work on: envelope, raw header fields, body.

Nothing here does I/O. The adapter builds an :class:`Envelope` by MAIL FROM time (SPF runs
on it) and a :class:`Transaction` at end of message.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

CRLF = b"\r\n"


def to_crlf(data: bytes) -> bytes:
    """Normalise any mix of LF / CRLF line ends to CRLF."""
    return data.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")


def strip_brackets(address: str) -> str:
    """An SMTP path without its angle brackets (``<a@b>`` -> ``a@b``, ``<>`` -> "")."""
    address = address.strip()
    if address.startswith("<") and address.endswith(">"):
        address = address[1:-1]
    return address


@dataclass(frozen=True, slots=True)
class HeaderField:
    """One header field exactly as received.

    ``value`` is the raw bytes after the colon: the leading space is kept and folded
    continuation lines are separated by CRLF (the adapter normalises LF to CRLF).
    """

    name: str
    value: bytes

    def raw(self) -> bytes:
        """The field as it stands in the message, with its terminating CRLF."""
        return self.name.encode("ascii", "surrogateescape") + b":" + self.value + CRLF

    def text(self) -> str:
        """The unfolded value as text (UTF-8, undecodable bytes kept as surrogates), stripped."""
        unfolded = self.value.replace(b"\r\n", b"").replace(b"\n", b"")
        return unfolded.decode("utf-8", "surrogateescape").strip()

    def is_named(self, name: str) -> bool:
        """Case-insensitive field name comparison (obsolete WSP before the colon ignored)."""
        return self.name.rstrip(" \t").lower() == name.lower()


@dataclass(frozen=True, slots=True)
class Envelope:
    """What is known by MAIL FROM / RCPT TO time."""

    client_ip: IPAddress | None = None
    client_name: str = ""
    helo: str = ""
    mail_from: str = ""  # without angle brackets; "" is the null reverse-path
    rcpt_to: tuple[str, ...] = ()
    auth_user: str | None = None  # {auth_authen}
    daemon_name: str = ""  # {daemon_name}
    queue_id: str = ""  # {i}

    @property
    def mail_from_domain(self) -> str:
        """Domain part of MAIL FROM, lower-case; "" for the null sender or no domain."""
        addr = self.mail_from
        if "@" not in addr:
            return ""
        return addr.rsplit("@", 1)[1].strip().rstrip(".").lower()


@dataclass(frozen=True, slots=True)
class BodyDigest:
    """A DKIM body hash computed while the body streamed in (RFC 6376 3.7)."""

    canon: str  # "simple" | "relaxed"
    algorithm: str  # "sha256" | "sha1"
    length: int | None  # l= limit on canonicalised octets; None = the whole body
    digest: bytes  # raw digest of min(length, all) canonicalised octets
    canonical_length: int  # canonicalised octets of the whole body


@dataclass(frozen=True, slots=True)
class Transaction:
    """One message: envelope, header fields in order, body (CRLF line ends).

    When the adapter streamed the body through DKIM body hashers it may leave ``body`` empty
    and give ``body_digests`` and ``body_size`` instead, so that a large body is never held
    in memory; code that needs the bytes checks ``body_kept``.
    """

    envelope: Envelope = field(default_factory=Envelope)
    headers: tuple[HeaderField, ...] = ()
    body: bytes = b""
    body_digests: tuple[BodyDigest, ...] = ()
    body_size: int | None = None  # octets of the body when it was not kept

    @property
    def body_kept(self) -> bool:
        """True when ``body`` holds the whole body."""
        return self.body_size is None

    @property
    def size(self) -> int:
        """Body size in octets, kept or not."""
        return len(self.body) if self.body_size is None else self.body_size

    def digest_for(self, canon: str, algorithm: str, length: int | None) -> BodyDigest | None:
        """A precomputed body hash with exactly these parameters, if any."""
        for d in self.body_digests:
            if (d.canon, d.algorithm, d.length) == (canon, algorithm, length):
                return d
        return None

    def get_all(self, name: str) -> tuple[HeaderField, ...]:
        """All fields with this name, in message order."""
        return tuple(h for h in self.headers if h.is_named(name))

    def raw_headers(self) -> bytes:
        """The header block, byte for byte, without the blank separator line."""
        return b"".join(h.raw() for h in self.headers)

    def raw_message(self) -> bytes:
        """Header block, blank line and body: what DKIM hashes."""
        return self.raw_headers() + CRLF + self.body


def parse_message(data: bytes, envelope: Envelope | None = None) -> Transaction:
    """Split a raw RFC 5322 message (LF or CRLF line ends) into a Transaction.

    Used by ``authmilter test`` and by tests. Lines that are neither a field nor a
    continuation end the header block (as an MTA would treat them: start of body).
    """
    data = to_crlf(data)
    if data.startswith(CRLF):
        return Transaction(envelope=envelope or Envelope(), body=data[2:])
    head, sep, body = data.partition(b"\r\n\r\n")
    lines = head.split(CRLF)
    if not sep and lines[-1] == b"":
        lines.pop()
    fields: list[tuple[bytes, list[bytes]]] = []  # name, value lines (joined once: linear)
    for i, line in enumerate(lines):
        if line[:1] in (b" ", b"\t") and fields:
            fields[-1][1].append(line)
            continue
        name, colon, value = line.partition(b":")
        bare = name.rstrip(b" \t")  # "From :" (obsolete WSP before the colon) is a field too
        if not colon or not bare or bare != bare.lstrip() or any(c in bare for c in b" \t"):
            # Not a header line: from here on it is body, as an MTA would see it.
            rest = CRLF.join(lines[i:]) + CRLF
            body = rest + (CRLF + body if sep else b"")
            break
        fields.append((name, [value]))
    headers = tuple(
        HeaderField(name.decode("ascii", "surrogateescape"), CRLF.join(parts))
        for name, parts in fields
    )
    return Transaction(envelope=envelope or Envelope(), headers=headers, body=body)
