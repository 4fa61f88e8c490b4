"""What we sign, our own verifier accepts (and dkimpy too); oversigned From cannot be added."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import dkim
import pytest

from authmilter.checks.dkim_verify import verify_dkim
from authmilter.config import DkimConfig, KeySpec, SigningConfig
from authmilter.model import HeaderField, Transaction, parse_message
from authmilter.results import Result
from authmilter.signing.signer import Signer
from authmilter.staticresolver import StaticResolver

DATA = Path(__file__).resolve().parent.parent / "data" / "signing"
MESSAGE = (
    b"From: Alice <alice@example.com>\r\nTo: bob@example.net\r\n"
    b"Subject:  two  spaces\r\n\tfolded\r\nDate: Mon, 1 Jan 2024 00:00:00 +0000\r\n\r\n"
    b"Hello  \r\nworld \t\r\n\r\n\r\n"
)


@pytest.fixture
def signer(tmp_path: Path, request: pytest.FixtureRequest) -> Signer:
    keys = tmp_path / "keys"
    keys.mkdir(mode=0o700)
    for name in ("rsa2048-pkcs8.pem", "ed25519.pem"):
        shutil.copyfile(DATA / name, keys / name)
        os.chmod(keys / name, 0o600)
    cfg = SigningConfig(
        canonicalization=request.param,
        keys=(
            KeySpec("example.com", "rsa1", str(keys / "rsa2048-pkcs8.pem")),
            KeySpec("example.com", "ed1", str(keys / "ed25519.pem")),
        ),
    )
    return Signer.from_config(cfg, "/")


def signed_tx(s: Signer, message: bytes) -> Transaction:
    tx = parse_message(message)
    edits = s.sign(tx)
    assert len(edits) == 2
    fields = tuple(
        HeaderField("DKIM-Signature", b" " + (e.value or "").replace("\n", "\r\n").encode())
        for e in edits
    )
    return Transaction(headers=fields + tx.headers, body=tx.body)


def resolver_for(s: Signer) -> StaticResolver:
    r = StaticResolver()
    for k in s.keys:
        r.add(
            f"{k.selector}._domainkey.{k.domain}",
            "TXT",
            f"v=DKIM1; k={k.key.key_type}; p={k.key.public_p()}",
        )
    return r


CANONS = ["relaxed/relaxed", "simple/simple", "relaxed/simple", "simple/relaxed"]


@pytest.mark.parametrize("signer", CANONS, indirect=True)
def test_own_verifier_and_dkimpy_accept_both_signatures(signer: Signer) -> None:
    tx = signed_tx(signer, MESSAGE)
    resolver = resolver_for(signer)
    results = verify_dkim(tx, resolver, DkimConfig())
    assert [r.result for r in results] == [Result.PASS, Result.PASS]
    assert {r.algorithm for r in results} == {"rsa-sha256", "ed25519-sha256"}

    def dnsfunc(name: bytes, timeout: int = 5) -> bytes | None:
        txt = resolver.query(name.decode(), "TXT").txt()
        return txt[0] if txt else None

    raw = tx.raw_message()
    d = dkim.DKIM(raw)
    assert d.verify(idx=0, dnsfunc=dnsfunc) and d.verify(idx=1, dnsfunc=dnsfunc)


@pytest.mark.parametrize("signer", ["relaxed/relaxed"], indirect=True)
def test_added_from_after_signing_breaks_every_signature(signer: Signer) -> None:
    tx = signed_tx(signer, MESSAGE)
    forged = Transaction(
        headers=(*tx.headers, HeaderField("From", b" mallory@evil.example")), body=tx.body
    )
    results = verify_dkim(forged, resolver_for(signer), DkimConfig())
    assert [r.result for r in results] == [Result.FAIL, Result.FAIL]


@pytest.mark.parametrize("signer", ["relaxed/relaxed"], indirect=True)
def test_body_change_breaks_signatures(signer: Signer) -> None:
    tx = signed_tx(signer, MESSAGE)
    changed = Transaction(headers=tx.headers, body=tx.body.replace(b"world", b"World"))
    results = verify_dkim(changed, resolver_for(signer), DkimConfig())
    assert [r.result for r in results] == [Result.FAIL, Result.FAIL]
