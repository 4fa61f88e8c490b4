"""How long ``authmilter report`` takes to build one big aggregate report (RFC 9990).

    PYTHONPATH=milter:. python3 -m bench.report_build [--rows 1000000] [--ips 20000] [--pg]

Fills a fresh history store (SQLite in a temp dir; ``--pg``: a private PostgreSQL cluster,
tests/support/postgres.py) with ``--rows`` rows of one policy domain in one UTC day, from
``--ips`` source addresses with a few DKIM/SPF/disposition variants (the groups are about
``--ips`` x 4). Then times, wall clock: the store's grouping (``aggregate``), the XML, gzip,
and the whole ``authmilter report --dry-run --output DIR`` end to end (config, migrate
check, grouping, XML, gzip, message, files). Filling is not timed.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from authmilter.cli import main
from authmilter.reports.aggregate import ReportMeta, gzipped, render_xml
from authmilter.reports.history import DkimAuth, HistoryRow, PublishedPolicy, SpfAuth
from authmilter.reports.store import open_store

DAY = 86400
T0 = 1_796_515_200  # 2026-12-06 00:00 UTC
DOMAIN = "example.com"
POLICY = PublishedPolicy(DOMAIN, "reject", rua=(f"mailto:dmarc@{DOMAIN}",))
BATCH = 10000


def history(n: int, ips: int) -> Iterator[list[HistoryRow]]:
    """``n`` rows in batches: ip i % ips, variant (i // ips) % 4."""
    batch = []
    for i in range(n):
        ip = f"10.{(i % ips) >> 16 & 255}.{(i % ips) >> 8 & 255}.{i % ips & 255}"
        variant = (i // ips) % 4
        batch.append(
            HistoryRow(
                time=T0 + i * DAY // n,
                source_ip=ip,
                envelope_from=DOMAIN,
                header_from=DOMAIN,
                policy=POLICY,
                disposition="none" if variant < 2 else "reject",
                dmarc_dkim="pass" if variant < 2 else "fail",
                dmarc_spf="pass" if variant % 2 == 0 else "fail",
                dkim=(DkimAuth(DOMAIN, "s1", "pass" if variant < 2 else "fail"),),
                spf=SpfAuth(DOMAIN, "mfrom", "pass" if variant % 2 == 0 else "softfail"),
                envelope_to="receiver.example",
            )
        )
        if len(batch) == BATCH:
            yield batch
            batch = []
    if batch:
        yield batch


def measure(dsn: str, rows: int, ips: int, work: Path) -> None:
    """Fill, then time the stages and the command."""
    store = open_store(dsn)
    store.migrate()
    for batch in history(rows, ips):
        store.insert(batch)
    t = time.perf_counter()
    agg = store.aggregate(DOMAIN, T0, T0 + DAY)
    t_group = time.perf_counter() - t
    store.close()
    meta = ReportMeta("Receiver", "dmarc@receiver.example", "bench")
    t = time.perf_counter()
    xml = render_xml(agg, meta)
    t_xml = time.perf_counter() - t
    t = time.perf_counter()
    gz = gzipped(xml)
    t_gzip = time.perf_counter() - t
    cfg = work / "authmilter.toml"
    cfg.write_text(f'[milter]\nauthserv_id = "mx.receiver.example"\n[reports]\nhistory = "{dsn}"\n')
    t = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()):
        code = main(
            [
                "report",
                "-c",
                str(cfg),
                "--begin",
                str(T0),
                "--end",
                str(T0 + DAY),
                "--dry-run",
                "--output",
                str(work / "out"),
            ]
        )
    t_cmd = time.perf_counter() - t
    kind = dsn.split(":", maxsplit=1)[0]
    print(f"{kind}: {rows} rows, {len(agg.records)} records, {agg.messages} messages")
    print(f"  grouping (store.aggregate) {t_group:.2f} s")
    print(
        f"  XML {t_xml:.2f} s ({len(xml) / 1e6:.1f} MB), "
        f"gzip {t_gzip:.2f} s ({len(gz) / 1e6:.2f} MB)"
    )
    print(f"  authmilter report --dry-run --output, end to end: {t_cmd:.2f} s (exit {code})")


def run(argv: list[str] | None = None) -> int:
    """Command line."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--ips", type=int, default=20_000)
    ap.add_argument("--pg", action="store_true", help="PostgreSQL (a private cluster)")
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="authmilter-reportbench-") as tmp:
        work = Path(tmp)
        if args.pg:
            from tests.support.postgres import PostgresCluster

            with PostgresCluster() as cluster:
                measure(cluster.database(), args.rows, args.ips, work)
        else:
            measure(f"sqlite:///{work}/history.db", args.rows, args.ips, work)
    return 0


if __name__ == "__main__":
    sys.exit(run())
