"""What the Prometheus metrics cost per message: CPU of one in-process Session, metrics off/on.

    PYTHONPATH=milter python3 -m bench.metrics_overhead [--messages 3000] [--rounds 5]
    PYTHONPATH=milter python3 -m bench.metrics_overhead --daemon [--messages 2000]

One Session per message (a connection each, as the adapter makes them), DNS answered from
memory (every lookup counted as a cache hit, as a warm resolver's are), three kinds of
message in turn: inbound with a passing RSA signature, inbound forged (DMARC reject), and
outbound signed for an authenticated user. Each mode runs ``--messages`` messages per
round, the modes interleaved, and the best round of each is reported (CPU time of this
process, ``time.process_time``). Modes: ``off`` (no metrics), ``on`` (one process, values
in memory) and ``multiprocess`` (values in files, as with ``milter.workers`` > 1).

``--daemon`` measures the real daemon instead (``authmilter run`` over the milter protocol,
DNS from a loopback server, one connection per message, the log line written): the CPU
time of its processes (the supervisor and its workers) per message, with 1 and 2 workers,
metrics off and on, scraped once per run; the median of ``--rounds`` runs each. The
workers' value files go to a tmpfs (/dev/shm), as under systemd (RuntimeDirectory, /run).
"""

from __future__ import annotations

import argparse
import ipaddress
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import dkim

from authmilter import metrics
from authmilter.config import from_dict
from authmilter.dnsresolver import Answer
from authmilter.engine import Engine
from authmilter.model import parse_message
from authmilter.session import Session
from authmilter.signing.signer import Signer
from authmilter.staticresolver import StaticResolver

GOOD_IP = "192.0.2.25"
BAD_IP = "203.0.113.9"
BODY = b"Hello,\r\n\r\n" + b"a line of an ordinary message body.\r\n" * 40


class CachedResolver:
    """Answers from memory; each lookup is counted as a cache hit, like a warm resolver's."""

    def __init__(self, inner: StaticResolver) -> None:
        self.inner = inner

    def query(self, name: str, rdtype: str, timeout: float | None = None) -> Answer:
        metrics.dns_cache(True)
        return self.inner.query(name, rdtype, timeout)


def _world(tmp: Path) -> tuple[Engine, list[tuple[bytes, str, str | None]]]:
    from tests.support.keys import new_rsa_key

    key = new_rsa_key()
    pem, record = key.private, key.txt
    static = StaticResolver(
        {
            ("example.com", "TXT"): [f"v=spf1 ip4:{GOOD_IP} -all"],
            ("_dmarc.example.com", "TXT"): ["v=DMARC1; p=reject"],
            ("sel._domainkey.example.com", "TXT"): [record],
        }
    )
    key_file = tmp / "sel.private"
    key_file.write_bytes(pem)
    key_file.chmod(0o600)
    cfg = from_dict(
        {
            "milter": {"authserv_id": "mx.bench"},
            "trust": {"internal_hosts": []},
            "signing": {
                "keys": [{"domain": "example.com", "selector": "sel", "key_file": str(key_file)}]
            },
        },
        str(tmp / "authmilter.toml"),
    )
    signer = Signer.from_config(cfg.signing, str(tmp))
    engine = Engine(cfg, CachedResolver(static), signer=signer)  # type: ignore[arg-type]
    head = (
        b"From: Alice <alice@example.com>\r\nTo: bob@example.org\r\nSubject: bench\r\n"
        b"Date: Tue, 01 Dec 2026 12:00:00 +0000\r\nMessage-ID: <b1@example.com>\r\n"
    )
    plain = head + b"\r\n" + BODY
    signed = bytes(dkim.sign(plain, b"sel", b"example.com", pem)) + plain
    messages = [(signed, GOOD_IP, None), (plain, BAD_IP, None), (plain, BAD_IP, "alice")]
    return engine, messages


def _one(engine: Engine, raw: bytes, ip: str, user: str | None, n: int) -> str:
    session = Session(engine, str(n))
    closed = metrics.session_opened()
    session.connect("client.example", ipaddress.ip_address(ip), "")
    session.helo("mail.example.net")
    session.mail_from("<alice@example.com>", user, f"Q{n}")
    session.recipient("<bob@example.org>")
    tx = parse_message(raw)
    for h in tx.headers:
        session.header(h.name, h.value)
    session.end_of_headers()
    session.body(tx.body)
    decision = session.end_of_message()
    closed()
    return str(decision.action)


def _round(engine: Engine, messages: list[tuple[bytes, str, str | None]], count: int) -> float:
    started = time.process_time()
    for n in range(count):
        raw, ip, user = messages[n % len(messages)]
        _one(engine, raw, ip, user, n)
    return (time.process_time() - started) / count


