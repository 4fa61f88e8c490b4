"""check_published_keys: ok / missing / mismatch / temperror."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from authmilter.config import KeySpec, SigningConfig
from authmilter.dnsresolver import StaticResolver
from authmilter.signing.dnscheck import KeyStatus, check_published_keys
from authmilter.signing.signer import Signer

DATA = Path(__file__).resolve().parent.parent / "data" / "signing"


@pytest.fixture
def signer(tmp_path: Path) -> Signer:
    for name in ("rsa2048-pkcs1.pem", "ed25519.pem"):
        shutil.copyfile(DATA / name, tmp_path / name)
        os.chmod(tmp_path / name, 0o600)
    cfg = SigningConfig(
        keys=(
            KeySpec("example.com", "rsa1", "rsa2048-pkcs1.pem"),
            KeySpec("example.com", "ed1", "ed25519.pem"),
        )
    )
    return Signer.from_config(cfg, str(tmp_path))


def records(signer: Signer) -> dict[str, str]:
    return {k.selector: f"v=DKIM1; k={k.key.key_type}; p={k.key.public_p()}" for k in signer.keys}


def test_ok(signer: Signer) -> None:
    r = StaticResolver()
    for sel, txt in records(signer).items():
        r.add(f"{sel}._domainkey.example.com", "TXT", txt)
    checks = check_published_keys(signer, r)
    assert [(c.selector, c.status) for c in checks] == [("rsa1", "ok"), ("ed1", "ok")]
    assert checks[0].record_name == "rsa1._domainkey.example.com"


def test_missing_mismatch_temperror(signer: Signer) -> None:
    rec = records(signer)
    r = StaticResolver(temperror=["ed1._domainkey.example.com"])
    r.add("rsa1._domainkey.example.com", "TXT", rec["ed1"].replace("k=ed25519", "k=rsa"))
    checks = check_published_keys(signer, r)
    assert [c.status for c in checks] == [KeyStatus.MISMATCH, KeyStatus.TEMPERROR]
    assert "does not match" in checks[0].detail
    r2 = StaticResolver()
    r2.add("other.example.com", "TXT", "x")
    r2.add("ed1._domainkey.example.com", "TXT", "v=spf1 -all")
    checks = check_published_keys(signer, r2)
    assert [c.status for c in checks] == [KeyStatus.MISSING, KeyStatus.MISSING]


def test_wrong_type_and_revoked(signer: Signer) -> None:
    rec = records(signer)
    r = StaticResolver()
    r.add("rsa1._domainkey.example.com", "TXT", rec["ed1"])
    r.add("ed1._domainkey.example.com", "TXT", "v=DKIM1; k=ed25519; p=")
    checks = check_published_keys(signer.keys, r)
    assert [c.status for c in checks] == [KeyStatus.MISMATCH, KeyStatus.MISMATCH]
    assert "k=ed25519" in checks[0].detail
    assert "revoked" in checks[1].detail


def test_one_of_several_records_matches(signer: Signer) -> None:
    rec = records(signer)
    r = StaticResolver()
    r.add("rsa1._domainkey.example.com", "TXT", "v=DKIM1; k=rsa; p=AAAA", rec["rsa1"])
    r.add("ed1._domainkey.example.com", "TXT", rec["ed1"])
    assert [c.status for c in check_published_keys(signer, r)] == ["ok", "ok"]
