"""Keys and signed messages made on the fly for tests (no key material in the repo)."""

from __future__ import annotations

import base64
import functools

import dkim
import nacl.signing
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa


@functools.cache
def rsa_key(bits: int = 2048) -> tuple[bytes, str]:
    """(PEM private key, base64 public key for p=)."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=bits)
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    pub = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return pem, base64.b64encode(pub).decode()


@functools.cache
def ed25519_key() -> tuple[bytes, str]:
    """(base64 seed as dkimpy wants it, base64 public key for p=)."""
    sk = nacl.signing.SigningKey(bytes(range(32)))
    return base64.b64encode(bytes(sk)), base64.b64encode(bytes(sk.verify_key)).decode()


def dkim_record(kind: str = "rsa", bits: int = 2048) -> str:
    """The TXT record for a test key."""
    if kind == "ed25519":
        return f"v=DKIM1; k=ed25519; p={ed25519_key()[1]}"
    return f"v=DKIM1; k=rsa; p={rsa_key(bits)[1]}"


def sign(
    message: bytes, domain: str, selector: str, kind: str = "rsa", bits: int = 2048, **kw: object
) -> bytes:
    """The message with a DKIM-Signature prepended (CRLF line ends)."""
    message = message.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
    if kind == "ed25519":
        sig = dkim.sign(
            message,
            selector.encode(),
            domain.encode(),
            ed25519_key()[0],
            signature_algorithm=b"ed25519-sha256",
            **kw,
        )
    else:
        sig = dkim.sign(message, selector.encode(), domain.encode(), rsa_key(bits)[0], **kw)
    return sig + message


def simple_message(
    from_addr: str = "Alice <alice@example.com>", body: str = "Hello.\n", extra: str = ""
) -> bytes:
    """A small RFC 5322 message."""
    return (
        f"From: {from_addr}\nTo: bob@example.org\nSubject: test\n"
        f"Date: Tue, 01 Dec 2026 12:00:00 +0000\nMessage-ID: <t1@example.com>\n{extra}\n"
        f"{body}"
    ).encode()
