"""The daemon's history recorder: decided messages -> rows -> the store, off the SMTP path.

:class:`HistoryRecorder` is a :class:`~authmilter.engine.MessageObserver`. ``observe`` turns a
message into a row (:mod:`.rows`) and puts it into a bounded queue without waiting
(``reports.queue_size`` rows; when full, the row is dropped and counted). One writer thread
takes up to :data:`BATCH_ROWS` rows at a time and stores them in one transaction; after a
short batch it rests :data:`LINGER` seconds, so that a busy session thread does not wake it
for every row. When the
store fails (down, slow, disk full), the batch is counted as failed and logged (at most once
per :data:`LOG_EVERY` seconds, with the counts), the connection is dropped and the next batch
connects again. Nothing here ever blocks a session or changes a verdict.

One recorder per process: with ``milter.workers`` > 1 each worker builds its own after the
fork (a thread and a database connection do not survive ``fork``).
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable

from authmilter import metrics
from authmilter.config import ReportsConfig
from authmilter.decision import Decision
from authmilter.model import Transaction
from authmilter.reports.history import HistoryRow
from authmilter.reports.rows import history_row
from authmilter.reports.store import HistoryStore
from authmilter.results import AuthResults

log = logging.getLogger("authmilter")

BATCH_ROWS = 1000  # rows per transaction at most
LINGER = 0.1  # seconds the writer rests after a short batch: fewer wake-ups, larger batches
LOG_EVERY = 60.0  # seconds between two log lines about lost rows
_STOP = object()


class HistoryRecorder:
    """A bounded queue and one writer thread in front of a :class:`HistoryStore`."""

    def __init__(
        self,
        store: HistoryStore,
        reports: ReportsConfig,
        host: str,
        *,
        dsn: str = "",
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.reports = reports
        self.host = host
        self.dsn = dsn  # what it writes to (a reload with the same DSN keeps the recorder)
        self._clock = clock
        self._queue: queue.Queue[object] = queue.Queue(maxsize=reports.queue_size)
        self._idle = threading.Condition()
        self._pending = 0  # rows queued or being written
        self.stored = self.dropped = self.failed = 0
        self._unlogged = {"dropped": 0, "failed": 0}
        self._last_log = float("-inf")
        self._closed = False
        self._hurry = threading.Event()  # set by flush/close: no resting
        self._thread = threading.Thread(target=self._run, name="history-writer", daemon=True)
        self._thread.start()

    # -- the session side ----------------------------------------------------------------

    def observe(self, tx: Transaction, results: AuthResults, decision: Decision) -> None:
        """Queue the message's row, if it has one; never waits."""
        row = history_row(
            tx, results, decision, reports=self.reports, host=self.host, now=self._clock()
        )
        if row is not None:
            self.put(row)

    def put(self, row: HistoryRow) -> bool:
        """Queue one row without waiting; False (counted, logged) when the queue is full."""
        with self._idle:
            closed = self._closed
            if not closed:
                self._pending += 1
        if closed:  # a session that finished on the engine a reload replaced
            self._lost("dropped", 1, "recording was stopped (stop or reports.history changed)")
            return False
        try:
            self._queue.put_nowait(row)
        except queue.Full:
            with self._idle:
                self._pending -= 1
                self._idle.notify_all()
            self._lost("dropped", 1, "the queue is full (reports.queue_size)")
            return False
        return True

    # -- the writer thread ---------------------------------------------------------------

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is _STOP:
                return
            batch: list[HistoryRow] = [item]  # type: ignore[list-item]
            stop = False
            while len(batch) < BATCH_ROWS:
                try:
                    more = self._queue.get_nowait()
                except queue.Empty:
                    break
                if more is _STOP:
                    stop = True
                    break
                batch.append(more)  # type: ignore[arg-type]
            self._write(batch)
            if stop:
                return
            if len(batch) < BATCH_ROWS and not self._hurry.is_set():
                self._hurry.wait(LINGER)

    def _write(self, batch: list[HistoryRow]) -> None:
        try:
            self.store.insert(batch)
        except Exception as exc:  # noqa: BLE001  (any store trouble: count, log, go on)
            self._lost("failed", len(batch), f"the store failed: {exc}")
            try:
                self.store.close()  # connect again for the next batch
            except Exception:
                log.debug("history store close failed", exc_info=True)
        else:
            self.stored += len(batch)
            metrics.history_rows("stored", len(batch))
        finally:
            with self._idle:
                self._pending -= len(batch)
                self._idle.notify_all()

    def _lost(self, outcome: str, count: int, why: str) -> None:
        with self._idle:
            if outcome == "dropped":
                self.dropped += count
            else:
                self.failed += count
            self._unlogged[outcome] += count
            counts = self._unlogged
            now = time.monotonic()
            if now - self._last_log < LOG_EVERY:
                why = ""
            else:
                self._last_log = now
                counts = dict(self._unlogged)
                self._unlogged = {"dropped": 0, "failed": 0}
        metrics.history_rows(outcome, count)
        if why:
            log.warning(
                "history: rows not recorded: %s (dropped=%d failed=%d since the last report)",
                why,
                counts["dropped"],
                counts["failed"],
            )

    # -- flushing and closing --------------------------------------------------------------

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until every queued row is written (or failed); False on timeout."""
        deadline = time.monotonic() + timeout
        self._hurry.set()
        try:
            with self._idle:
                while self._pending > 0:
                    left = deadline - time.monotonic()
                    if left <= 0 or not self._thread.is_alive():
                        return False
                    self._idle.wait(left)
        finally:
            if not self._closed:
                self._hurry.clear()
        return True

    def close(self, timeout: float = 10.0) -> bool:
        """Write out what is queued, stop the writer, release the store; False on timeout."""
        with self._idle:
            if self._closed:
                return True
            self._closed = True
        done = self.flush(timeout)
        try:
            self._queue.put(_STOP, timeout=max(0.1, timeout))
        except queue.Full:
            done = False
        self._thread.join(timeout=max(0.1, timeout))
        if not self._thread.is_alive():
            try:
                self.store.close()
            except Exception:
                log.debug("history store close failed", exc_info=True)
        if not done:
            log.warning("history: %d rows not written at close", self._pending)
        return done
