"""Test mail helpers: message building, dkimpy signing, zone text (keys: tests.support.keys)."""

from __future__ import annotations

import email.utils

import dkim

from tests.support.keys import DkimKey


def make_message(
    *,
    from_addr: str = "alice@example.org",
    to_addr: str = "bob@example.com",
    subject: str = "test message",
    body: str = "Hello.\r\n\r\nThis is a test.\r\n",
    extra_headers: tuple[tuple[str, str], ...] = (),
    message_id: str | None = None,
) -> bytes:
    """A small RFC 5322 message with CRLF line endings."""
    domain = from_addr.rpartition("@")[2] or "example.org"
    fields = [
        *extra_headers,
        ("From", from_addr),
        ("To", to_addr),
        ("Subject", subject),
        ("Date", email.utils.formatdate(localtime=False)),
        ("Message-ID", message_id or email.utils.make_msgid(domain=domain)),
    ]
    head = "".join(f"{n}: {v}\r\n" for n, v in fields)
    return (head + "\r\n" + body).encode("utf-8")


def dkim_sign(message: bytes, domain: str, selector: str, key: DkimKey) -> bytes:
    """The message with a DKIM-Signature (rsa-sha256, relaxed/relaxed) prepended."""
    sig = dkim.sign(
        message,
        selector.encode(),
        domain.encode(),
        key.private_pem,
        canonicalize=(b"relaxed", b"relaxed"),
        include_headers=[b"from", b"to", b"subject", b"date", b"message-id"],
    )
    return bytes(sig) + message


def zone(origin: str, *records: str, ttl: int = 300) -> str:
    """Zone text with ``$ORIGIN`` and ``$TTL``; ``records`` are lines such as
    ``'@ TXT "v=spf1 -all"'``."""
    lines = [f"$ORIGIN {origin.rstrip('.')}.", f"$TTL {ttl}", *records]
    return "\n".join(lines) + "\n"


def quoted(text: str) -> str:
    """A TXT value in zone-file quotes (long values are split by the DNS server)."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'
