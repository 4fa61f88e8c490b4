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
    # the daemon adds nothing to a message it rejects, and neither does test
    assert r["headers"] == {"add": [], "remove": []}
    assert r["why"] == "dmarc:reject"
    assert str(r["log"]).endswith("why=dmarc:reject action=reject(550 5.7.26)")


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


def test_internal_error_is_the_daemons_451(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """An evaluation that raises: 451 4.3.0 and the reason, exit 0, no traceback."""
    from authmilter.checks import dmarc

    def boom(*_a: object, **_k: object) -> None:
        raise RuntimeError("boom")

    monkeypatch.setattr("authmilter.engine.evaluate_dmarc", boom)
    assert dmarc.evaluate_dmarc is not boom  # patched where the engine looks it up
    args = [*ZONE, "--client-ip", "192.0.2.25", "--mail-from", "alice@example.net"]
    assert main(["test", *args, str(EX / "signed.eml")]) == 0
    out, err = capsys.readouterr()
    assert "action: tempfail (451 4.3.0 temporary local problem; please try again later)" in out
    assert "why: internal-error:eom" in out
    assert "Traceback" not in out + err
    r = run_json(capsys, *args, str(EX / "signed.eml"))
    assert r["action"] == "tempfail" and r["headers"] == {"add": [], "remove": []}
    assert r["reply"] == {
        "code": 451,
        "status": "4.3.0",
        "text": "temporary local problem; please try again later",
    }


def test_rcpt_stage_reject_is_per_recipient(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """SPF fail at RCPT: every recipient is refused, so the message ends there, as in SMTP."""
    cfg = tmp_path / "a.toml"
    cfg.write_text("[spf]\nreject_fail_at_rcpt = true\n")
    args = ["-c", str(cfg), *ZONE, "--client-ip", "203.0.113.9", "--mail-from", "a@example.net"]
    r = run_json(
        capsys, *args, "--rcpt", "a@x.example", "--rcpt", "b@x.example", str(EX / "signed.eml")
    )
    assert r["action"] == "reject" and r["reply"]["status"] == "5.7.23"  # type: ignore[index]
    assert r["dkim"] == [] and r["why"] == "spf:fail@rcpt"


def test_body_reaches_the_checks_streamed_in_postfix_chunks(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """test runs the daemon's path: the body is hashed as it streams, never kept."""
    from authmilter import cli
    from authmilter.checks.dkim_body import BodyHasher
    from authmilter.engine import Engine

    chunks: list[int] = []
    seen = []
    update = BodyHasher.update
    evaluate = Engine.evaluate

    def counting(self: BodyHasher, chunk: bytes) -> None:
        chunks.append(len(chunk))
        update(self, chunk)

    def spying(self: Engine, tx: object, spf: object = None, iprev: object = None) -> object:
        seen.append(tx)
        return evaluate(self, tx, spf, iprev)  # type: ignore[arg-type]

    monkeypatch.setattr(BodyHasher, "update", counting)
    monkeypatch.setattr(Engine, "evaluate", spying)
    big = tmp_path / "big.eml"
    signed = (EX / "signed.eml").read_bytes()
    big.write_bytes(signed + b"x" * 150_000 + b"\n")
    r = run_json(
        capsys, *ZONE, "--client-ip", "192.0.2.25", "--mail-from", "alice@example.net", str(big)
    )
    assert chunks[:2] == [cli.BODY_CHUNK, cli.BODY_CHUNK] and len(chunks) == 3
    (tx,) = seen
    assert tx.body == b"" and not tx.body_kept and tx.body_digests  # type: ignore[attr-defined]
    assert r["dkim"][0]["result"] == "fail"  # the appended text breaks the body hash  # type: ignore[index]


def test_from_warning_in_json(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    msg = tmp_path / "m.eml"
    msg.write_bytes(b'From: "ceo@victim.example" <alice@example.net>\nSubject: x\n\nhi\n')
    args = [*ZONE, "--client-ip", "192.0.2.25", "--mail-from", "alice@example.net", str(msg)]
    r = run_json(capsys, *args)
    assert r["action"] == "accept"
    assert r["from_warnings"] == [
        {"kind": "display-name", "domain": "example.net", "shown": "victim.example"}
    ]
    added = {h["name"]: h["value"] for h in r["headers"]["add"]}  # type: ignore[index]
    assert added["X-Authmilter-From-Warning"] == (
        "display-name: the From display name shows an address in another domain"
    )
    assert "from_warning=display-name(from=example.net shows=victim.example)" in str(r["log"])
    config = tmp_path / "a.toml"
    config.write_text('[from]\ndisplay_name_check = "reject"\n')
    assert main(["test", "--json", "-c", str(config), *args]) == 0
    r = json.loads(capsys.readouterr().out)
    assert r["reply"]["status"] == "5.7.1" and r["why"] == "from:display-name"


def test_verbose_prints_the_daemons_log_line_and_leaves_logging_as_it_was(
    capsys: pytest.CaptureFixture[str],
) -> None:
    import logging

    logger = logging.getLogger("authmilter")
    before = (logger.propagate, logger.level, list(logger.handlers))
    args = [*ZONE, "--client-ip", "192.0.2.25", "--mail-from", "alice@example.net"]
    assert main(["test", "-v", *args, str(EX / "signed.eml")]) == 0
    err = capsys.readouterr().err
    assert "INFO qid=TEST conn=test" in err and "action=accept" in err
    assert (logger.propagate, logger.level, list(logger.handlers)) == before


def test_json_iprev_field(capsys: pytest.CaptureFixture[str]) -> None:
    """iprev: the example zone's PTR confirms 192.0.2.25; another address has none; null
    without a client address."""
    common = ["--helo", "mail.example.net", "--mail-from", "alice@example.net"]
    good = run_json(capsys, *ZONE, "--client-ip", "192.0.2.25", *common, str(EX / "signed.eml"))
    assert good["iprev"] == {
        "result": "pass",
        "ip": "192.0.2.25",
        "name": "mail.example.net",
        "reason": "",
    }
    assert "iprev=pass policy.iprev=192.0.2.25 (mail.example.net);" in str(good["headers"])
    other = run_json(capsys, *ZONE, "--client-ip", "203.0.113.9", *common, str(EX / "signed.eml"))
    assert other["iprev"] == {
        "result": "permerror",
        "ip": "203.0.113.9",
        "name": "",
        "reason": "no PTR record",
    }
    none = run_json(capsys, *ZONE, *common, str(EX / "signed.eml"))
    assert none["iprev"] is None


def test_no_command_is_a_usage_error_said_once(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 2
    assert capsys.readouterr().err.startswith("authmilter: a command is required: ")
