"""`authmilter test` and `check-config` never record history (only `run` does)."""

from __future__ import annotations

from pathlib import Path

import pytest

from authmilter.cli import main

REPO = Path(__file__).resolve().parents[2]
EX = REPO / "conf" / "examples"


def test_test_and_check_config_write_no_history(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "authmilter.toml"
    config.write_text(
        f'[milter]\nauthserv_id = "mx.test"\n[reports]\nhistory = "sqlite:///{tmp_path}/h.db"\n'
    )
    assert main(["check-config", "-c", str(config)]) == 0
    args = ["--zone", str(EX / "example.net.zone"), "--client-ip", "192.0.2.25"]
    args += ["--mail-from", "alice@example.net", str(EX / "signed.eml")]
    assert main(["test", "-c", str(config), "--json", *args]) == 0
    assert '"dmarc"' in capsys.readouterr().out
    assert not (tmp_path / "h.db").exists()
