"""Test mail helpers: DKIM keys and their DNS records, signing, message building, zones."""

from __future__ import annotations

import base64
import email.utils
from dataclasses import dataclass
from pathlib import Path

import dkim
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa


@dataclass(frozen=True)
class DkimKey:
    """An RSA key pair with what DNS and dkimpy need."""

    private_pem: bytes  # PKCS#1 PEM ("BEGIN RSA PRIVATE KEY"), which every dkimpy reads
    public_b64: str  # SubjectPublicKeyInfo, base64 (the p= value)
    bits: int

    @property
    def txt(self) -> str:
        """The ``selector._domainkey`` TXT value."""
        return f"v=DKIM1; k=rsa; p={self.public_b64}"

    def write(self, path: str | Path) -> Path:
        """Write the private key with mode 0600."""
        path = Path(path)
        path.write_bytes(self.private_pem)
        path.chmod(0o600)
        return path


def rsa_key(bits: int = 2048) -> DkimKey:
    """A fresh RSA key (generated with ``cryptography``)."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=bits)
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    )
    spki = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return DkimKey(pem, base64.b64encode(spki).decode(), bits)


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
