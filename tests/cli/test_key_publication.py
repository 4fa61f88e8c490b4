"""``authmilter test`` and ``check-config --dns`` with signing.require_published_key: a key
whose record is not in the zone does not sign, and both commands say so."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from authmilter import compose
from authmilter.cli import main
from authmilter.signing.keys import load_key_file
from authmilter.staticresolver import StaticResolver

DATA = Path(__file__).resolve().parents[1] / "data" / "signing"
KEYS = (
    '[[signing.keys]]\ndomain = "example.com"\nselector = "old"\nkey_file = "old.pem"\n'
    '[[signing.keys]]\ndomain = "example.com"\nselector = "new"\nkey_file = "new.pem"\n'
)


@pytest.fixture
def setup(tmp_path: Path) -> tuple[Path, str]:
    """A config with two selectors; the record of "old" only (zone text)."""
    for source, target in (("rsa2048-pkcs1.pem", "old.pem"), ("ed25519.pem", "new.pem")):
        shutil.copyfile(DATA / source, tmp_path / target)
        os.chmod(tmp_path / target, 0o600)
    cfg = tmp_path / "authmilter.toml"
    cfg.write_text(KEYS)
    public = load_key_file(tmp_path / "old.pem").public_p()
    return cfg, f"v=DKIM1; k=rsa; p={public}"


def test_test_signs_with_the_published_key_only(
    tmp_path: Path, setup: tuple[Path, str], capsys: pytest.CaptureFixture[str]
) -> None:
    cfg, old_record = setup
    zone = tmp_path / "example.com.zone"
    quoted = " ".join(f'"{old_record[i : i + 200]}"' for i in range(0, len(old_record), 200))
    zone.write_text(f"$ORIGIN example.com.\n$TTL 300\nold._domainkey TXT {quoted}\n")
    message = tmp_path / "m.eml"
    message.write_text("From: alice@example.com\nTo: bob@example.org\nSubject: hi\n\nbody\n")
    argv = ["test", "--json", "-c", str(cfg), "--zone", str(zone), "--auth-user", "alice"]
    assert main([*argv, "--mail-from", "alice@example.com", str(message)]) == 0
    report = json.loads(capsys.readouterr().out)
    signatures = [h["value"] for h in report["headers"]["add"] if h["name"] == "DKIM-Signature"]
    assert len(signatures) == 1 and "s=old;" in signatures[0].replace("\n\t", " ")
    assert " signed=1 unpublished=new._domainkey.example.com " in report["log"]
    # the same without the gate: both keys sign
    cfg.write_text("[signing]\nrequire_published_key = false\n" + KEYS)
    assert main([*argv, "--mail-from", "alice@example.com", str(message)]) == 0
    report = json.loads(capsys.readouterr().out)
    assert [h["name"] for h in report["headers"]["add"]] == ["DKIM-Signature"] * 2
    assert "unpublished" not in report["log"]


def test_check_config_dns_says_which_keys_sign(
    setup: tuple[Path, str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg, old_record = setup
    resolver = StaticResolver({("old._domainkey.example.com", "TXT"): [old_record]})
    monkeypatch.setattr(compose, "make_resolver", lambda *a, **k: resolver)
    assert main(["check-config", "-c", str(cfg)]) == 0
    assert resolver.queries == []  # no DNS without --dns
    capsys.readouterr()
    assert main(["check-config", "--dns", "-c", str(cfg)]) == 1
    out = capsys.readouterr().out
    assert "  old._domainkey.example.com: ok (signs)\n" in out
    assert (
        "  new._domainkey.example.com: missing: no key (new._domainkey.example.com) "
        "(does not sign until its record is published and matches)\n"
    ) in out
    cfg.write_text("[signing]\nrequire_published_key = false\n" + KEYS)
    assert main(["check-config", "--dns", "-c", str(cfg)]) == 1
    out = capsys.readouterr().out
    assert "  old._domainkey.example.com: ok\n" in out
    assert "(signs anyway: signing.require_published_key = false)\n" in out
