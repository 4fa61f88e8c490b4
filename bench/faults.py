"""Availability under faults, measured: this checkout against an earlier commit (issue 14).

Not a test (the tests assert behaviour, not numbers): run it by hand and commit what it
writes::

    python3 -m bench.faults --before 8ebec56      # -> bench/RESULTS-faults.md

For each of the two trees (``git archive`` of ``--before`` into bench/work/faults, and this
checkout's ``milter/``) it starts ``authmilter run`` on loopback and measures:

* a dead DNS server (a UDP port that swallows queries), ``dns.timeout = 5``: the time of
  three SMTP sessions in a row (a signed message from a ``p=reject`` domain);
* a DNS server that answers every query 3 s late, ``dns.timeout = 10``: one session's time
  and answer;
* stopping a two-worker daemon after a few messages (SIGTERM to exit);
* SIGKILL to the supervisor of a two-worker daemon: workers still alive 5 s later (ended
  by PID afterwards);
* 300 connections that send nothing against a daemon limited to 200 descriptors: CPU used
  in the 5 seconds after the flood, and whether a normal message is then answered (and
  how fast; the client gives up after 20 s).

Every process is stopped by its PID; every wait is bounded.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from tests.integration.slowdns import SlowDns  # noqa: E402
from tests.support.daemon import AuthmilterDaemon, DaemonError  # noqa: E402
from tests.support.dnsserver import DnsServer  # noqa: E402
from tests.support.keys import DkimKey, new_rsa_key  # noqa: E402
from tests.support.mail import dkim_sign, make_message, quoted, zone  # noqa: E402
from tests.support.milterclient import MilterClient  # noqa: E402
from tests.support.procs import alive, children  # noqa: E402

GOOD_IP = "192.0.2.10"


def world(key: DkimKey) -> str:
    return zone(
        "example.org",
        f'@ TXT "v=spf1 ip4:{GOOD_IP} -all"',
        '_dmarc TXT "v=DMARC1; p=reject"',
        f"sel._domainkey TXT {quoted(key.txt)}",
    )


class Tree:
    """One version of the package: where its ``milter/`` is, and how to run it."""

    def __init__(self, label: str, src: Path, python: str, work: Path) -> None:
        self.label, self.src, self.python, self.work = label, src, python, work
        self.count = 0

    def daemon(self, config: dict[str, Any], prefix: tuple[str, ...] = ()) -> AuthmilterDaemon:
        self.count += 1
        directory = self.work / f"{self.label.split()[0]}-{self.count}"
        command = [
            "env",
            f"PYTHONPATH={self.src}",
            *prefix,
            self.python,
            "-m",
            "authmilter",
            "run",
            "-c",
            "{config}",
        ]
        base = {"milter": {"authserv_id": "mx.faults.example"}, "trust": {"internal_hosts": []}}
        for name, values in config.items():
            base.setdefault(name, {}).update(values)
        return AuthmilterDaemon(directory, base, command=command)


def session(daemon: AuthmilterDaemon, raw: bytes, timeout: float = 60) -> tuple[float, str]:
    started = time.monotonic()
    try:
        with MilterClient(daemon.socket, timeout=timeout) as client:
            reply = client.send_message(raw, client_ip=GOOD_IP, mail_from="alice@example.org")
        answer = reply.text[:9] if reply.text else reply.action
    except Exception as exc:  # a measurement, not a test: say what happened
        answer = f"no answer ({type(exc).__name__})"
    return time.monotonic() - started, answer


def cpu(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def wait_workers(daemon: AuthmilterDaemon, n: int) -> set[int]:
    deadline = time.monotonic() + 20
    while len(children(daemon.pid)) < n and time.monotonic() < deadline:
        time.sleep(0.05)
    return children(daemon.pid)


def dead_dns(tree: Tree, raw: bytes) -> str:
    hole = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    hole.bind(("127.0.0.1", 0))
    try:
        address = f"127.0.0.1:{hole.getsockname()[1]}"
        with tree.daemon({"dns": {"nameservers": [address], "timeout": 5.0}}) as daemon:
            runs = [session(daemon, raw) for _ in range(3)]
    finally:
        hole.close()
    return ", ".join(f"{t:.1f} s ({a})" for t, a in runs)


def slow_dns(tree: Tree, raw: bytes, dns: DnsServer) -> str:
    with SlowDns(dns, delay=3.0) as slow:
        cfg = {"dns": {"nameservers": [slow.address], "timeout": 10.0}}
        cfg["spf"] = {"time_budget": 20.0}
        with tree.daemon(cfg) as daemon:
            took, answer = session(daemon, raw)
    return f"{took:.1f} s ({answer})"


def stop_time(tree: Tree, raw: bytes, dns: DnsServer) -> str:
    daemon = tree.daemon({"milter": {"workers": 2}, "dns": {"nameservers": [dns.address]}})
    daemon.start()
    try:
        wait_workers(daemon, 2)
        for _ in range(4):
            session(daemon, raw)
        started = time.monotonic()
        daemon.stop(timeout=30)
        took = time.monotonic() - started
    finally:
        daemon.stop()
    killed = "killing" in daemon.log()
    return f"{took:.1f} s" + (" (a worker killed after 10 s)" if killed else "")


def orphans(tree: Tree, raw: bytes, dns: DnsServer) -> str:
    daemon = tree.daemon({"milter": {"workers": 2}, "dns": {"nameservers": [dns.address]}})
    daemon.start()
    workers: set[int] = set()
    try:
        workers = wait_workers(daemon, 2)
        session(daemon, raw)
        daemon.signal(signal.SIGKILL)
        if daemon.proc is not None:
            daemon.proc.wait(10)
        time.sleep(5.0)
        left = sorted(p for p in workers if alive(p))
    finally:
        for pid in workers:  # end what is left, by PID
            if alive(pid):
                os.kill(pid, signal.SIGKILL)
        daemon.stop()
    return f"{len(left)} of {len(workers)} workers alive 5 s later"


def flood(tree: Tree, raw: bytes, dns: DnsServer) -> str:
    limit = 200
    daemon = tree.daemon(
        {"milter": {"timeout": 600}, "dns": {"nameservers": [dns.address]}},
        prefix=("prlimit", f"--nofile={limit}:{limit}"),
    )
    daemon.start()
    silent: list[socket.socket] = []
    try:
        assert daemon.socket_path is not None
        for _ in range(300):
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.setblocking(False)
            try:
                s.connect(str(daemon.socket_path))
            except BlockingIOError:
                s.close()
                continue
            silent.append(s)
        time.sleep(1.0)
        before = cpu(daemon.pid)
        time.sleep(5.0)
        share = (cpu(daemon.pid) - before) / 5.0
        took, answer = session(daemon, raw, timeout=20)
    finally:
        for s in silent:
            s.close()
        daemon.stop()
    return f"CPU {share * 100:.0f} % of a core; a message then: {took:.1f} s ({answer})"


def export(commit: str, work: Path) -> Path:
    target = work / f"before-{commit}"
    if not (target / "milter").exists():
        target.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile() as archive:
            subprocess.run(
                ["git", "-C", str(REPO), "archive", commit, "milter"], stdout=archive, check=True
            )
            archive.seek(0)
            subprocess.run(["tar", "-x", "-C", str(target)], stdin=archive, check=True)
    return target / "milter"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python3 -m bench.faults", description=__doc__)
    parser.add_argument("--before", default="8ebec56", help="the commit to compare with")
    parser.add_argument("--python", default="/usr/bin/python3", help="runs the daemons")
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "RESULTS-faults.md")
    parser.add_argument("--work", type=Path, default=REPO / "bench" / "work" / "faults")
    args = parser.parse_args(argv)
    args.work.mkdir(parents=True, exist_ok=True)
    key = new_rsa_key(2048)
    raw = dkim_sign(make_message(from_addr="alice@example.org"), "example.org", "sel", key)
    trees = [
        Tree(f"before ({args.before})", export(args.before, args.work), args.python, args.work),
        Tree("this checkout", REPO / "milter", args.python, args.work),
    ]
    rows: dict[str, list[str]] = {}
    with DnsServer(world(key)) as dns:
        for tree in trees:
            for name, measure in (
                ("dead DNS server, dns.timeout = 5: three sessions", lambda t: dead_dns(t, raw)),
                ("every answer 3 s late, dns.timeout = 10", lambda t: slow_dns(t, raw, dns)),
                ("stop a two-worker daemon (SIGTERM)", lambda t: stop_time(t, raw, dns)),
                ("SIGKILL to the supervisor", lambda t: orphans(t, raw, dns)),
                ("300 silent connections, 200 descriptors", lambda t: flood(t, raw, dns)),
            ):
                try:
                    result = measure(tree)
                except (DaemonError, OSError, AssertionError) as exc:
                    result = f"failed: {str(exc).splitlines()[0][:120]}"
                rows.setdefault(name, []).append(result)
                print(f"{tree.label}: {name}: {result}", flush=True)
    lines = [
        "## Availability under faults (hand-run; `bench/RESULTS-faults.md`, included by the"
        " report)\n",
        f"`python3 -m bench.faults {' '.join(argv if argv is not None else sys.argv[1:])}`"
        f" on {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, daemons run by"
        f" `{args.python}`, {os.cpu_count()} CPUs (shared with whatever else runs). One run"
        " each; the tests in tests/integration and tests/e2e assert the behaviour.\n",
        f"| fault | {' | '.join(t.label for t in trees)} |",
        "|---|" + "---|" * len(trees),
    ]
    lines += [f"| {name} | {' | '.join(values)} |" for name, values in rows.items()]
    text = "\n".join(lines) + "\n"
    args.out.write_text(text, encoding="utf-8")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