def _mode(name: str, directory: Path) -> None:
    metrics.disable()
    os.environ.pop(metrics.MULTIPROC_ENV, None)
    if name == "on":
        from prometheus_client import CollectorRegistry

        metrics.enable(CollectorRegistry())
    elif name == "multiprocess":
        shutil.rmtree(directory, ignore_errors=True)
        directory.mkdir()
        os.environ[metrics.MULTIPROC_ENV] = str(directory)
        metrics.enable(multiprocess=True)


def _process_cpu(pid: int) -> float:
    """User + system CPU seconds of ``pid`` and of its live children."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(entry.name) == pid or int(fields[1]) == pid:
            total += (int(fields[11]) + int(fields[12])) / ticks
    return total


def _daemon_run(workers: int, metrics_on: bool, count: int, runtime: str) -> float:
    """CPU seconds per message of a real daemon (its processes) over ``count`` messages."""
    import socket
    import urllib.request

    from tests.integration.test_daemon import BAD_IP, config, example_zone, send, signed
    from tests.support.daemon import AuthmilterDaemon
    from tests.support.dnsserver import DnsServer
    from tests.support.keys import new_rsa_key

    key = new_rsa_key(2048)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    listen = f"127.0.0.1:{port}" if metrics_on else ""
    with (
        tempfile.TemporaryDirectory(prefix="authmilter-bench-") as tmp,
        DnsServer(example_zone(key)) as dns,
    ):
        cfg = config(dns, milter={"workers": workers}, metrics={"listen": listen})
        cfg["dns"]["cache_size"] = 20000
        with AuthmilterDaemon(Path(tmp), cfg, env={"RUNTIME_DIRECTORY": runtime}) as daemon:
            good = signed(key)
            forged = good.replace(b"This is a test.", b"This is a forgery.")
            for _ in range(20):  # warm: caches, first-use imports
                send(daemon, good)
            before = _process_cpu(daemon.pid)
            for n in range(count):
                if n % 2:
                    send(daemon, forged, client_ip=BAD_IP)
                else:
                    send(daemon, good)
            used = _process_cpu(daemon.pid) - before
            if metrics_on:
                text = urllib.request.urlopen(f"http://{listen}/metrics", timeout=5).read()
                assert b"authmilter_messages_total" in text
    return used / count


def _daemon_main(count: int, rounds: int) -> int:
    import statistics

    print(f"python {sys.version.split()[0]}, the daemon, {count} messages per run, {rounds} runs")
    shm = Path("/dev/shm")
    runtime = tempfile.mkdtemp(prefix="authmilter-bench-", dir=shm if shm.is_dir() else None)
    runs: dict[tuple[int, bool], list[float]] = {}
    try:
        for _ in range(rounds):
            for workers in (1, 2):
                for on in (False, True):
                    cpu = _daemon_run(workers, on, count, runtime)
                    runs.setdefault((workers, on), []).append(cpu)
    finally:
        shutil.rmtree(runtime, ignore_errors=True)
    for workers in (1, 2):
        off = statistics.median(runs[(workers, False)])
        on = statistics.median(runs[(workers, True)])
        print(
            f"workers={workers}: off {off * 1e6:7.0f} us, on {on * 1e6:7.0f} us CPU/message"
            f"  ({(on - off) * 1e6:+5.0f} us, {(on - off) / off * 100:+5.1f}%)"
        )
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python3 -m bench.metrics_overhead")
    p.add_argument("--messages", type=int, default=3000, help="messages per mode and round")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--daemon", action="store_true", help="measure the real daemon")
    args = p.parse_args(argv)
    if args.daemon:
        return _daemon_main(args.messages, args.rounds)
    import logging

    logging.getLogger("authmilter").setLevel(logging.WARNING)  # no log line per message
    with tempfile.TemporaryDirectory(prefix="authmilter-bench-") as tmp:
        engine, messages = _world(Path(tmp))
        actions = [_one(engine, raw, ip, user, 0) for raw, ip, user in messages]
        assert actions == ["accept", "reject", "accept"], actions
        modes = ("off", "on", "multiprocess")
        best: dict[str, float] = dict.fromkeys(modes, float("inf"))
        for _ in range(args.rounds):
            for mode in modes:
                _mode(mode, Path(tmp) / "multiproc")
                best[mode] = min(best[mode], _round(engine, messages, args.messages))
        _mode("off", Path(tmp) / "multiproc")
    base = best["off"]
    print(f"python {sys.version.split()[0]}, {args.messages} messages x {args.rounds} rounds")
    for mode in modes:
        extra = best[mode] - base
        print(
            f"{mode:>12}: {best[mode] * 1e6:8.1f} us CPU/message"
            f"  ({extra * 1e6:+6.1f} us, {extra / base * 100:+5.1f}%)"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
