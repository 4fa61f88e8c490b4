"""Tests of the benchmark harness itself (not of performance): ``pytest bench/tests``."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import dkim
import pytest
from tests.support.milterclient import Modification, Reply

from bench import corpus, loadgen, procstat, profile, report, runner

REPO = Path(__file__).resolve().parents[2]
SMALL = [
    corpus.Spec("in-rsa", "2k", 2, corpus.INBOUND_DOMAIN, (corpus.RSA_SELECTOR,), False),
    corpus.Spec(
        "in-dual", "2k", 1, corpus.INBOUND_DOMAIN, (corpus.RSA_SELECTOR, corpus.ED_SELECTOR), False
    ),
    corpus.Spec("in-bad", "2k", 1, corpus.INBOUND_DOMAIN, (corpus.ED_SELECTOR,), False, "body"),
    corpus.Spec("out", "2k", 1, corpus.SIGN_RSA_DOMAIN, (), True),
]


@pytest.fixture(scope="module")
def small_corpus(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    return corpus.build(tmp_path_factory.mktemp("c1"), seed="t", specs=SMALL)


def _verify_all(raw: bytes, zone: dict[str, str]) -> list[bool]:
    d = dkim.DKIM(raw)
    n = sum(1 for name, _ in d.headers if name.lower() == b"dkim-signature")

    def dnsfunc(name: bytes, timeout: int = 5) -> bytes | None:
        txt = zone.get(name.decode().rstrip(".").lower())
        return txt.encode() if txt else None

    out = []
    for i in range(n):
        try:
            out.append(bool(d.verify(idx=i, dnsfunc=dnsfunc)))
        except dkim.DKIMException:
            out.append(False)
    return out


def test_percentile_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    assert loadgen.percentile(values, 50) == 50.0
    assert loadgen.percentile(values, 99) == 99.0
    assert loadgen.percentile([3.0, 1.0, 2.0], 100) == 3.0
    assert loadgen.percentile([], 50) == 0.0


def test_seeded_rsa_key_is_deterministic() -> None:
    a, b = corpus.seeded_rsa_key("x"), corpus.seeded_rsa_key("x")
    c = corpus.seeded_rsa_key("y")
    assert a.private_numbers() == b.private_numbers()
    assert a.private_numbers() != c.private_numbers()
    assert a.key_size == 2048


def test_corpus_is_byte_identical_for_a_seed(small_corpus: dict[str, Any], tmp_path: Path) -> None:
    again = corpus.build(tmp_path, seed="t", specs=SMALL)
    first = small_corpus["sets"]  # type: ignore[index]
    for name, info in again["sets"].items():
        for f1, f2 in zip(first[name]["files"], info["files"], strict=True):  # type: ignore[index]
            assert Path(f1).read_bytes() == Path(f2).read_bytes()
    other = corpus.build(tmp_path / "o", seed="u", specs=SMALL[:1])
    f_other = other["sets"]["in-rsa"]["files"][0]
    assert Path(f_other).read_bytes() != Path(first["in-rsa"]["files"][0]).read_bytes()  # type: ignore[index]


def test_corpus_signatures_verify_and_tampering_breaks_them(
    small_corpus: dict[str, Any],
) -> None:
    zone = runner.key_zone(small_corpus)  # type: ignore[arg-type]
    sets = small_corpus["sets"]  # type: ignore[index]
    assert _verify_all(Path(sets["in-rsa"]["files"][0]).read_bytes(), zone) == [True]
    assert _verify_all(Path(sets["in-dual"]["files"][0]).read_bytes(), zone) == [True, True]
    assert _verify_all(Path(sets["in-bad"]["files"][0]).read_bytes(), zone) == [False]
    assert _verify_all(Path(sets["out"]["files"][0]).read_bytes(), zone) == []
    assert sets["out"]["envelope"]["macros"]["{auth_authen}"] == corpus.AUTH_USER
    text = Path(small_corpus["zone"]).read_text()  # type: ignore[arg-type]
    assert '_dmarc.sender.example. IN TXT "v=DMARC1; p=reject"' in text
    assert "rsa2048._domainkey.sender.example." in text


def test_key_files_are_private(small_corpus: dict[str, Any]) -> None:
    for key in small_corpus["keys"]:  # type: ignore[attr-defined]
        assert os.stat(key["pem"]).st_mode & 0o077 == 0


def test_verdict_of_reads_results_and_signatures() -> None:
    ar = Modification(
        "insert_header",
        "Authentication-Results",
        b" mx; spf=pass smtp.mailfrom=a@b;\n\tdkim=pass header.d=b;"
        b" dkim=fail header.d=c; dmarc=fail header.from=b",
    )
    sig = Modification(
        "insert_header",
        "DKIM-Signature",
        b"v=1; a=ed25519-sha256; c=relaxed/relaxed;\n\td=ex.example; s=s",
    )
    v = loadgen.verdict_of(Reply("accept", stage="eom"), [ar, sig])
    assert (v.action, v.spf, v.dkim, v.dmarc) == ("accept", "pass", "pass,fail", "fail")
    assert v.signatures == "ed25519-sha256@ex.example"
    r = loadgen.verdict_of(Reply("replycode", "550 5.7.26 DMARC", stage="eom"), [])
    assert (r.action, r.reply) == ("reject", "550 5.7.26 DMARC")
    assert loadgen.verdict_of(None, [], "OSError: x").action == "error"
    spf = Modification("add_header", "Received-SPF", b"Softfail (x) client-ip=1.2.3.4")
    assert loadgen.verdict_of(Reply("accept"), [spf]).spf == "softfail"


def test_compare_verdicts_finds_differences() -> None:
    same = {"action": "accept", "spf": "pass", "dkim": "pass", "dmarc": "pass"}
    table = {
        "m1": {
            "authmilter": same,
            "opendkim": {"action": "accept", "dkim": "pass"},
            "opendkim+opendmarc": same,
        },
        "m2": {
            "authmilter": {**same, "dkim": "fail"},
            "opendkim": {"action": "accept", "dkim": "pass"},
        },
        "m3": {"authmilter": {"action": "accept"}, "opendkim": {"dkim": "none"}},
    }
    table["m4"] = {
        "authmilter": {"action": "reject"},
        "opendkim": {"dkim": "fail"},
        "opendkim+opendmarc": {"action": "reject", "dmarc": "fail"},
    }
    table["m5"] = {
        "authmilter": {"action": "reject"},
        "opendkim+opendmarc": {"action": "accept", "dmarc": "pass"},
    }
    expect = {
        "m1": {"dkim": "pass"},
        "m2": {"dkim": "pass"},
        "m4": {"dkim": "fail", "action": "reject"},
    }
    out = runner.compare_verdicts(table, expect)
    assert {(x["message"], x["reference"], x["field"]) for x in out} == {
        ("m2", "opendkim", "dkim"),
        ("m2", "corpus intent", "dkim"),
        ("m5", "opendkim+opendmarc", "action"),
    }


def test_hotspots_self_and_inclusive() -> None:
    raw = (
        "process 1:main;thread (0x1);run (a/daemon.py:10);eom (a/adapter.py:5);"
        "verify (dkim/__init__.py:99) 30\n"
        "run (a/daemon.py:10);eom (a/adapter.py:7) 10\n"
        "garbage line\n"
    )
    hs = profile.hotspots(raw)
    assert hs["samples"] == 40
    assert hs["self"][0] == ("verify (dkim/__init__.py)", 30)
    assert dict(hs["inclusive"])["eom (a/adapter.py)"] == 40  # two lines of one function


def test_procstat_counts_children_cpu_and_rss() -> None:
    child = subprocess.Popen(
        [sys.executable, "-c", "x=0\nfor i in range(3_000_000): x+=i\nimport time; time.sleep(30)"]
    )
    try:
        tree = procstat.descendants(os.getpid())
        assert child.pid in tree
        before = procstat.cpu_seconds(os.getpid())
        deadline = time.monotonic() + 20
        while procstat.cpu_seconds(child.pid) < 0.05 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert procstat.cpu_seconds(os.getpid()) > before  # the child's CPU is included
        assert procstat.rss_kb(child.pid) > 1000
        assert procstat.reset_hwm(child.pid) in (True, False)
    finally:
        child.kill()
        child.wait()


def test_report_renders_tables_and_goals() -> None:
    def m(target: str, rate: float, rnd: int) -> dict[str, Any]:
        return {
            "scenario": "inbound-2k-rsa",
            "target": target,
            "concurrency": 16,
            "round": rnd,
            "messages": 100,
            "errors": 0,
            "wall_s": 1.0,
            "rate": rate,
            "p50_ms": 1.0,
            "p99_ms": 2.0,
            "cpu_ms_per_msg": 0.8,
            "peak_rss_mb": 30.0,
            "idle_rss_mb": 20.0,
            "dns_cpu_ms_per_msg": 0.0,
            "client_cpu_ms_per_msg": 0.3,
            "hwm_reset": True,
            "verdicts": [({"action": "accept", "dkim": "pass"}, 100)],
            "unexpected": 0,
            "first_error": "",
            "signed_checked": 0,
            "signed_valid": 0,
        }

    data = {
        "command": "bench/run",
        "base_command": "bench/run",
        "quick": False,
        "started": "now",
        "elapsed_s": 1.0,
        "results_path": "r.json",
        "python": "py",
        "machine": {
            "nproc": 2,
            "cpu": "cpu",
            "mem_gb": 1.0,
            "kernel": "k",
            "os": "os",
            "commit": "abc",
            "authmilter": "0.1",
            "packages": {"opendkim": "2"},
        },
        "scenarios": [
            {
                "name": "inbound-2k-rsa",
                "title": "t",
                "count": 10,
                "duration": 1.0,
                "message_set": "s",
                "targets": {"authmilter": ["authmilter"], "opendkim": ["opendkim-verify"]},
            }
        ],
        "measurements": [
            m("authmilter", 200.0, 0),
            m("opendkim", 100.0, 0),
            m("authmilter", 300.0, 1),
            m("opendkim", 100.0, 1),
        ],
    }
    text = report.render(data)
    assert "| authmilter | authmilter | 16 | 250.0 (200.0-300.0) |" in text
    assert "| opendkim | opendkim-verify | 16 | 100.0 (100.0-100.0) | 2.50 (2.00-3.00) |" in text
    assert (
        "| inbound 2 KB RSA-2048, c=16, shipped config | >= 1.5x opendkim's msg/s (DKIM only), "
        "<= 1.0 ms CPU/msg, p99 latency <= opendkim's | 2.50x opendkim (250 msg/s), "
        "0.80 ms CPU/msg, p99 2.0 ms vs opendkim 2.0 ms | yes |"
    ) in text


def test_load_client_against_the_null_milter(tmp_path: Path) -> None:
    pytest.importorskip("Milter")
    sock = tmp_path / "null.sock"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "bench.nullmilter", f"unix:{sock}"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        from bench.procs import unix_accepts

        deadline = time.monotonic() + 20
        while not unix_accepts(str(sock)) and time.monotonic() < deadline:
            time.sleep(0.05)
        work = loadgen.Work(
            b"From: a@b.example\r\nSubject: x\r\n\r\nhello\r\n",
            "192.0.2.1",
            "h.example",
            "a@b.example",
            ("r@c.example",),
            {},
        )
        res = loadgen.run_load([f"unix:{sock}"], [work], concurrency=3, count=12, duration=60)
        assert res.messages == 12 and res.errors == 0
        assert res.verdicts == {loadgen.Verdict("accept"): 12}
        bad = loadgen.run_load([f"unix:{tmp_path / 'missing.sock'}"], [work], 1, 2, 60)
        assert bad.errors == 2 and bad.rate == 0.0
    finally:
        proc.terminate()
        proc.wait(10)
