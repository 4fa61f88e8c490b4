"""DMARC history: rows/s the recorder writes, aggregate() time, the recorder's cost per message.

    PYTHONPATH=milter python3 -m bench.history_bench [--rows 200000] [--aggregate-rows 1000000]
        [--messages 3000] [--rounds 5] [--backends sqlite,postgresql]

``--rows``: that many rows put into a :class:`HistoryRecorder` (queue as large) and written
by its writer thread (batches of 1000, one transaction each); rows/s from the first put to
the end of ``close()``, and the cost of one ``put`` on the session side.

``--aggregate-rows``: that many rows of one policy domain in one day (2000 source
addresses, four dispositions/evaluation shapes, two DKIM signatures each), inserted in
batches of 10000; then ``report_domains()`` and ``aggregate()`` over the day are timed.

``--messages``: CPU per message of an in-process Session (the three messages of
``bench.metrics_overhead``: DKIM pass, DMARC reject, outbound signed), recording off and on
(SQLite, the writer thread's CPU included: ``time.process_time`` counts every thread), the
modes interleaved, best of ``--rounds``.

``--daemon N``: the real daemon (``authmilter run``, 1 worker, DNS from a loopback server,
one connection per message, half DKIM pass, half DMARC reject), history off and SQLite,
interleaved, median of ``--rounds``: CPU of the daemon's processes per message (its writer
thread included) and messages/s over one client connection at a time.

PostgreSQL is a private cluster (tests/support/postgres.py) with fsync on, on a unix socket.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from authmilter.compose import with_observers
from authmilter.config import ReportsConfig
from authmilter.reports.history import DkimAuth, HistoryRow, PublishedPolicy, SpfAuth
from authmilter.reports.recorder import HistoryRecorder
from authmilter.reports.store import HistoryStore, open_store
from bench.metrics_overhead import _one, _process_cpu, _world

DAY = 86400
T0 = 1_780_000_000 - 1_780_000_000 % DAY
POLICY = PublishedPolicy("example.com", "reject", rua=("mailto:dmarc@example.com",))
SHAPES = (
    ("pass", "pass", "pass", "pass"),
    ("reject", "fail", "fail", "fail"),
    ("quarantine", "fail", "pass", "fail"),
    ("none", "fail", "fail", "softfail"),
)


def make_row(i: int, t: int) -> HistoryRow:
    """The i-th row: 2000 source addresses x 4 shapes (8000 groups)."""
    disposition, dmarc_dkim, dkim_result, spf_result = SHAPES[i % 4]
    ip = f"198.51.{(i // 4) % 2000 // 250}.{(i // 4) % 250}"
    return HistoryRow(
        time=t,
        source_ip=ip,
        envelope_from="example.com",
        header_from="example.com",
        policy=POLICY,
        disposition=disposition,
        dmarc_dkim=dmarc_dkim,
        dmarc_spf="fail",
        dkim=(
            DkimAuth("example.com", "s2026", dkim_result),
            DkimAuth("esp.example", "k1", "pass"),
        ),
        spf=SpfAuth("example.com", "mfrom", spf_result),
        envelope_to="example.org",
        host="mx1.bench",
    )


def open_backend(name: str, tmp: Path, cluster: object | None) -> HistoryStore:
    if name == "sqlite":
        dsn = f"sqlite:///{tmp}/history-{time.monotonic_ns()}.db"
    else:
        dsn = cluster.database()  # type: ignore[attr-defined]
    store = open_store(dsn, "mx1.bench")
    store.migrate()
    return store


def recorder_rate(store: HistoryStore, rows: int) -> tuple[float, float]:
    """(rows/s written by the recorder, µs per put)."""
    recorder = HistoryRecorder(store, ReportsConfig(queue_size=rows), "mx1.bench")
    batch = [make_row(i, T0 + i % DAY) for i in range(rows)]
    started = time.perf_counter()
    for row in batch:
        recorder.put(row)
    put_time = time.perf_counter() - started
    assert recorder.close(600)
    elapsed = time.perf_counter() - started
    assert recorder.stored == rows, (recorder.stored, recorder.failed, recorder.dropped)
    return rows / elapsed, put_time / rows * 1e6


def aggregate_time(store: HistoryStore, rows: int) -> tuple[float, float, float, int]:
    """(insert rows/s, report_domains s, aggregate s, groups) for ``rows`` in one domain-day."""
    started = time.perf_counter()
    step = 10000
    for first in range(0, rows, step):
        store.insert([make_row(i, T0 + i * DAY // rows) for i in range(first, first + step)])
    insert_rate = rows / (time.perf_counter() - started)
    started = time.perf_counter()
    domains = store.report_domains(T0, T0 + DAY)
    domains_s = time.perf_counter() - started
    assert domains == ["example.com"], domains
    started = time.perf_counter()
    agg = store.aggregate("example.com", T0, T0 + DAY)
    aggregate_s = time.perf_counter() - started
    assert agg.messages == rows, agg.messages
    return insert_rate, domains_s, aggregate_s, len(agg.records)


def session_cost(tmp: Path, messages: int, rounds: int) -> tuple[float, float, int]:
    """(CPU µs per message recording off, on (SQLite), rows stored)."""
    engine, corpus = _world(tmp)
    store = open_store(f"sqlite:///{tmp}/session.db", "mx.bench")
    store.migrate()
    recorder = HistoryRecorder(store, ReportsConfig(), "mx.bench")
    recording = with_observers(engine, (recorder,))
    best = {"off": float("inf"), "on": float("inf")}
    n = 0
    for _ in range(rounds):
        for mode, eng in (("off", engine), ("on", recording)):
            started = time.process_time()
            for _ in range(messages):
                raw, ip, user = corpus[n % len(corpus)]
                _one(eng, raw, ip, user, n)
                n += 1
            if mode == "on":
                recorder.flush(60)  # the writer's CPU is part of the cost
            best[mode] = min(best[mode], (time.process_time() - started) / messages)
    recorder.close(60)
    return best["off"] * 1e6, best["on"] * 1e6, recorder.stored


def daemon_run(history: bool, count: int, workers: int = 1) -> tuple[float, float, int]:
    """(CPU s per message, messages/s, rows stored) of a real daemon over ``count`` messages."""
    from tests.integration.test_daemon import BAD_IP, config, example_zone, send, signed
    from tests.support.daemon import AuthmilterDaemon
    from tests.support.dnsserver import DnsServer
    from tests.support.keys import shared_rsa_key

    key = shared_rsa_key()
    with (
        tempfile.TemporaryDirectory(prefix="history-bench-") as tmp,
        DnsServer(example_zone(key)) as dns,
    ):
        dsn = f"sqlite:///{tmp}/history.db" if history else ""
        cfg = config(
            dns, reports={"history": dsn}, milter={"log_level": "warning", "workers": workers}
        )
        cfg["dns"]["cache_size"] = 20000
        with AuthmilterDaemon(Path(tmp) / "d", cfg) as daemon:
            good = signed(key)
            forged = good.replace(b"This is a test.", b"This is a forgery.")
            for _ in range(20):
                send(daemon, good)
            before = _process_cpu(daemon.pid)
            started = time.perf_counter()
            for n in range(count):
                if n % 2:
                    send(daemon, forged, client_ip=BAD_IP)
                else:
                    send(daemon, good)
            wall = time.perf_counter() - started
            used = _process_cpu(daemon.pid) - before
        stored = open_store(dsn).count() if history else 0
    return used / count, count / wall, stored


def daemon_main(count: int, rounds: int, workers: int = 1) -> None:
    import statistics

    runs: dict[bool, list[tuple[float, float]]] = {False: [], True: []}
    for _ in range(rounds):
        for on in (False, True):
            cpu, rate, stored = daemon_run(on, count, workers)
            if on:
                assert stored == count + 20, stored
            runs[on].append((cpu, rate))
    for on in (False, True):
        cpu = statistics.median(c for c, _ in runs[on])
        rate = statistics.median(r for _, r in runs[on])
        print(
            f"daemon ({workers} worker(s)), history {'sqlite' if on else 'off'}: "
            f"{cpu * 1e6:.0f} µs CPU/message, "
            f"{rate:.0f} messages/s (one connection at a time)"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=200000)
    parser.add_argument("--aggregate-rows", type=int, default=1000000)
    parser.add_argument("--messages", type=int, default=3000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--backends", default="sqlite,postgresql")
    parser.add_argument("--daemon", type=int, default=0, help="messages per daemon run")
    parser.add_argument("--workers", type=int, default=1, help="milter.workers of the daemon")
    args = parser.parse_args()
    if args.daemon:
        daemon_main(args.daemon, args.rounds, args.workers)
        return
    backends = args.backends.split(",")
    cluster = None
    with tempfile.TemporaryDirectory(prefix="history-bench-") as name:
        tmp = Path(name)
        if "postgresql" in backends:
            from tests.support.postgres import PostgresCluster

            cluster = PostgresCluster(fsync=True).start()
        try:
            for backend in backends:
                if args.rows:
                    store = open_backend(backend, tmp, cluster)
                    rate, put_us = recorder_rate(store, args.rows)
                    store.close()
                    print(
                        f"{backend}: recorder wrote {args.rows} rows at {rate:,.0f} rows/s "
                        f"(put: {put_us:.1f} µs/row on the session side)"
                    )
                if args.aggregate_rows:
                    store = open_backend(backend, tmp, cluster)
                    insert_rate, domains_s, agg_s, groups = aggregate_time(
                        store, args.aggregate_rows
                    )
                    store.close()
                    print(
                        f"{backend}: {args.aggregate_rows} rows in one domain-day inserted at "
                        f"{insert_rate:,.0f} rows/s; report_domains {domains_s:.2f} s; "
                        f"aggregate {agg_s:.2f} s ({groups} records)"
                    )
        finally:
            if cluster is not None:
                cluster.stop()
        if args.messages:
            off, on, stored = session_cost(tmp, args.messages, args.rounds)
            print(
                f"session CPU per message: recording off {off:.0f} µs, on (SQLite) {on:.0f} µs "
                f"({(on - off) / off * 100:+.1f} %), {stored} rows stored"
            )


if __name__ == "__main__":
    main()
