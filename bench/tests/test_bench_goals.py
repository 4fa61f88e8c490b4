"""Issue 15's target table, the ARC scenario and authmilter-bare: synthetic results data, no
timing assertions."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import dkim
import pytest
from tests.support.milterclient import Modification, Reply

from bench import corpus, loadgen, milters, procstat, report, runner

PASS = {"action": "accept", "spf": "pass", "dkim": "pass", "dmarc": "pass", "arc": "none"}
ARC_PASS = {**PASS, "arc": "pass"}
SIGNED_RSA = {"action": "accept", "signatures": "rsa-sha256@rsa-signer.example"}
SIGNED_ED = {"action": "accept", "signatures": "ed25519-sha256@ed-signer.example"}


def _sc(name: str, quick: bool = False) -> runner.Scenario:
    return next(s for s in runner.scenarios(quick) if s.name == name)


def run(
    scenario: str,
    target: str,
    conc: int,
    rate: float,
    cpu: float,
    *,
    rnd: int = 0,
    p99: float = 10.0,
    rss: float = 40.0,
    verdict: dict[str, str] | None = None,
) -> dict[str, Any]:
    """One measurement as results.json holds it, checked like the runner checks it."""
    sc = _sc(scenario)
    expect = sc.expect_of(target)
    v = verdict if verdict is not None else expect
    unexpected = 0 if all(v.get(k) == x for k, x in expect.items()) else 100
    m = runner.Measurement(
        scenario, target, conc, rnd, 100, 0, 1.0, rate, 1.0, p99, cpu, rss, 20.0, 0.0, 0.3,
        True, [(v, 100)], unexpected, "",
    )  # fmt: skip
    m.invalid = runner.invalid_reason(m, expect)
    return asdict(m)


def full_run(**over: float) -> list[dict[str, Any]]:
    """Two rounds of everything the goal table needs (authmilter's numbers from ``over``)."""
    mine = {
        "rate_2k": 1600.0,
        "cpu_2k": 0.9,
        "p99_2k": 20.0,
        "rss_10m": 120.0,
        "cpu_arc": 1.2,
        "rate_bare": 1700.0,
        "cpu_bare": 0.85,
        **over,
    }
    ms = []
    for rnd in (0, 1):
        ms += [
            run("inbound-2k-rsa", "authmilter", 16, mine["rate_2k"], mine["cpu_2k"], rnd=rnd,
                p99=mine["p99_2k"]),
            run("inbound-2k-rsa", "opendkim", 16, 1000.0, 1.2, rnd=rnd, p99=25.0),
            run("inbound-2k-rsa", "opendkim+opendmarc", 16, 600.0, 2.0, rnd=rnd),
            run("inbound-2k-rsa", "authmilter-bare", 16, mine["rate_bare"], mine["cpu_bare"],
                rnd=rnd),
            run("inbound-2k-arc3", "authmilter", 16, 1000.0, mine["cpu_arc"], rnd=rnd),
            run("inbound-2k-arc3", "opendkim", 16, 900.0, 1.3, rnd=rnd),
            run("inbound-100k-rsa", "authmilter", 16, 700.0, 2.0, rnd=rnd),
            run("inbound-100k-rsa", "opendkim", 16, 500.0, 2.0, rnd=rnd),
            run("inbound-10m-rsa", "authmilter", 4, 13.0, 80.0, rnd=rnd),
            run("inbound-10m-rsa", "opendkim", 4, 10.0, 80.0, rnd=rnd),
            run("inbound-10m-rsa", "authmilter", 16, 13.0, 80.0, rnd=rnd, rss=mine["rss_10m"]),
            run("inbound-10m-rsa", "opendkim", 16, 10.0, 80.0, rnd=rnd),
            run("sign-2k-rsa", "authmilter", 4, 1900.0, 0.8, rnd=rnd),
            run("sign-2k-rsa", "opendkim", 4, 1000.0, 1.0, rnd=rnd),
            run("sign-2k-ed25519", "authmilter", 4, 2000.0, 0.8, rnd=rnd),
            run("sign-2k-ed25519", "opendkim", 4, 1000.0, 1.0, rnd=rnd),
        ]  # fmt: skip
    return ms


def rows(ms: list[dict[str, Any]], quick: bool = False) -> dict[str, tuple[str, str]]:
    return {g.label: report.goal_row(g, ms, quick) for g in report.GOALS}


def test_the_goal_table_has_the_issues_rows() -> None:
    labels = [g.label for g in report.GOALS]
    assert labels == [
        "inbound 2 KB RSA-2048, c=16, shipped config",
        "inbound 2 KB RSA-2048, c=16, vs opendkim + opendmarc chained",
        "inbound 100 KB, c=16",
        "inbound 10 MB, c=4",
        "inbound 10 MB, c=16",
        "sign 2 KB RSA-2048, c=4",
        "sign 2 KB Ed25519, c=4",
        "recording + metrics on vs off (inbound 2 KB RSA-2048, c=16)",
        "ARC: inbound 2 KB with a 3-set chain, c=16",
    ]
    assert {(g.scenario, g.conc) for g in report.GOALS} <= {
        (s.name, c) for s in runner.scenarios() for c in s.concurrencies
    }


def test_every_goal_is_met_from_the_data() -> None:
    got = rows(full_run())
    assert got["inbound 2 KB RSA-2048, c=16, shipped config"] == (
        "1.60x opendkim (1600 msg/s), 0.90 ms CPU/msg, p99 20.0 ms vs opendkim 25.0 ms",
        "yes",
    )
    assert got["inbound 2 KB RSA-2048, c=16, vs opendkim + opendmarc chained"] == (
        "2.67x opendkim+opendmarc (1600 msg/s), 0.45x opendkim+opendmarc's CPU/msg (0.90 ms)",
        "yes",
    )
    assert got["inbound 100 KB, c=16"] == ("1.40x opendkim (700 msg/s)", "yes")
    assert got["inbound 10 MB, c=4"] == ("1.30x opendkim (13 msg/s)", "yes")
    assert got["inbound 10 MB, c=16"] == ("1.30x opendkim (13 msg/s), peak RSS 120 MB", "yes")
    assert got["sign 2 KB RSA-2048, c=4"] == ("1.90x opendkim (1900 msg/s)", "yes")
    assert got["sign 2 KB Ed25519, c=4"] == ("2.00x opendkim (2000 msg/s)", "yes")
    assert got["recording + metrics on vs off (inbound 2 KB RSA-2048, c=16)"] == (
        "0.94x authmilter-bare's msg/s, 1.06x authmilter-bare's CPU/msg",
        "yes",
    )
    assert got["ARC: inbound 2 KB with a 3-set chain, c=16"] == (
        "1.33x (1.20 ms CPU/msg vs 0.90 ms in inbound-2k-rsa)",
        "yes",
    )


@pytest.mark.parametrize(
    ("over", "label", "missed"),
    [
        # CPU > 1.0 ms; also > 0.5x the chain's and > 1.1x bare's
        ({"cpu_2k": 1.1}, "inbound 2 KB RSA-2048, c=16, shipped config", 3),
        ({"p99_2k": 30.0}, "inbound 2 KB RSA-2048, c=16, shipped config", 1),
        # 1.4x opendkim; also 2.33x the chain and 0.82x bare
        ({"rate_2k": 1400.0}, "inbound 2 KB RSA-2048, c=16, shipped config", 3),
        ({"rss_10m": 160.0}, "inbound 10 MB, c=16", 1),
        ({"rate_bare": 1800.0}, "recording + metrics on vs off (inbound 2 KB RSA-2048, c=16)", 1),
        ({"cpu_bare": 0.8}, "recording + metrics on vs off (inbound 2 KB RSA-2048, c=16)", 1),
        ({"cpu_arc": 1.4}, "ARC: inbound 2 KB with a 3-set chain, c=16", 1),  # 1.56x
    ],
)
def test_a_missed_goal_says_no(over: dict[str, float], label: str, missed: int) -> None:
    got = rows(full_run(**over))
    assert got[label][1] == "**no**"
    assert sum(met == "**no**" for _, met in got.values()) == missed


def test_an_invalid_reference_or_arc_run_makes_the_row_invalid() -> None:
    ms = [
        m
        for m in full_run()
        if not (m["scenario"] == "inbound-2k-rsa" and m["target"] == "opendkim+opendmarc")
        and m["scenario"] != "inbound-2k-arc3"
    ]
    ms += [
        run("inbound-2k-rsa", "opendkim+opendmarc", 16, 900.0, 2.0, rnd=r, verdict=PASS | {
            "action": "tempfail"})
        for r in (0, 1)
    ]  # fmt: skip
    ms += [  # authmilter said arc=fail: the ARC row has nothing to judge
        run("inbound-2k-arc3", "authmilter", 16, 1000.0, 1.0, rnd=r, verdict=PASS | {"arc": "fail"})
        for r in (0, 1)
    ]
    got = rows(ms)
    chained = got["inbound 2 KB RSA-2048, c=16, vs opendkim + opendmarc chained"]
    assert (
        chained[0].startswith("INVALID: opendkim+opendmarc: 100 of 100 not") and chained[1] == "-"
    )
    arc = got["ARC: inbound 2 KB with a 3-set chain, c=16"]
    assert arc[0].startswith("INVALID: authmilter: 100 of 100 not action=accept arc=pass")
    assert arc[1] == "-"
    assert got["inbound 2 KB RSA-2048, c=16, shipped config"][1] == "yes"
    text = "\n".join(f"| {k} | {v[0]} | {v[1]} |" for k, v in got.items())
    assert "2.67x" not in text and "1.00 ms CPU/msg vs" not in text


def test_unmeasured_rows_say_so_and_quick_runs_use_their_concurrency() -> None:
    ms = [m for m in full_run() if m["scenario"] != "sign-2k-ed25519"]
    assert rows(ms)["sign 2 KB Ed25519, c=4"] == (
        "authmilter not measured (sign-2k-ed25519 c=4)",
        "-",
    )
    quick = [
        {**m, "concurrency": 4}
        for m in full_run()
        if m["scenario"] in ("inbound-2k-rsa", "inbound-2k-arc3")
    ]
    got = rows(quick, quick=True)
    assert got["ARC: inbound 2 KB with a 3-set chain, c=16"] == (
        "1.33x (1.20 ms CPU/msg vs 0.90 ms in inbound-2k-rsa) (quick run: c=4)",
        "yes",
    )
    assert rows(quick)["ARC: inbound 2 KB with a 3-set chain, c=16"][1] == "-"  # not quick


def test_an_unmeasured_row_names_the_milter_that_did_not_start() -> None:
    ms = [m for m in full_run() if m["target"] != "opendkim+opendmarc"]
    data = {
        "failed": {"opendmarc": "opendmarc not installed"},
        "scenarios": [{"name": "inbound-2k-rsa", "targets": _sc("inbound-2k-rsa").targets}],
    }
    lines: list[str] = []
    report._goals(lines.append, ms, False, data)
    row = next(x for x in lines if "opendkim + opendmarc chained" in x)
    assert (
        "| opendkim+opendmarc not measured (inbound-2k-rsa c=16) (opendmarc: opendmarc not" in row
    )
    assert row.endswith("| - |")


def test_the_arc_verdict_is_parsed_from_the_added_authentication_results() -> None:
    ar = Modification(
        "insert_header",
        "Authentication-Results",
        b" bench.authmilter; spf=pass smtp.mailfrom=a@b;\n\tdkim=pass header.d=b;"
        b"\n\tdmarc=pass header.from=b;\n\tarc=pass header.oldest-pass=0 smtp.remote-ip=192.0.2.10",
    )
    v = loadgen.verdict_of(Reply("accept", stage="eom"), [ar])
    assert (v.spf, v.dkim, v.dmarc, v.arc) == ("pass", "pass", "pass", "pass")
    none = Modification("insert_header", "Authentication-Results", b" x; arc=none; spf=pass")
    assert loadgen.verdict_of(Reply("accept"), [none]).arc == "none"
    dk = Modification("insert_header", "Authentication-Results", b" x; dkim=pass header.d=b")
    assert loadgen.verdict_of(Reply("accept"), [dk]).arc == ""  # opendkim: no arc=


def test_the_arc_scenario_and_the_bare_target() -> None:
    for quick, conc in ((True, (4,)), (False, (16,))):
        arc = _sc("inbound-2k-arc3", quick)
        assert arc.concurrencies == conc
        assert set(arc.targets) == set(milters.INBOUND_TARGETS)
        assert arc.expect_of("authmilter") == ARC_PASS
        assert arc.expect_of("authmilter-1w") == ARC_PASS
        assert arc.expect_of("opendkim") == {"action": "accept", "dkim": "pass"}  # no arc=
        inbound = _sc("inbound-2k-rsa", quick)
        assert inbound.targets["authmilter-bare"] == ("authmilter-bare",)
        assert inbound.expect_of("authmilter-bare") == PASS
    assert 16 in _sc("inbound-2k-rsa").concurrencies
    quick_sets = {s.name for s in corpus.default_specs(quick=True)}
    assert {s.message_set for s in runner.scenarios(quick=True)} <= quick_sets


def test_authmilter_bare_records_nothing_and_has_no_metrics(tmp_path: Path) -> None:
    manifest = corpus.build(tmp_path / "corpus", seed="t", specs=[])
    specs = milters.build_specs(tmp_path / "run", manifest, sys.executable)
    assert {"authmilter", "authmilter-1w", "authmilter-bare"} <= set(specs)
    bare = (tmp_path / "run" / "authmilter-bare.toml").read_text()
    shipped = (tmp_path / "run" / "authmilter.toml").read_text()
    assert 'workers = "auto"' in bare and 'history = ""' in bare and 'listen = ""' in bare
    assert 'history = "sqlite:///' in shipped and 'listen = "127.0.0.1:' in shipped


def test_the_arc_corpus_carries_a_valid_three_set_chain(tmp_path: Path) -> None:
    spec = corpus.Spec("a3", "2k", 1, corpus.INBOUND_DOMAIN, (corpus.RSA_SELECTOR,), False, arc=3)
    manifest = corpus.build(tmp_path / "one", seed="t", specs=[spec])
    again = corpus.build(tmp_path / "two", seed="t", specs=[spec])
    raw = Path(manifest["sets"]["a3"]["files"][0]).read_bytes()
    assert raw == Path(again["sets"]["a3"]["files"][0]).read_bytes()  # seeded
    zone = runner.key_zone(manifest)

    def dnsfunc(name: bytes, timeout: int = 5) -> bytes | None:
        txt = zone.get(name.decode().rstrip(".").lower())
        return txt.encode() if txt is not None else None

    cv, results, _ = dkim.arc_verify(raw, dnsfunc=dnsfunc)
    assert cv == b"pass" and len(results) == 3
    assert runner.verify_signed(raw, zone)  # the author domain's DKIM signature
    assert raw.startswith(b"ARC-Seal: i=3; cv=pass;")
    for sealer in corpus.ARC_SEALERS:
        assert f"{corpus.ARC_SELECTOR}._domainkey.{sealer}" in zone
        assert f"{corpus.ARC_SELECTOR}._domainkey.{sealer}." in Path(manifest["zone"]).read_text()
    assert manifest["sets"]["a3"]["expect"]["arc"] == "pass"


def test_peak_rss_sums_every_process_of_the_tree() -> None:
    """A multi-worker daemon's memory is its workers': a parent with a 60 MB child counts it."""
    code = (
        "import subprocess, sys, time\n"
        "c = subprocess.Popen([sys.executable, '-c', "
        '\'import time; x = bytearray(60_000_000); x[::4096] = b"y" * len(x[::4096]); '
        "time.sleep(30)'])\n"
        "time.sleep(30)\n"
    )
    parent = subprocess.Popen([sys.executable, "-c", code])
    try:
        deadline = time.monotonic() + 20
        while procstat.rss_kb(parent.pid) < 60_000 and time.monotonic() < deadline:
            time.sleep(0.05)
        tree = procstat.descendants(parent.pid)
        assert len(tree) == 2
        own = procstat._status_kb(parent.pid, "VmRSS")
        assert own < 60_000 <= procstat.rss_kb(parent.pid)
        with procstat.Meter([parent.pid]) as meter:
            time.sleep(0.2)
        assert meter.usage[parent.pid].peak_rss_kb >= 60_000
    finally:
        for pid in procstat.descendants(parent.pid)[1:]:
            os.kill(pid, 9)
        parent.kill()
        parent.wait()
