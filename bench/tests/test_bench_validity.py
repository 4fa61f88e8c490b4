"""The bench checks every target's verdicts: a reference that does not do its job makes an
INVALID run (with the reason) and no ratio; keys and sockets live where opendkim takes them.
"""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from bench import corpus, loadgen, milters, report, runner
from bench.tests.test_bench import SMALL

REPO = Path(__file__).resolve().parents[2]
INBOUND = next(s for s in runner.scenarios(quick=True) if s.name == "inbound-2k-rsa")
SIGN = next(s for s in runner.scenarios(quick=True) if s.name == "sign-2k-rsa")
PASS = {"action": "accept", "spf": "pass", "dkim": "pass", "dmarc": "pass"}


def measurement(
    sc: runner.Scenario,
    target: str,
    verdicts: list[tuple[dict[str, str], int]],
    rnd: int = 0,
    rate: float = 100.0,
    **kw: Any,
) -> runner.Measurement:
    expect = sc.expect_of(target)
    messages = sum(n for _, n in verdicts)
    unexpected = sum(n for v, n in verdicts if not all(v.get(k) == x for k, x in expect.items()))
    m = runner.Measurement(
        sc.name, target, 4, rnd, messages, 0, 1.0, rate, 1.0, 2.0, 1.0, 30.0, 20.0, 0.0, 0.3,
        True, verdicts, unexpected, "", **kw,
    )  # fmt: skip
    m.invalid = runner.invalid_reason(m, expect)
    return m


def test_each_target_is_held_to_the_fields_its_milters_deliver() -> None:
    assert INBOUND.expect_of("authmilter") == {**PASS, "arc": "none"}  # arc= only from us
    assert INBOUND.expect_of("authmilter-1w") == {**PASS, "arc": "none"}
    assert INBOUND.expect_of("authmilter-bare") == {**PASS, "arc": "none"}
    assert INBOUND.expect_of("opendkim") == {"action": "accept", "dkim": "pass"}
    assert INBOUND.expect_of("opendmarc") == {"action": "accept", "spf": "pass", "dmarc": "pass"}
    assert INBOUND.expect_of("opendkim+opendmarc") == PASS
    assert INBOUND.expect_of("pyspf-milter") == {"action": "accept", "spf": "pass"}
    assert INBOUND.expect_of("floor") == {"action": "accept"}
    signed = {"action": "accept", "signatures": "rsa-sha256@rsa-signer.example"}
    assert SIGN.expect_of("opendkim") == signed
    assert SIGN.expect_of("dkimpy-milter") == signed
    assert SIGN.expect_of("null") == {"action": "accept"}


def test_a_reference_that_tempfails_is_invalid() -> None:
    m = measurement(SIGN, "opendkim", [({"action": "tempfail"}, 500)])
    assert m.invalid.startswith("opendkim: 500 of 500 not action=accept signatures=")
    assert "action=tempfail (500)" in m.invalid


def test_a_signer_that_signs_nothing_or_badly_is_invalid() -> None:
    unsigned = measurement(SIGN, "dkimpy-milter", [({"action": "accept"}, 10)])
    assert "10 of 10 not" in unsigned.invalid and "action=accept (10)" in unsigned.invalid
    verdict = {"action": "accept", "signatures": "rsa-sha256@rsa-signer.example"}
    bad = measurement(SIGN, "opendkim", [(verdict, 10)], signed_checked=3, signed_valid=2)
    assert bad.invalid == "opendkim: 1 of 3 signatures do not verify"
    good = measurement(SIGN, "opendkim", [(verdict, 10)], signed_checked=3, signed_valid=3)
    assert good.invalid == ""


def test_wrong_results_errors_and_silence_are_invalid() -> None:
    wrong = measurement(INBOUND, "opendkim", [({"action": "accept", "dkim": "fail"}, 3)])
    assert "3 of 3 not action=accept dkim=pass: action=accept dkim=fail (3)" in wrong.invalid
    mine = measurement(INBOUND, "authmilter", [({"action": "accept", "dkim": "pass"}, 3)])
    assert mine.invalid.startswith("authmilter: 3 of 3 not")  # spf= and dmarc= are missing
    silent = measurement(INBOUND, "opendkim", [])
    assert silent.invalid == "opendkim: no message was answered"
    failing = measurement(INBOUND, "null", [({"action": "accept"}, 5)])
    failing.errors, failing.first_error = 2, "TimeoutError"
    assert runner.invalid_reason(failing, INBOUND.expect_of("null")) == (
        "null: 2 of 5 messages failed (TimeoutError)"
    )


def _data(ms: list[runner.Measurement]) -> dict[str, Any]:
    from dataclasses import asdict

    return {
        "command": "bench/run",
        "base_command": "bench/run",
        "quick": True,
        "started": "now",
        "elapsed_s": 1.0,
        "results_path": "r.json",
        "python": "py",
        "machine": {
            "nproc": 2, "cpu": "cpu", "mem_gb": 1.0, "kernel": "k", "os": "os",
            "commit": "abc", "authmilter": "0.1", "packages": {},
        },
        "scenarios": [
            {
                "name": SIGN.name, "title": "t", "count": 10, "duration": 1.0,
                "message_set": "s", "targets": {k: list(v) for k, v in SIGN.targets.items()},
            }
        ],
        "measurements": [asdict(m) for m in ms],
    }  # fmt: skip


