"""Soak: the daemon under a steady rate for a long time, RSS, descriptors and threads sampled.

Not a test and not part of ``bench/run``: run it by hand (as any user; it only uses
loopback and a work directory) and commit what it writes::

    python3 -m bench.soak --minutes 30 --rate 20 --workers 2     # -> bench/RESULTS-soak.md

It starts the loopback DNS server of the tests (50 domains, TTL 60 s, so the answer cache
keeps expiring and refilling) and ``authmilter run`` with ``--workers``, then sends
``--rate`` messages a second over the milter protocol (one connection per message, like one
Postfix smtpd session) from ``--conc`` threads: 8 in 10 signed and passing, 1 a spoof of a
``p=reject`` domain (550), 1 with a broken signature but SPF-aligned (accepted). Every
``--reload-every`` seconds it sends SIGUSR1. Every ``--sample`` seconds it records, for the
supervisor and each worker, VmRSS, open descriptors, threads and CPU time. The load stops
after ``--minutes`` (and after rate x minutes x 1.1 messages at most); every process it
started is stopped by its PID. The report says whether RSS, descriptors and threads stayed
flat after the first two minutes (the warm-up: caches and thread pools filling).
"""

from __future__ import annotations

import argparse
import csv
import datetime
import itertools
import math
import os
import platform
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from tests.support.daemon import AuthmilterDaemon  # noqa: E402
from tests.support.dnsserver import DnsServer  # noqa: E402
from tests.support.keys import DkimKey, new_rsa_key  # noqa: E402
from tests.support.mail import dkim_sign, make_message, quoted, zone  # noqa: E402
from tests.support.milterclient import MilterClient  # noqa: E402
from tests.support.procs import children  # noqa: E402

DOMAINS = 50
GOOD_IP, BAD_IP = "192.0.2.10", "198.51.100.7"
AUTHSERV = "soak.test.example"
WARMUP_S = 120.0


@dataclass
class Sample:
    """One look at every process of the daemon."""

    t: float
    messages: int
    per_pid: dict[int, tuple[int, int, int, float]]  # pid -> (rss KiB, fds, threads, cpu s)

    @property
    def rss_kb(self) -> int:
        return sum(v[0] for v in self.per_pid.values())

    @property
    def fds(self) -> int:
        return sum(v[1] for v in self.per_pid.values())

    @property
    def threads(self) -> int:
        return sum(v[2] for v in self.per_pid.values())

    @property
    def cpu_s(self) -> float:
        return sum(v[3] for v in self.per_pid.values())


@dataclass
class Load:
    """What the load threads saw."""

    outcomes: dict[str, int] = field(default_factory=dict)
    unexpected: list[str] = field(default_factory=list)
    latencies: list[float] = field(default_factory=list)
    sent: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)


def zones(key: DkimKey) -> str:
    parts = [
        zone(
            f"d{i}.example",
            f'@ TXT "v=spf1 ip4:{GOOD_IP} -all"',
            '_dmarc TXT "v=DMARC1; p=reject"',
            f"sel._domainkey TXT {quoted(key.txt)}",
            ttl=60,
        )
        for i in range(DOMAINS)
    ]
    return "".join(parts)


def messages(key: DkimKey) -> list[tuple[bytes, str, str, str]]:
    """(raw, client ip, domain, expected action) for every kind and domain."""
    out = []
    for i in range(DOMAINS):
        domain = f"d{i}.example"
        good = dkim_sign(make_message(from_addr=f"alice@{domain}"), domain, "sel", key)
        out.append((good, GOOD_IP, domain, "accept"))
        out.append((make_message(from_addr=f"ceo@{domain}"), BAD_IP, domain, "replycode"))
        out.append(
            (good.replace(b"This is a test.", b"This is altered."), GOOD_IP, domain, "accept")
        )
    return out


