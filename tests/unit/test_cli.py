"""The command line: exit codes, errors on stderr, and the `test --json` contract."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from authmilter.cli import main

REPO = Path(__file__).resolve().parents[2]
EX = REPO / "conf" / "examples"
ZONE = ["--zone", str(EX / "example.net.zone")]


def run_json(capsys: pytest.CaptureFixture[str], *args: str) -> dict[str, object]:
    assert main(["test", "--json", *args]) == 0
    out = capsys.readouterr().out
    result = json.loads(out)
    assert isinstance(result, dict)
    return result


def test_sample_signed_message_passes(capsys: pytest.CaptureFixture[str]) -> None:
    r = run_json(
        capsys,
        *ZONE,
        "--client-ip",
        "192.0.2.25",
        "--helo",
        "mail.example.net",
        "--mail-from",
        "alice@example.net",
        str(EX / "signed.eml"),
    )
    assert r["action"] == "accept" and r["reply"] is None
    assert r["spf"] == {
        "result": "pass",
        "identity": "mailfrom",
        "domain": "example.net",
        "reason": r["spf"]["reason"],
    }  # type: ignore[index]
    dkim = r["dkim"]
    assert isinstance(dkim, list)
    assert [(d["result"], d["algorithm"]) for d in dkim] == [
        ("pass", "ed25519-sha256"),
        ("pass", "rsa-sha256"),
    ]
    assert r["dmarc"]["result"] == "pass" and r["dmarc"]["policy"] == "reject"  # type: ignore[index]
    added = r["headers"]["add"]  # type: ignore[index]
    assert added[0]["name"] == "Authentication-Results"


def test_sample_tampered_message_is_rejected(capsys: pytest.CaptureFixture[str]) -> None:
    r = run_json(
        capsys,
        *ZONE,
        "--client-ip",
        "203.0.113.9",
        "--helo",
        "x.example",
        "--mail-from",
        "alice@example.net",
        str(EX / "tampered.eml"),
    )
    assert r["action"] == "reject"
    assert r["reply"] == {
        "code": 550,
        "status": "5.7.26",
        "text": "DMARC policy of example.net rejects this message",
    }
    assert r["dkim"][0]["result"] == "fail"  # type: ignore[index]
    assert r["spf"]["result"] == "fail"  # type: ignore[index]


def test_null_sender_and_no_client_ip(capsys: pytest.CaptureFixture[str]) -> None:
    r = run_json(
        capsys, *ZONE, "--helo", "mail.example.net", "--mail-from", "<>", str(EX / "signed.eml")
    )
    assert r["spf"]["identity"] == "helo"  # type: ignore[index]
    assert r["dmarc"]["result"] == "pass"  # DKIM still aligns  # type: ignore[index]


def test_human_output(capsys: pytest.CaptureFixture[str]) -> None:
    assert (
        main(
            [
                "test",
                *ZONE,
                "--client-ip",
                "192.0.2.25",
                "--mail-from",
                "alice@example.net",
                str(EX / "signed.eml"),
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert out.startswith("Authentication-Results: ")
    lines = out.rstrip().splitlines()
    assert "action: accept" in lines
    assert lines[-1].startswith("log: qid=TEST conn=test client=") and "action=accept" in lines[-1]


def test_usage_errors_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 2
    assert main(["test"]) == 2  # --mail-from is required
    assert (
        main(["test", "--mail-from", "a@b", "--client-ip", "nope", *ZONE, str(EX / "signed.eml")])
        == 2
    )
    assert main(["test", "--mail-from", "a@b", *ZONE, "/nonexistent.eml"]) == 2
    err = capsys.readouterr().err
    assert "is not an IP address" in err and "cannot read /nonexistent.eml" in err


def test_config_errors_exit_78(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "a.toml"
    bad.write_text("[dmarc]\norg_domain = 'nope'\n")
    assert main(["check-config", "-c", str(bad)]) == 78
    assert main(["test", "-c", str(bad), "--mail-from", "a@b", str(EX / "signed.eml")]) == 78
    err = capsys.readouterr().err
    assert f"{bad}: dmarc.org_domain: must be one of 'treewalk', 'psl'" in err


def test_check_config_accepts_reference(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check-config", "-c", str(REPO / "conf" / "authmilter.toml")]) == 0
    assert "OK" in capsys.readouterr().out


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["--version"])
    assert exc.value.code == 0
    assert capsys.readouterr().out.startswith("authmilter ")
