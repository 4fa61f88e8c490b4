"""``check-config --dns`` prints a detail taken from a DNS record: it is cleaned first, so a
record cannot add lines or send terminal escapes (issue 13 item 3)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from authmilter import compose
from authmilter.cli import main
from authmilter.staticresolver import StaticResolver

DATA = Path(__file__).resolve().parents[1] / "data" / "signing"


def test_dns_detail_is_one_clean_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    key = tmp_path / "ed.pem"
    shutil.copyfile(DATA / "ed25519.pem", key)
    key.chmod(0o600)
    cfg = tmp_path / "a.toml"
    cfg.write_text(
        '[[signing.keys]]\ndomain = "example.com"\nselector = "ed"\nkey_file = "ed.pem"\n'
    )
    record = "v=DKIM1; k=ed25519\x1b[2J\r\nexample.com: ok\x07\u2028x; p=AAAA"
    resolver = StaticResolver({("ed._domainkey.example.com", "TXT"): [record]})
    monkeypatch.setattr(compose, "make_resolver", lambda *a, **k: resolver)
    assert main(["check-config", "--dns", "-c", str(cfg)]) == 1
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert all(line.isprintable() for line in lines), repr(out)
    assert len(lines) == 4 and lines[-1].startswith("  ed._domainkey.example.com: mismatch: "), out
    assert "unknown key type k=ed25519[2j example.com: okx" in lines[-1]  # controls dropped