def pick(k: int, corpus: list[tuple[bytes, str, str, str]]) -> tuple[bytes, str, str, str]:
    kind = 0 if k % 10 < 8 else (1 if k % 10 == 8 else 2)
    return corpus[(k // 10 * 7 + k) % DOMAINS * 3 + kind]


def run_load(
    socket_spec: str,
    corpus: list[tuple[bytes, str, str, str]],
    load: Load,
    *,
    rate: float,
    seconds: float,
    conc: int,
) -> None:
    """``rate`` messages a second for ``seconds`` from ``conc`` threads (bounded by count)."""
    start = time.monotonic()
    limit = int(rate * seconds * 1.1) + 1
    counter = itertools.count()
    lock = threading.Lock()

    def worker() -> None:
        while True:
            with lock:
                k = next(counter)
            if k >= limit:
                return
            due = start + k / rate
            now = time.monotonic()
            if due - start >= seconds:
                return
            if due > now:
                time.sleep(due - now)
            raw, ip, domain, expected = pick(k, corpus)
            t0 = time.monotonic()
            try:
                with MilterClient(socket_spec, timeout=60) as client:
                    reply = client.send_message(raw, client_ip=ip, mail_from=f"bounce@{domain}")
                action = reply.action
                ok = action == expected and (action != "accept" or reply.added_headers())
            except Exception as exc:  # counted and reported, the soak goes on
                action, ok = f"error: {type(exc).__name__}", False
            took = time.monotonic() - t0
            with load.lock:
                load.sent += 1
                load.outcomes[action] = load.outcomes.get(action, 0) + 1
                load.latencies.append(took)
                if not ok and len(load.unexpected) < 20:
                    load.unexpected.append(f"#{k} {domain}: expected {expected}, got {action}")

    threads = [threading.Thread(target=worker, daemon=True) for _ in range(conc)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(seconds + 120)


def look(pids: list[int]) -> dict[int, tuple[int, int, int, float]]:
    out = {}
    tick = os.sysconf("SC_CLK_TCK")
    for pid in pids:
        try:
            status = Path(f"/proc/{pid}/status").read_text().splitlines()
            rss = next(int(x.split()[1]) for x in status if x.startswith("VmRSS:"))
            threads = next(int(x.split()[1]) for x in status if x.startswith("Threads:"))
            fds = len(os.listdir(f"/proc/{pid}/fd"))
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            cpu = (int(fields[11]) + int(fields[12])) / tick
        except (OSError, StopIteration):
            continue
        out[pid] = (rss, fds, threads, cpu)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python3 -m bench.soak", description=__doc__)
    parser.add_argument("--minutes", type=float, default=30.0)
    parser.add_argument("--rate", type=float, default=20.0, help="messages per second")
    parser.add_argument("--conc", type=int, default=4, help="load threads")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--sample", type=float, default=10.0, help="seconds between samples")
    parser.add_argument("--reload-every", type=float, default=300.0, help="0: never")
    parser.add_argument("--python", default="/usr/bin/python3", help="runs the daemon")
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "RESULTS-soak.md")
    parser.add_argument("--work", type=Path, default=REPO / "bench" / "work" / "soak")
    args = parser.parse_args(argv)
    seconds = args.minutes * 60
    args.work.mkdir(parents=True, exist_ok=True)
    command_line = "python3 -m bench.soak " + " ".join(argv if argv is not None else sys.argv[1:])
    started = datetime.datetime.now(datetime.UTC)
    load = Load()
    samples: list[Sample] = []
    wall, reloads, log_text = soak(args, seconds, load, samples)
    write_csv(args.work / "samples.csv", samples)
    text = report(args, command_line, started, wall, load, samples, reloads, log_text)
    args.out.write_text(text, encoding="utf-8")
    print(text)
    return 0


def soak(
    args: argparse.Namespace, seconds: float, load: Load, samples: list[Sample]
) -> tuple[float, int, str]:
    """Run the DNS server, the daemon and the load; (wall seconds, reloads, daemon log)."""
    key = new_rsa_key(2048)
    corpus = messages(key)
    reloads = 0
    with DnsServer(zones(key)) as dns:
        daemon = AuthmilterDaemon(
            args.work / "daemon",
            {
                "milter": {"authserv_id": AUTHSERV, "workers": args.workers},
                "dns": {"nameservers": [dns.address], "timeout": 2.0},
                "trust": {"internal_hosts": []},
            },
            command=[args.python, "-m", "authmilter", "run", "-c", "{config}"],
        )
        daemon.dir.mkdir(parents=True, exist_ok=True)
        log_path = daemon.dir / "authmilter.stderr"
        log_path.unlink(missing_ok=True)
        with daemon:
            deadline = time.monotonic() + 30
            while args.workers > 1 and len(children(daemon.pid)) < args.workers:
                if time.monotonic() > deadline:
                    raise SystemExit(f"workers did not start:\n{daemon.log()}")
                time.sleep(0.1)
            t0 = time.monotonic()
            loader = threading.Thread(
                target=run_load,
                args=(daemon.socket, corpus, load),
                kwargs={"rate": args.rate, "seconds": seconds, "conc": args.conc},
                daemon=True,
            )
            loader.start()
            next_reload = t0 + args.reload_every if args.reload_every > 0 else float("inf")
            while loader.is_alive() and time.monotonic() - t0 < seconds + 180:
                pids = [daemon.pid, *children(daemon.pid)]
                with load.lock:
                    sent = load.sent
                samples.append(Sample(time.monotonic() - t0, sent, look(pids)))
                if time.monotonic() >= next_reload:
                    daemon.reload()
                    reloads += 1
                    next_reload += args.reload_every
                loader.join(args.sample)
            pids = [daemon.pid, *children(daemon.pid)]
            samples.append(Sample(time.monotonic() - t0, load.sent, look(pids)))
            wall = time.monotonic() - t0
            log_text = daemon.log()
    return wall, reloads, log_text


def write_csv(path: Path, samples: list[Sample]) -> None:
    with path.open("w", newline="", encoding="utf-8") as f:
        out = csv.writer(f)
        out.writerow(["t_s", "messages", "pid", "rss_kb", "fds", "threads", "cpu_s"])
        for s in samples:
            for pid, (rss, fds, threads, cpu) in sorted(s.per_pid.items()):
                out.writerow([f"{s.t:.1f}", s.messages, pid, rss, fds, threads, f"{cpu:.2f}"])


def _version(package: str) -> str:
    try:
        return subprocess.run(
            ["dpkg-query", "-W", "-f", "${Version}", package],
            capture_output=True,
            text=True,
            check=False,
            timeout=10,
        ).stdout.strip()
    except OSError:
        return "?"


def report(  # noqa: PLR0917
    args: argparse.Namespace,
    command_line: str,
    started: datetime.datetime,
    wall: float,
    load: Load,
    samples: list[Sample],
    reloads: int,
    log_text: str,
) -> str:
    lat = sorted(load.latencies)

    def pct(q: float) -> float:
        return lat[min(len(lat) - 1, int(q * len(lat)))] * 1000 if lat else 0.0

    steady = [s for s in samples if s.t >= WARMUP_S] or samples
    first, last = steady[0], steady[-1]
    rss = [s.rss_kb for s in steady]
    fds = [s.fds for s in steady]
    threads = [s.threads for s in steady]
    cpu_rate = (last.cpu_s - first.cpu_s) / max(1e-9, last.t - first.t)
    done = sum(load.outcomes.values())
    w: list[str] = []
    w.append("## Soak run (hand-run; `bench/RESULTS-soak.md`, included by the report)\n")
    w.append(
        f"`{command_line}` on {started:%Y-%m-%d %H:%M} UTC: {wall / 60:.1f} minutes, "
        f"{args.workers} worker(s), daemon run by `{args.python}`; "
        f"{os.cpu_count()} CPUs ({platform.machine()}), kernel {platform.release()}, "
        f"python3-milter {_version('python3-milter')}, "
        f"libmilter1.0.1 {_version('libmilter1.0.1')}, "
        f"python3-dnspython {_version('python3-dnspython')}. "
        f"{args.rate:g} messages/s asked from {args.conc} threads (one milter connection "
        f"per message: 8 in 10 signed and passing, 1 a p=reject spoof, 1 with a broken "
        f"signature); {DOMAINS} domains with 60 s TTLs on the tests' loopback DNS server; "
        f"SIGUSR1 every {args.reload_every:g} s ({reloads} reloads). Samples every "
        f"{args.sample:g} s of the supervisor and each worker "
        "(raw: `bench/work/soak/samples.csv`).\n"
    )
    w.append("| | value |")
    w.append("|---|---|")
    w.append(f"| messages | {done} ({done / wall:.1f}/s) |")
    w.append(
        "| outcomes | "
        + ", ".join(f"{k} {v}" for k, v in sorted(load.outcomes.items()))
        + f"; unexpected {len(load.unexpected)} |"
    )
    w.append(f"| latency p50 / p99 / max | {pct(0.5):.1f} / {pct(0.99):.1f} / {pct(1.0):.0f} ms |")
    w.append(
        f"| after the {WARMUP_S / 60:.0f}-minute warm-up: RSS, all processes | "
        f"{min(rss) / 1024:.1f} - {max(rss) / 1024:.1f} MiB "
        f"(first {first.rss_kb / 1024:.1f}, last {last.rss_kb / 1024:.1f}) |"
    )
    w.append(f"| descriptors, all processes | {min(fds)} - {max(fds)} (last {last.fds}) |")
    w.append(f"| threads, all processes | {min(threads)} - {max(threads)} (last {last.threads}) |")
    w.append(f"| CPU, all processes | {cpu_rate * 100:.1f} % of one core |")
    w.append(
        "| log | "
        f"{log_text.count(' ERROR ')} ERROR, {log_text.count(' WARNING ')} WARNING, "
        f"{log_text.count('Traceback')} tracebacks |"
    )
    w.append("")
    w.append("| minute | messages | RSS MiB per process | descriptors | threads |")
    w.append("|---|---|---|---|---|")
    shown = -math.inf
    for s in samples:
        if s.t - shown >= 60 or s is samples[-1]:
            shown = s.t
            per = sorted(s.per_pid.items())
            w.append(
                f"| {s.t / 60:.1f} | {s.messages} | "
                + " / ".join(f"{v[0] / 1024:.1f}" for _, v in per)
                + f" | {' / '.join(str(v[1]) for _, v in per)}"
                + f" | {' / '.join(str(v[2]) for _, v in per)} |"
            )
    w.append("")
    growth = (last.rss_kb - first.rss_kb) / 1024
    minutes = max(1e-9, (last.t - first.t) / 60)
    w.append(
        f"RSS after the warm-up changed by {growth:+.1f} MiB over {minutes:.0f} minutes "
        f"({growth / minutes * 60:+.1f} MiB an hour if it went on); descriptors "
        f"{'stayed within ' + str(max(fds) - min(fds)) + ' of each other'}; threads "
        f"{'stayed within ' + str(max(threads) - min(threads)) + ' of each other'}."
    )
    if load.unexpected:
        w.append("\nUnexpected outcomes (first 20):\n")
        w.extend(f"- {u}" for u in load.unexpected)
    return "\n".join(w) + "\n"


if __name__ == "__main__":
    sys.exit(main())
