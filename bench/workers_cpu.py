"""CPU per message of the real daemon by number of workers, under concurrent load.

    python3 -m bench.workers_cpu [--workers 1 2 3 4] [--conc 16] [--messages 3000] [--rounds 3]

Issue 15 point 1: does a worker count above the number of cores lower the CPU per message
(fewer libmilter threads per interpreter)? ``authmilter run`` (this checkout, the Python
running this) with DNS from a loopback server, one milter connection per message, ``--conc``
client threads (bench/loadgen.py, on the same CPUs); a 2 KB-ish message with a passing RSA
signature. Reported per worker count: the median over rounds (interleaved) of CPU ms per
message of the daemon's processes (supervisor and workers) and of msg/s. No root needed.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
from pathlib import Path

from tests.integration.test_daemon import GOOD_IP, config, example_zone, send, signed
from tests.support.daemon import AuthmilterDaemon
from tests.support.dnsserver import DnsServer
from tests.support.keys import new_rsa_key
from tests.support.procs import children, wait_for

from bench import loadgen, procstat

LINE = "a line of an ordinary message body, about seventy characters long.\r\n"


def one_run(workers: int, conc: int, count: int) -> tuple[float, float, str]:
    """(CPU ms/msg, msg/s, most common verdict) of one daemon over ``count`` messages."""
    key = new_rsa_key(2048)
    with (
        tempfile.TemporaryDirectory(prefix="authmilter-bench-") as tmp,
        DnsServer(example_zone(key)) as dns,
    ):
        cfg = config(dns, milter={"workers": workers})
        cfg["dns"]["cache_size"] = 20000
        with AuthmilterDaemon(Path(tmp), cfg) as daemon:
            if workers > 1:
                wait_for(lambda: len(children(daemon.pid)) == workers, timeout=20)
            raw = signed(key, body=LINE * 28)
            work = loadgen.Work(raw, GOOD_IP, "mail.example.org", "alice@example.org", ("b@x",), {})
            for _ in range(20):
                send(daemon, raw)
            before = procstat.cpu_seconds(daemon.pid)
            res = loadgen.run_load([daemon.socket], [work], conc, count, 120)
            used = procstat.cpu_seconds(daemon.pid) - before
    ok = max(1, res.messages - res.errors)
    top = res.verdicts.most_common(1)[0][0] if res.verdicts else None
    verdict = f"{top.action} dkim={top.dkim} dmarc={top.dmarc}" if top else "none"
    return used * 1000 / ok, res.rate, verdict


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python3 -m bench.workers_cpu")
    p.add_argument("--workers", type=int, nargs="+", default=[1, 2, 3, 4])
    p.add_argument("--conc", type=int, default=16)
    p.add_argument("--messages", type=int, default=3000)
    p.add_argument("--rounds", type=int, default=3)
    args = p.parse_args(argv)
    runs: dict[int, list[tuple[float, float, str]]] = {w: [] for w in args.workers}
    for rnd in range(args.rounds):
        order = args.workers[rnd % len(args.workers) :] + args.workers[: rnd % len(args.workers)]
        for w in order:
            runs[w].append(one_run(w, args.conc, args.messages))
            cpu, rate, verdict = runs[w][-1]
            print(f"  r{rnd} workers={w}: {cpu:.2f} ms CPU/msg, {rate:.0f} msg/s ({verdict})")
    print(
        f"python {sys.version.split()[0]}, {len(os.sched_getaffinity(0))} usable CPUs, "
        f"c={args.conc}, {args.messages} messages x {args.rounds} rounds (medians):"
    )
    for w, rs in runs.items():
        print(
            f"workers={w}: {statistics.median(r[0] for r in rs):.2f} ms CPU/msg "
            f"(min {min(r[0] for r in rs):.2f}), {statistics.median(r[1] for r in rs):.0f} msg/s"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
