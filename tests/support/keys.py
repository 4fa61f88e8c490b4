"""The one test-key module: DKIM keys made on the fly (no key material in the repository),
their DNS records, and messages signed with them by dkimpy (the oracle)."""

from __future__ import annotations

import base64
import functools
from dataclasses import dataclass
from pathlib import Path

import dkim
import nacl.signing
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa


@dataclass(frozen=True)
class DkimKey:
    """A key pair with what DNS and dkimpy need."""

    private: bytes  # RSA: PKCS#1 PEM (every dkimpy reads it); Ed25519: base64 seed
    public_b64: str  # the p= value
    bits: int
    kind: str = "rsa"  # "rsa" | "ed25519"
    name: str = ""  # a label for test ids

    @property
    def private_pem(self) -> bytes:
        """The RSA private key as PEM."""
        return self.private

    @property
    def algorithm(self) -> bytes:
        """The a= value dkimpy signs with."""
        return b"ed25519-sha256" if self.kind == "ed25519" else b"rsa-sha256"

    @property
    def txt(self) -> str:
        """The ``selector._domainkey`` TXT value."""
        return f"v=DKIM1; k={self.kind}; p={self.public_b64}"

    record = txt

    def write(self, path: str | Path) -> Path:
        """Write the private key with mode 0600."""
        path = Path(path)
        path.write_bytes(self.private)
        path.chmod(0o600)
        return path


def new_rsa_key(bits: int = 2048) -> DkimKey:
    """A fresh RSA key."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=bits)
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    )
    spki = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return DkimKey(pem, base64.b64encode(spki).decode(), bits, "rsa", f"rsa{bits}")


def new_ed25519_key(seed: bytes | None = None) -> DkimKey:
    """An Ed25519 key: fresh, or from a 32-byte seed."""
    sk = nacl.signing.SigningKey(seed) if seed is not None else nacl.signing.SigningKey.generate()
    public = base64.b64encode(bytes(sk.verify_key)).decode()
    return DkimKey(base64.b64encode(bytes(sk)), public, 256, "ed25519", "ed25519")


def file_key(path: Path, public_path: Path, bits: int) -> DkimKey:
    """A key kept in tests/data (small RSA keys that `cryptography` refuses to generate)."""
    public = public_path.read_text().strip()
    return DkimKey(path.read_bytes(), public, bits, "rsa", f"rsa{bits}")


def shared_rsa_key(bits: int = 2048) -> DkimKey:
    """One RSA key per size for the whole test run (``shared_rsa_key()`` is ``(2048)``)."""
    return _shared_rsa_key(bits)


@functools.cache
def _shared_rsa_key(bits: int) -> DkimKey:
    return new_rsa_key(bits)


@functools.cache
def shared_ed25519_key() -> DkimKey:
    """One Ed25519 key for the whole test run."""
    return new_ed25519_key(bytes(range(32)))


def dkim_record(kind: str = "rsa", bits: int = 2048) -> str:
    """The TXT record of a shared test key."""
    return (shared_ed25519_key() if kind == "ed25519" else shared_rsa_key(bits)).txt


def sign(
    message: bytes, domain: str, selector: str, kind: str = "rsa", bits: int = 2048, **kw: object
) -> bytes:
    """The message (CRLF line ends) with a DKIM-Signature by a shared key prepended."""
    message = message.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
    key = shared_ed25519_key() if kind == "ed25519" else shared_rsa_key(bits)
    sig = dkim.sign(
        message,
        selector.encode(),
        domain.encode(),
        key.private,
        signature_algorithm=key.algorithm,
        **kw,  # type: ignore[arg-type]
    )
    return bytes(sig) + message


def simple_message(
    from_addr: str = "Alice <alice@example.com>", body: str = "Hello.\n", extra: str = ""
) -> bytes:
    """A small RFC 5322 message."""
    return (
        f"From: {from_addr}\nTo: bob@example.org\nSubject: test\n"
        f"Date: Tue, 01 Dec 2026 12:00:00 +0000\nMessage-ID: <t1@example.com>\n{extra}\n"
        f"{body}"
    ).encode()
