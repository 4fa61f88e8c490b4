"""The history recorder: rows reach the store, a store in trouble never touches mail."""

from __future__ import annotations

import functools
import ipaddress
import threading
from collections.abc import Sequence
from pathlib import Path

import pytest

from authmilter.compose import start_recorder, with_observers
from authmilter.config import ReportsConfig, from_dict
from authmilter.decision import Decision
from authmilter.engine import Engine
from authmilter.model import parse_message
from authmilter.reports.history import HistoryRow
from authmilter.reports.recorder import HistoryRecorder
from authmilter.reports.store import HistoryStore, open_store
from authmilter.session import Session
from tests.reports.test_rows import zone
from tests.reports.test_store import row
from tests.support.engines import BAD_IP, GOOD_IP, make_engine
from tests.support.keys import sign, simple_message
from tests.support.postgres import PostgresCluster

REPORTS = ReportsConfig(queue_size=100)


@functools.cache  # signed once: two runs compared must see the same bytes (t= ticks)
def messages() -> list[tuple[bytes, str]]:
    """Six messages: DMARC pass, fail (rejected), and a domain without a record."""
    signed = sign(simple_message(), "example.com", "rsa")
    return [
        (signed, GOOD_IP),
        (simple_message(), BAD_IP),
        (simple_message("a@nodmarc.example"), BAD_IP),
    ] * 2


def drive(engine: Engine) -> list[Decision]:
    """Every message through a Session, as the milter drives it; the decisions."""
    decisions = []
    session = Session(engine, "1")
    for raw, ip in messages():
        session.connect("client.example", ipaddress.ip_address(ip), "")
        session.helo("client.example")
        session.mail_from("<bounce@example.com>", None, "Q1")
        assert session.recipient("<bob@example.org>") is None
        tx = parse_message(raw)
        for h in tx.headers:
            session.header(h.name, h.value)
        session.end_of_headers()
        session.body(tx.body)
        decisions.append(session.end_of_message("Q1"))
    return decisions


def test_rows_reach_the_store(history_dsn: str) -> None:
    cfg = from_dict({"reports": {"history": history_dsn}, "milter": {"authserv_id": "mx.test"}})
    recorder = start_recorder(cfg, "mx.test")
    assert recorder is not None
    engine = with_observers(make_engine(zone()), (recorder,))
    drive(engine)
    assert recorder.flush(30)
    assert recorder.close()
    assert (recorder.stored, recorder.dropped, recorder.failed) == (4, 0, 0)
    store = open_store(history_dsn)
    agg = store.aggregate("example.com", 0, 2**40)
    assert agg.messages == 4
    assert sorted((g.count, g.disposition) for g in agg.records) == [(2, "pass"), (2, "reject")]
    store.close()


class BrokenStore:
    """A store that is down."""

    def __init__(self) -> None:
        self.closed = 0

    def insert(self, rows: Sequence[HistoryRow]) -> None:
        raise ConnectionError("database is down")

    def close(self) -> None:
        self.closed += 1


def test_a_store_that_is_down_changes_no_verdict(caplog: pytest.LogCaptureFixture) -> None:
    recorder = HistoryRecorder(BrokenStore(), REPORTS, "mx.test")  # type: ignore[arg-type]
    plain = drive(make_engine(zone()))
    recording = drive(with_observers(make_engine(zone()), (recorder,)))
    assert recording == plain
    assert recorder.flush(30)
    assert (recorder.stored, recorder.failed) == (0, 4)
    assert recorder.close()
    lines = [
        r.getMessage() for r in caplog.records if "history: rows not recorded" in r.getMessage()
    ]
    assert len(lines) == 1  # rate-limited
    assert "database is down" in lines[0]


def test_a_sqlite_file_that_cannot_be_opened_counts_failed(tmp_path: Path) -> None:
    (tmp_path / "history.db").mkdir()  # a directory where the file should be
    store = open_store(f"sqlite:///{tmp_path}/history.db")
    recorder = HistoryRecorder(store, REPORTS, "mx.test")
    for i in range(3):
        recorder.put(row(i))
    assert recorder.flush(30)
    assert (recorder.stored, recorder.failed) == (0, 3)
    assert recorder.close()


def test_a_migration_failure_turns_recording_off(tmp_path: Path) -> None:
    (tmp_path / "history.db").mkdir()
    cfg = from_dict({"reports": {"history": f"sqlite:///{tmp_path}/history.db"}})
    assert start_recorder(cfg, "mx.test") is None
    missing = from_dict({"reports": {"history": f"sqlite:///{tmp_path}/no/history.db"}})
    assert start_recorder(missing, "mx.test") is None
    assert start_recorder(from_dict({"reports": {"history": ""}}), "mx.test") is None


class SlowStore:
    """A store that waits until released (a database that hangs)."""

    def __init__(self, inner: HistoryStore) -> None:
        self.inner = inner
        self.release = threading.Event()
        self.entered = threading.Event()

    def insert(self, rows: Sequence[HistoryRow]) -> None:
        self.entered.set()
        self.release.wait(30)
        self.inner.insert(rows)

    def close(self) -> None:
        self.inner.close()


def test_a_full_queue_drops_and_counts(tmp_path: Path) -> None:
    inner = open_store(f"sqlite:///{tmp_path}/h.db")
    inner.migrate()
    slow = SlowStore(inner)
    recorder = HistoryRecorder(slow, ReportsConfig(queue_size=5), "mx.test")  # type: ignore[arg-type]
    assert recorder.put(row(0))
    assert slow.entered.wait(10)  # the writer holds one row, the queue is empty again
    accepted = sum(recorder.put(row(i)) for i in range(1, 21))
    assert accepted == 5
    assert recorder.dropped == 15
    slow.release.set()
    assert recorder.close()
    assert recorder.stored == 6
    store = open_store(f"sqlite:///{tmp_path}/h.db")
    assert store.count() == 6


def test_close_writes_out_what_is_queued(tmp_path: Path) -> None:
    store = open_store(f"sqlite:///{tmp_path}/h.db")
    store.migrate()
    recorder = HistoryRecorder(store, ReportsConfig(queue_size=5000), "mx.test")
    for i in range(3000):
        recorder.put(row(i))
    assert recorder.close()
    assert not recorder.put(row(0))  # closed: nothing more, counted
    assert recorder.dropped == 1
    assert open_store(f"sqlite:///{tmp_path}/h.db").count() == 3000


def test_postgres_stopped_then_back(pg_cluster: PostgresCluster) -> None:
    dsn = pg_cluster.database()
    store = open_store(dsn)
    store.migrate()
    recorder = HistoryRecorder(store, REPORTS, "mx.test")
    recorder.put(row(1))
    assert recorder.flush(30)
    pg_cluster.halt()
    try:
        plain = drive(make_engine(zone()))
        assert drive(with_observers(make_engine(zone()), (recorder,))) == plain
        recorder.put(row(2))
        assert recorder.flush(60)
        assert recorder.failed >= 1
    finally:
        pg_cluster.start()
    recorder.put(row(3))
    assert recorder.close(60)
    assert recorder.stored == 2  # reconnected after the server came back
    check = open_store(dsn)
    assert check.count() == 2
    check.close()
