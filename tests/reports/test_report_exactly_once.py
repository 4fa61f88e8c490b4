"""Exactly once: a report run killed midway and re-run, and two runs at once on one PostgreSQL.

Counted at the SMTP sink per Report-ID: a report sent twice or lost fails these tests.
"""

from __future__ import annotations

import json
import subprocess
import threading
from collections import Counter
from pathlib import Path

from tests.reports.reportsetup import (
    PERIOD,
    ZONE,
    by_domain,
    command,
    env,
    fill,
    report,
    rows,
    write_config,
)
from tests.reports.test_report_command import REPORTED, report_ids
from tests.support.dnsserver import DnsServer
from tests.support.service import serve_in_thread
from tests.support.smtpsink import SmtpSink, _Handler, _Server

WAIT = 120  # seconds a test waits for a process or an event before failing


class GatedSink(SmtpSink):
    """An SMTP sink that holds its answer to DATA (the 354) from message ``hold_from`` on,
    until ``release`` is set: the client is stuck before the message is transferred."""

    def __init__(self, hold_from: int) -> None:
        super().__init__()
        self.hold_from = hold_from
        self.release = threading.Event()
        self.held = threading.Event()
        self.datas = 0
        self.count_lock = threading.Lock()

    def start(self) -> GatedSink:
        """Listen with the holding handler."""
        self._server = _Server(("127.0.0.1", 0), _GatedHandler)
        self._server.sink = self
        self.port = self._server.server_address[1]
        self._thread = serve_in_thread(self._server)
        return self

    def stop(self) -> None:
        """Let held handlers go, then stop."""
        self.release.set()
        super().stop()


class _GatedHandler(_Handler):
    def _reply(self, text: str) -> None:
        sink = self.server.sink  # type: ignore[attr-defined]
        if isinstance(sink, GatedSink) and text.startswith("354"):
            with sink.count_lock:
                sink.datas += 1
                n = sink.datas
            if n >= sink.hold_from and not sink.release.is_set():
                sink.held.set()
                sink.release.wait(WAIT)
        super()._reply(text)


def test_killed_midway_then_rerun_sends_each_once(history_dsn: str, tmp_path: Path) -> None:
    fill(history_dsn, rows())
    with DnsServer(ZONE) as dns, GatedSink(hold_from=2) as sink:
        cfg = write_config(tmp_path, history_dsn, sink.port)
        args = ["-c", str(cfg), *PERIOD, "--nameserver", dns.address]
        proc = subprocess.Popen(command(*args), env=env(), stdout=subprocess.DEVNULL)
        try:
            assert sink.held.wait(WAIT), "the run never reached its second report"
            assert len(sink.messages) == 1  # the first report went; the second is in flight
        finally:
            proc.kill()  # by its own PID: the run dies holding the second report's claim
            proc.wait(WAIT)
        sink.release.set()
        code, rerun = report(*args)
        assert code == 0
        statuses = Counter(by_domain(rerun)[d]["status"] for d in REPORTED)
        assert statuses == Counter({"sent": 1, "skipped": 1})  # only the unfinished one
    ids = report_ids(sink)
    assert ids == Counter({by_domain(rerun)[d]["report_id"]: 1 for d in REPORTED})


def test_two_runs_at_once_on_postgresql_send_each_report_once(
    pg_cluster: object, tmp_path: Path
) -> None:
    dsn = pg_cluster.database()  # type: ignore[attr-defined]
    domains = {f"d{n}.example": [("192.0.2.1", n + 1), ("192.0.2.2", 1)] for n in range(8)}
    fill(dsn, rows(domains))
    with DnsServer(ZONE) as dns, GatedSink(hold_from=1) as sink:
        cfg = write_config(tmp_path, dsn, sink.port)
        args = ["-c", str(cfg), *PERIOD, "--nameserver", dns.address]
        procs = [
            subprocess.Popen(command(*args), env=env(), stdout=subprocess.PIPE, text=True)
            for _ in range(2)
        ]
        try:
            assert sink.held.wait(WAIT)  # a run is sending while the other one starts
        finally:
            sink.release.set()
            outs = [p.communicate(timeout=WAIT)[0] for p in procs]
        codes = [p.returncode for p in procs]
    assert codes == [0, 0]
    results = [by_domain(json.loads(out)) for out in outs]
    for domain in domains:
        statuses = sorted(r[domain]["status"] for r in results)
        assert statuses == ["sent", "skipped"], (domain, statuses)
    ids = report_ids(sink)
    assert ids == Counter({results[0][d]["report_id"]: 1 for d in domains})
    for domain, groups in domains.items():
        sender = next(r for r in results if r[domain]["status"] == "sent")
        assert sender[domain]["messages"] == sum(n for _, n in groups)
