"""``python3 -m bench run|report|corpus``: the whole benchmark, or parts of it.

``bench/run`` (as root) installs what is missing and calls ``python3 -m bench run``.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import shlex
import signal
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from bench import corpus, loadgen, milters, report, runner
from bench import profile as prof

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
PROFILED = "authmilter-1w"


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python3 -m bench")
    sub = p.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run", help="run the benchmark and write RESULTS.md")
    r.add_argument("--quick", action="store_true", help="smoke run: seconds, not minutes")
    r.add_argument("--work", type=Path, default=BENCH / "work")
    r.add_argument(
        "--python",
        default=milters.python_default(),
        help="Python that runs authmilter and the null milter",
    )
    r.add_argument("--rounds", type=int, default=None, help="default 3 (quick: 1)")
    r.add_argument("--scenario", action="append", default=None)
    r.add_argument("--target", action="append", default=None)
    r.add_argument("--conc", action="append", type=int, default=None)
    r.add_argument("--no-verdicts", action="store_true")
    r.add_argument("--no-profile", action="store_true")
    r.add_argument("--no-postfix", action="store_true")
    r.add_argument(
        "--budget",
        type=float,
        default=3600.0,
        help="stop starting new scenarios after this many seconds",
    )
    r.add_argument(
        "--out",
        type=Path,
        default=None,
        help="default bench/RESULTS.md (quick: bench/work/RESULTS-quick.md)",
    )
    rep = sub.add_parser("report", help="rewrite RESULTS.md from a results JSON")
    rep.add_argument("--results", type=Path, default=BENCH / "work" / "results.json")
    rep.add_argument("--out", type=Path, default=BENCH / "RESULTS.md")
    c = sub.add_parser("corpus", help="only generate the corpus")
    c.add_argument("--work", type=Path, default=BENCH / "work")
    c.add_argument("--quick", action="store_true")
    return p


def _read(path: str) -> str:
    try:
        return Path(path).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""


def machine_info(python: str) -> dict[str, Any]:
    """nproc, CPU model, memory, versions."""
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in _read("/proc/cpuinfo").splitlines()
            if line.startswith("model name")
        ),
        platform.processor() or "?",
    )
    mem_kb = next(
        (
            int(line.split()[1])
            for line in _read("/proc/meminfo").splitlines()
            if line.startswith("MemTotal:")
        ),
        0,
    )
    os_name = next(
        (
            line.split("=", 1)[1].strip('"')
            for line in _read("/etc/os-release").splitlines()
            if line.startswith("PRETTY_NAME=")
        ),
        "?",
    )
    head = _read(str(REPO / ".git" / "HEAD")).strip()
    commit = head
    if head.startswith("ref: "):
        commit = _read(str(REPO / ".git" / head[5:])).strip() or head[5:]
    pkgs = {
        p: milters._pkg_version(p)
        for p in (
            "opendkim",
            "opendmarc",
            "dkimpy-milter",
            "pyspf-milter",
            "postfix",
            "python3-dkim",
            "python3-milter",
            "python3-spf",
            "python3-dnspython",
            "libmilter1.0.1",
        )
    }
    specs_version = (
        os.popen(  # noqa: S605 (fixed command)
            f"PYTHONPATH={REPO / 'milter'} {shlex.quote(python)} -c "
            "'import authmilter,sys;print(authmilter.__version__)' 2>/dev/null"
        )
        .read()
        .strip()
    )
    return {
        "nproc": os.cpu_count(),
        "cpu": cpu,
        "mem_gb": mem_kb / 1024 / 1024,
        "kernel": platform.release(),
        "os": os_name,
        "commit": commit[:12] or "?",
        "authmilter": specs_version or "?",
        "packages": pkgs,
    }


def ensure_corpus(work: Path, quick: bool) -> dict[str, Any]:
    """Build the corpus unless a matching one is already there."""
    out = work / ("corpus-quick" if quick else "corpus")
    try:
        manifest = corpus.load_manifest(out)
        wanted = {s.name for s in corpus.default_specs(quick)}
        if (
            manifest.get("quick") == quick
            and wanted == set(manifest["sets"])
            and all(Path(f).exists() for s in manifest["sets"].values() for f in s["files"])
        ):
            return manifest
    except (OSError, ValueError):
        pass
    runner.log_stderr(f"generating corpus in {out} ...")
    return corpus.build(out, quick=quick)


def _profile(b: runner.Bench, work: Path, quick: bool) -> dict[str, Any]:
    py_spy = prof.find_py_spy(work)
    out: dict[str, Any] = {}
    cases = [
        ("inbound-2k-rsa, c=16", "inbound-2k-rsa", 16),
        ("sign-2k-rsa, c=4", "sign-2k-rsa", 4),
        ("inbound-100k-rsa, c=16", "inbound-100k-rsa", 16),
    ]
    seconds = 3 if quick else 10
    for title, set_name, conc in cases[:1] if quick else cases:
        if py_spy is None:
            out[title] = {"error": "py-spy not found (bench/run installs it into bench/work/tools)"}
            continue
        # one process to sample: the one-worker daemon (with workers "auto" the supervisor
        # only forwards signals; its workers do the work)
        if not b.ensure((PROFILED,)):
            out[title] = {"error": f"{PROFILED} did not start"}
            continue
        pid = b.procs[PROFILED].pid
        raw_path = work / "profile" / f"{set_name}-c{conc}.txt"
        spy = prof.record(py_spy, pid, seconds, raw_path)
        time.sleep(0.5)
        works = loadgen.works_from_manifest(b.manifest["sets"][set_name])
        loadgen.run_load([b.specs[PROFILED].address], works, conc, 10**6, seconds)
        try:
            _, err = spy.communicate(timeout=seconds + 30)
        except Exception:
            spy.kill()
            spy.communicate()
            err = b"py-spy did not finish"
        if not raw_path.exists():
            out[title] = {"error": f"py-spy failed: {err.decode(errors='replace')[-300:]}"}
            continue
        hs = prof.hotspots(raw_path.read_text(errors="replace"))
        hs["command"] = (
            f"py-spy record --pid <{PROFILED}> --duration {seconds} --rate 200 "
            f"--format raw --nonblocking --gil (raw stacks: {raw_path})"
        )
        out[title] = hs
    return out


def cmd_run(args: argparse.Namespace) -> int:
    """The benchmark."""
    if os.geteuid() != 0:
        print("bench: run as root (binds 127.53.0.1:53, uses unshare -m)", file=sys.stderr)
        return 2
    quick = args.quick
    rounds = args.rounds or (1 if quick else 3)
    work: Path = args.work.resolve()
    work.mkdir(parents=True, exist_ok=True)
    out = args.out or (work / "RESULTS-quick.md" if quick else BENCH / "RESULTS.md")
    results_name = "results-quick.json" if quick else "results.json"
    started = datetime.datetime.now(datetime.UTC)
    t0 = time.monotonic()
    base = "bench/run" + (" --quick" if quick else "")
    command = "bench/run " + " ".join(shlex.quote(a) for a in sys.argv[2:])

    def on_term(signum: int, frame: object) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, on_term)
    manifest = ensure_corpus(work, quick)
    data: dict[str, Any] = {
        "command": command.strip(),
        "base_command": base,
        "quick": quick,
        "started": started.strftime("%Y-%m-%d %H:%M UTC"),
        "python": args.python,
        "machine": machine_info(args.python),
        "results_path": str(work / results_name),
        "scenarios": [],
        "measurements": [],
        "skipped": [],
        "failed": {},
    }
    all_sc = runner.scenarios(quick)
    chosen = [s for s in all_sc if args.scenario is None or s.name in args.scenario]
    with runner.Bench(work, manifest, args.python, runner.log_stderr) as b:
        b.start_dns()
        if not args.no_verdicts:
            runner.log_stderr("== verdict check")
            data["verdicts"] = b.verdict_check()
            runner.log_stderr(f"  {len(data['verdicts']['mismatches'])} mismatches")
        for sc in chosen:
            if time.monotonic() - t0 > args.budget:
                data["skipped"].append(f"{sc.name}: time budget ({args.budget:.0f} s) used up")
                continue
            b.run_scenario(sc, rounds, args.target, args.conc)
            data["scenarios"].append(
                {**asdict(sc), "targets": {k: list(v) for k, v in sc.targets.items()}}
            )
            data["measurements"] = [asdict(m) for m in b.measurements]
            runner.save(work / results_name, {**data, "elapsed_s": time.monotonic() - t0})
        if not args.no_profile:
            runner.log_stderr("== profile")
            data["profile"] = _profile(b, work, quick)
        if not args.no_postfix:
            from bench import postfix_e2e

            runner.log_stderr("== postfix end to end")
            data["postfix"] = postfix_e2e.run(b, work, manifest, quick, runner.log_stderr)
        data["failed"] = dict(b.failed)
        data["measurements"] = [asdict(m) for m in b.measurements]
    data["elapsed_s"] = time.monotonic() - t0
    runner.save(work / results_name, data)
    out.write_text(report.render(data), encoding="utf-8")
    runner.log_stderr(f"wrote {out} and {work / results_name}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point."""
    args = _parser().parse_args(argv)
    if args.cmd == "run":
        return cmd_run(args)
    if args.cmd == "report":
        import json

        data = json.loads(args.results.read_text(encoding="utf-8"))
        args.out.write_text(report.render(data), encoding="utf-8")
        return 0
    ensure_corpus(args.work.resolve(), args.quick)
    return 0


if __name__ == "__main__":
    sys.exit(main())
