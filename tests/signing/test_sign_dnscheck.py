"""check_published_keys: ok / missing / mismatch / temperror."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from authmilter.config import KeySpec, SigningConfig
from authmilter.signing.dnscheck import KeyStatus, check_published_keys
from authmilter.signing.signer import Signer
from authmilter.staticresolver import StaticResolver

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
    assert "unusable key" in checks[0].detail
    r2 = StaticResolver()
    r2.add("other.example.com", "TXT", "x")
    r2.add("ed1._domainkey.example.com", "TXT", "v=spf1 -all")
    checks = check_published_keys(signer, r2)
    assert [c.status for c in checks] == [KeyStatus.MISSING, KeyStatus.MISMATCH]
    assert "a verifier refuses the record: bad key record version" in checks[1].detail


def test_wrong_type_and_revoked(signer: Signer) -> None:
    rec = records(signer)
    r = StaticResolver()
    r.add("rsa1._domainkey.example.com", "TXT", rec["ed1"])
    r.add("ed1._domainkey.example.com", "TXT", "v=DKIM1; k=ed25519; p=")
    checks = check_published_keys(signer.keys, r)
    assert [c.status for c in checks] == [KeyStatus.MISMATCH, KeyStatus.MISMATCH]
    assert "k=ed25519" in checks[0].detail
    assert "revoked" in checks[1].detail


def test_several_records_are_refused_as_the_verifier_refuses_them(signer: Signer) -> None:
    rec = records(signer)
    r = StaticResolver()
    r.add("rsa1._domainkey.example.com", "TXT", "v=DKIM1; k=rsa; p=AAAA", rec["rsa1"])
    r.add("ed1._domainkey.example.com", "TXT", rec["ed1"])
    checks = check_published_keys(signer, r)
    assert [c.status for c in checks] == ["missing", "ok"]
    assert "multiple key records" in checks[0].detail


def test_a_record_the_verifier_refuses_is_never_ok(signer: Signer) -> None:
    """One parser: a record with a bad tag list or a wrong h= fails check-config too."""
    rec = records(signer)
    r = StaticResolver()
    r.add("rsa1._domainkey.example.com", "TXT", rec["rsa1"] + "; h=sha1")
    r.add("ed1._domainkey.example.com", "TXT", rec["ed1"] + "; =broken")
    checks = check_published_keys(signer, r)
    assert [c.status for c in checks] == ["mismatch", "mismatch"]
    assert "does not allow sha256" in checks[0].detail
    assert "bad key record syntax" in checks[1].detail
