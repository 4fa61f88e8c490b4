"""Debian's opendkim verifies what we sign: RSA-2048 and Ed25519 in one pass, From oversigned.

opendkim runs offline in test mode (``opendkim -t FILE``) with ``TestPublicKeys`` naming a file
of ``selector._domainkey.domain  record`` lines, so no DNS is involved.

The message has exactly one space after each colon: opendkim rebuilds fields from the
milter-style value (leading whitespace dropped), so under ``simple`` header canonicalisation
it fails *any* signer's signature over ``Subject:  two spaces`` (dkimpy verifies it).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from authmilter.config import KeySpec, SigningConfig
from authmilter.model import parse_message
from authmilter.signing.signer import Signer

OPENDKIM = "/usr/sbin/opendkim"
DATA = Path(__file__).resolve().parent.parent / "data" / "signing"

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(not Path(OPENDKIM).exists(), reason="opendkim is not installed"),
]

MESSAGE = (
    b"From: Alice <alice@example.com>\r\n"
    b"To: bob@example.net\r\n"
    b"Subject: hello   world\r\n\tfolded\r\n"
    b"Date: Mon, 1 Jan 2024 00:00:00 +0000\r\n"
    b"Message-ID: <x@example.com>\r\n"
    b"\r\n"
    b"Hello  \r\nworld\r\n\r\n"
)


def opendkim_results(tmp_path: Path, signer: Signer, message: bytes) -> dict[str, str]:
    """selector -> dkim result, from the Authentication-Results that -vvv prints."""
    keys = tmp_path / "testkeys"
    keys.write_text(
        "".join(
            f"{k.selector}._domainkey.{k.domain} "
            f"v=DKIM1; k={k.key.key_type}; p={k.key.public_p()}\n"
            for k in signer.keys
        )
    )
    conf = tmp_path / "opendkim.conf"
    conf.write_text(f"Mode v\nSyslog no\nTestPublicKeys {keys}\n")
    msg = tmp_path / "message.eml"
    msg.write_bytes(message)
    proc = subprocess.run(
        [OPENDKIM, "-x", str(conf), "-vvv", "-t", str(msg)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    out = proc.stdout + proc.stderr
    results = {s: r for r, s in re.findall(r"dkim=(\w+)[^;]*?header\.s=([\w.-]+)", out)}
    assert results, out
    return results


def signed(signer: Signer, message: bytes) -> bytes:
    tx = parse_message(message)
    out = tx.raw_message()
    for e in signer.sign(tx):
        out = b"DKIM-Signature: " + e.value.replace("\n", "\r\n").encode() + b"\r\n" + out
    return out


@pytest.fixture
def signer_factory(tmp_path: Path):  # type: ignore[no-untyped-def]
    d = tmp_path / "keys"
    d.mkdir(mode=0o700)
    for name in ("rsa2048-pkcs1.pem", "ed25519.pem"):
        shutil.copyfile(DATA / name, d / name)
        os.chmod(d / name, 0o600)

    def make(canon: str) -> Signer:
        cfg = SigningConfig(
            canonicalization=canon,
            keys=(
                KeySpec("example.com", "rsa1", str(d / "rsa2048-pkcs1.pem")),
                KeySpec("example.com", "ed1", str(d / "ed25519.pem")),
            ),
        )
        return Signer.from_config(cfg, "/")

    return make


@pytest.mark.parametrize("canon", ["relaxed/relaxed", "simple/simple"])
def test_opendkim_verifies_dual_signature(tmp_path: Path, signer_factory, canon: str) -> None:  # type: ignore[no-untyped-def]
    signer = signer_factory(canon)
    message = signed(signer, MESSAGE)
    assert b"h=From:To:Subject:Date:From;" in message.replace(b"\r\n\t", b"")
    assert opendkim_results(tmp_path, signer, message) == {"rsa1": "pass", "ed1": "pass"}


def test_opendkim_rejects_tampering(tmp_path: Path, signer_factory) -> None:  # type: ignore[no-untyped-def]
    signer = signer_factory("relaxed/relaxed")
    message = signed(signer, MESSAGE)
    tampered = message.replace(b"Hello", b"Jello")
    assert opendkim_results(tmp_path, signer, tampered) == {"rsa1": "fail", "ed1": "fail"}
    extra_from = message.replace(b"\r\n\r\nHello", b"\r\nFrom: evil@example.org\r\n\r\nHello")
    results = opendkim_results(tmp_path, signer, extra_from)
    assert "pass" not in results.values()