def test_no_ratio_is_computed_from_an_invalid_run() -> None:
    signed = {"action": "accept", "signatures": "rsa-sha256@rsa-signer.example"}
    ms = [
        measurement(SIGN, "authmilter", [(signed, 500)], rnd=0, rate=260.0),
        measurement(SIGN, "opendkim", [({"action": "tempfail"}, 500)], rnd=0, rate=1000.0),
        measurement(SIGN, "authmilter", [(signed, 500)], rnd=1, rate=250.0),
        measurement(SIGN, "opendkim", [(signed, 500)], rnd=1, rate=125.0),
        measurement(SIGN, "dkimpy-milter", [({"action": "accept"}, 500)], rnd=0, rate=900.0),
    ]
    rows = [dict(r) for r in _data(ms)["measurements"]]
    assert report._ratios(rows, SIGN.name, 4, "authmilter", "opendkim") == [2.0]  # round 1 only
    assert report._ratios(rows, SIGN.name, 4, "authmilter", "dkimpy-milter") == []
    text = report.render(_data(ms))
    dkimpy = next(line for line in text.splitlines() if line.startswith("| dkimpy-milter |"))
    assert "**INVALID** (1 of 1 runs)" in dkimpy and "0.29" not in dkimpy
    opendkim = next(line for line in text.splitlines() if line.startswith("| opendkim |"))
    assert "**INVALID** (1 of 2 runs); 2.00 (2.00-2.00) from the others" in opendkim
    assert "- opendkim c=4: opendkim: 500 of 500 not action=accept" in text
    assert "INVALID: opendkim: 500 of 500" not in text  # the goal takes the valid round


def test_the_goal_row_says_invalid_when_no_round_is_valid() -> None:
    signed = {"action": "accept", "signatures": "rsa-sha256@rsa-signer.example"}
    ms = [
        measurement(SIGN, "authmilter", [(signed, 500)], rate=260.0),
        measurement(SIGN, "opendkim", [({"action": "tempfail"}, 500)], rate=1000.0),
    ]
    text = report.render(_data(ms))
    assert "| sign 2 KB RSA-2048, c=4 | >= 1.8x opendkim | INVALID: opendkim: 500 of 500" in text
    assert "0.26x" not in text


def test_reference_failures_are_listed_not_compared() -> None:
    table = {
        "m1": {
            "authmilter": PASS,
            "opendkim": {"action": "tempfail"},
            "opendkim+opendmarc": {"action": "tempfail"},
        }
    }
    assert runner.compare_verdicts(table, {}) == []
    assert runner.reference_failures(table) == [
        {"message": "m1", "reference": "opendkim", "action": "tempfail"},
        {"message": "m1", "reference": "opendkim+opendmarc", "action": "tempfail"},
    ]


def test_unsafe_directories_are_refused(tmp_path: Path) -> None:
    assert stat.S_IMODE(os.stat("/tmp").st_mode) & stat.S_IWOTH  # where a fresh clone may sit
    assert not milters._safe_dir(tmp_path)
    with pytest.raises(RuntimeError, match="no safe place"):
        milters.private_dir((tmp_path,))


@pytest.mark.skipif(os.geteuid() != 0 or not os.access("/run", os.W_OK), reason="needs /run")
def test_keys_and_sockets_go_to_a_private_directory(tmp_path: Path) -> None:
    manifest = corpus.build(tmp_path / "corpus", seed="t", specs=SMALL)
    private = milters.private_dir()
    try:
        assert milters._safe_dir(private)
        assert stat.S_IMODE(private.stat().st_mode) == 0o711
        for sub in ("keys", "sock"):
            assert stat.S_IMODE((private / sub).stat().st_mode) == 0o700
        specs = milters.build_specs(tmp_path / "run", manifest, sys.executable, private=private)
        assert all(Path(s.socket).parent == private / "sock" for s in specs.values())
        keys = list((private / "keys").iterdir())
        assert keys and all(stat.S_IMODE(k.stat().st_mode) == 0o600 for k in keys)
        conf = (tmp_path / "run" / "opendkim-sign.keytable").read_text()
        assert str(private / "keys") in conf
        assert 'workers = "auto"' in (tmp_path / "run" / "authmilter.toml").read_text()
        assert "workers = 1" in (tmp_path / "run" / "authmilter-1w.toml").read_text()
    finally:
        import shutil

        shutil.rmtree(private)


def test_the_floor_milter_adds_one_header(tmp_path: Path) -> None:
    pytest.importorskip("Milter")
    from tests.support.milterclient import MilterClient

    from bench.procs import unix_accepts

    sock = tmp_path / "floor.sock"
    proc = subprocess.Popen(
        [sys.executable, "-m", "bench.nullmilter", "--floor", f"unix:{sock}"],
        env={**os.environ, "PYTHONPATH": str(REPO)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 20
        while not unix_accepts(str(sock)) and time.monotonic() < deadline:
            time.sleep(0.05)
        with MilterClient(f"unix:{sock}") as client:
            reply = client.send_message(b"From: a@b.example\r\nSubject: x\r\n\r\nhello\r\n")
        assert reply.action == "accept"
        assert [(m.name, m.value.strip()) for m in reply.added_headers()] == [("X-Floor", b"bench")]
        raw = b"From: a@b.example\r\n\r\nhi\r\n"
        work = loadgen.Work(raw, "192.0.2.1", "h", "a@b", ("r@c",), {})
        res = loadgen.run_load([f"unix:{sock}"], [work], concurrency=2, count=4, duration=60)
        assert res.verdicts == {loadgen.Verdict("accept"): 4}
    finally:
        proc.terminate()
        proc.wait(10)
