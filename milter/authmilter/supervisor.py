"""Several worker processes on one listening socket (``milter.workers`` > 1).

libmilter serialises Python callbacks on the GIL, so one process uses one core. The parent
opens the socket, forks the workers (each runs libmilter on ``fd:N``), forwards SIGUSR1
(reload) and the stop signals to them, and restarts a worker that dies, unless workers die
too often, which stops the whole daemon with an error rather than looping.

Workers never outlive the supervisor: each asks the kernel for SIGTERM when its parent dies
(:func:`die_with_parent`) and also watches its parent id (the adapter's stop watcher), so a
killed supervisor leaves nothing serving on the old socket.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import logging
import os
import signal
import time
from collections.abc import Callable

from authmilter import metrics

log = logging.getLogger("authmilter")

STOP = {signal.SIGTERM, signal.SIGINT, signal.SIGHUP}
WAITED = STOP | {signal.SIGUSR1, signal.SIGCHLD}

MAX_RESTARTS = 5  # within RESTART_WINDOW seconds
RESTART_WINDOW = 60.0


class Supervisor:
    """Starts ``count`` workers with ``spawn(slot) -> pid`` and looks after them."""

    def __init__(self, count: int, spawn: Callable[[int], int], stop_timeout: float = 10.0):
        self.count = count
        self.spawn = spawn
        self.stop_timeout = stop_timeout
        self.workers: dict[int, int] = {}  # pid -> slot
        self.restarts: list[float] = []

    def run(self) -> int:
        """Supervise until a stop signal; the caller must have blocked WAITED signals."""
        for slot in range(self.count):
            self._start(slot)
        while True:
            sig = signal.sigwait(WAITED)
            if sig == signal.SIGUSR1:
                log.info("reload: signalling %d workers", len(self.workers))
                self._signal_all(signal.SIGUSR1)
            elif sig == signal.SIGCHLD:
                if not self._reap_and_restart():
                    self.stop()
                    return 1
            else:
                log.info("stopping %d workers (%s)", len(self.workers), signal.Signals(sig).name)
                self.stop()
                return 0

    def _start(self, slot: int) -> None:
        pid = self.spawn(slot)
        self.workers[pid] = slot
        log.info("worker %d started (pid %d)", slot, pid)

    def _reap_and_restart(self) -> bool:
        for pid, status in _reap():
            slot = self.workers.pop(pid, None)
            metrics.worker_exited(pid)
            if slot is None:
                continue
            log.error("worker %d (pid %d) exited with status %d", slot, pid, status)
            now = time.monotonic()
            self.restarts = [t for t in self.restarts if now - t < RESTART_WINDOW]
            if len(self.restarts) >= MAX_RESTARTS:
                log.error(
                    "workers keep dying (%d restarts in %.0f s): stopping",
                    len(self.restarts),
                    RESTART_WINDOW,
                )
                return False
            self.restarts.append(now)
            self._start(slot)
            metrics.worker_restarted()
        return True

    def _signal_all(self, sig: int) -> None:
        for pid in list(self.workers):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)

    def stop(self) -> None:
        """TERM every worker, wait for them, KILL what is left after ``stop_timeout``."""
        self._signal_all(signal.SIGTERM)
        deadline = time.monotonic() + self.stop_timeout
        while self.workers and time.monotonic() < deadline:
            signal.sigtimedwait({signal.SIGCHLD}, 0.5)
            for pid, _status in _reap():
                self.workers.pop(pid, None)
        if self.workers:
            log.error("killing %d workers that did not stop", len(self.workers))
            self._signal_all(signal.SIGKILL)
            for pid in list(self.workers):
                with contextlib.suppress(ChildProcessError):
                    os.waitpid(pid, 0)
            self.workers.clear()


PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


def die_with_parent(parent: int, sig: int = signal.SIGTERM) -> bool:
    """In a forked worker: have the kernel send ``sig`` when the parent dies.

    False when the parent is already gone (it died before the request took effect): the
    caller must exit. The setting survives until the worker changes credentials, which
    workers never do (privileges are dropped before the fork).
    """
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        if libc.prctl(PR_SET_PDEATHSIG, sig, 0, 0, 0) != 0:
            log.warning("prctl(PR_SET_PDEATHSIG): %s", os.strerror(ctypes.get_errno()))
    except (OSError, AttributeError):  # not Linux: the adapter's parent check still works
        log.warning("prctl(PR_SET_PDEATHSIG) is not available")
    return os.getppid() == parent


def _reap() -> list[tuple[int, int]]:
    out: list[tuple[int, int]] = []
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return out
        if pid == 0:
            return out
        out.append((pid, os.waitstatus_to_exitcode(status)))
