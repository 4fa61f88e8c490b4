"""The connections of one process: a cap on live sessions, and a reaper for idle ones.

libmilter accepts every connection the MTA makes, and Debian builds it with its worker pool:
connections waiting for the MTA's next command sit in one poll() of the pool controller,
which closes those idle longer than ``milter.timeout`` only when it checks, every 600 s
(``DT_CHECK_OLD_SESSIONS``, compiled in). Its accept loop retries EMFILE without sleeping,
so a process at its descriptor limit spins and serves nobody. This module keeps a process
away from that:

* at most ``max_sessions`` live sessions: the adapter answers the next connection with a
  451 at CONNECT (:func:`~authmilter.replies.busy`) and it is closed at once;
* a reaper thread closes the socket of a session idle (no callback running) longer than
  ``idle_timeout``, of a refused session once its reply is out, and of a connection that
  never got as far as a callback (it sent nothing) for ``idle_timeout``;
* when descriptors run short (``SHED_FRACTION`` of RLIMIT_NOFILE in use), connections that
  sent nothing are closed after ``SHED_AGE`` seconds instead.

"Close" is ``shutdown(2)`` on the session's socket, never ``close(2)``: libmilter owns the
descriptor; it reads EOF, calls the close callback and frees the slot itself. A descriptor
is acted on only while it still names the socket (inode) it named when it was learnt.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import stat
import threading
import time
from dataclasses import dataclass

log = logging.getLogger("authmilter")

REFUSED_GRACE = 0.2  # seconds a refused session is left to send its 451 before it is closed
SHED_FRACTION = 0.75  # of RLIMIT_NOFILE in use: shed connections that sent nothing
SHED_AGE = 0.5  # seconds a silent connection may live when shedding
MIN_TICK, MAX_TICK = 0.2, 5.0  # the reaper looks every idle_timeout / 10, within these
PRESSURE_TICK = 0.5  # and counts descriptors this often (a flood fills them in less)
EMERGENCY_TICK = 0.1
LOG_EVERY = 10.0  # seconds between two log lines about refused sessions


@dataclass(slots=True)
class Conn:
    """What the guard knows of one session (the adapter holds it on its AuthMilter)."""

    conn_id: str
    opened: float
    last: float  # monotonic time of the last callback's start or end
    busy: int = 0  # callbacks running
    fd: int | None = None
    inode: int | None = None
    fd_tried: bool = False
    refused: bool = False
    closing: bool = False  # shut down by the reaper; libmilter will close it
    live: bool = True


@dataclass
class GuardStats:
    """Counters since start (tests, logs, the bench)."""

    refused: int = 0
    reaped_idle: int = 0
    reaped_silent: int = 0
    shed: int = 0


class SessionGuard:
    """The session cap and the reaper of one process."""

    def __init__(self, max_sessions: int, idle_timeout: float, fd_limit: int = 0) -> None:
        self.max_sessions = max_sessions
        self.idle_timeout = float(idle_timeout)
        self.fd_limit = fd_limit or _soft_fd_limit()
        self.stats = GuardStats()
        self._conns: dict[int, Conn] = {}
        self._silent: dict[int, float] = {}  # inode -> first seen, for connections not ours
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._last_refusal_log = 0.0
        self._refused_since_log = 0

    # ------------------------------------------------------------------ sessions

    def open(self, conn_id: str) -> Conn:
        """A new session (the AuthMilter of a new connection)."""
        now = time.monotonic()
        conn = Conn(conn_id, now, now)
        with self._lock:
            self._conns[id(conn)] = conn
        return conn

    def admit(self, conn: Conn) -> bool:
        """At CONNECT: False (and the session is marked refused) beyond ``max_sessions``."""
        with self._lock:
            live = sum(1 for c in self._conns.values() if not c.refused)
            if live <= self.max_sessions:
                return True
            conn.refused = True
            self.stats.refused += 1
            self._refused_since_log += 1
            now = time.monotonic()
            if now - self._last_refusal_log < LOG_EVERY:
                return False
            count, self._refused_since_log = self._refused_since_log, 0
            self._last_refusal_log = now
        log.warning(
            "%d sessions already (milter.max_sessions = %d): refused %d connection(s) with 451",
            live - 1,
            self.max_sessions,
            count,
        )
        return False

    def begin(self, conn: Conn) -> None:
        """A callback starts."""
        with self._lock:
            conn.busy += 1
            conn.last = time.monotonic()

    def end(self, conn: Conn) -> None:
        """A callback ended."""
        with self._lock:
            conn.busy -= 1
            conn.last = time.monotonic()

    def learn_fd(self, conn: Conn, fd: int | None) -> None:
        """The descriptor libmilter reads this session from (None: unknown)."""
        conn.fd_tried = True
        if fd is None:
            return
        try:
            inode = os.fstat(fd).st_ino
        except OSError:
            return
        with self._lock:
            conn.fd, conn.inode = fd, inode

    def forget(self, conn: Conn) -> None:
        """The session ended (libmilter's close callback); safe to call twice."""
        with self._lock:
            conn.live = False
            self._conns.pop(id(conn), None)

    def live(self) -> int:
        """Sessions open now (refused ones included until they are closed)."""
        with self._lock:
            return len(self._conns)

    # ------------------------------------------------------------------ the reaper

    def start(self) -> None:
        """Start the reaper thread."""
        self._thread = threading.Thread(target=self._run, name="session-reaper", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop the reaper thread."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(2)

    def _run(self) -> None:
        tick = min(max(self.idle_timeout / 10, MIN_TICK), MAX_TICK)
        wait = min(tick, PRESSURE_TICK)
        next_pass = time.monotonic() + tick
        while not self._stop.wait(wait):
            now = time.monotonic()
            try:
                pressed = len(_open_fds()) >= self.fd_limit * SHED_FRACTION
                emergency = self.reap(now) if pressed or now >= next_pass else False
            except Exception:  # the reaper must outlive any surprise
                log.exception("session reaper failed")
                emergency = False
            if now >= next_pass:
                next_pass = now + tick
            wait = EMERGENCY_TICK if emergency else min(tick, PRESSURE_TICK)

    def reap(self, now: float) -> bool:
        """One pass; True when descriptors are short (the next pass should come soon)."""
        with self._lock:
            conns = [c for c in self._conns.values() if not c.closing]
            all_known = all(c.inode is not None for c in self._conns.values() if c.fd_tried)
            known = {c.inode for c in self._conns.values() if c.inode is not None}
        for conn in conns:
            if conn.busy or conn.fd is None or conn.inode is None:
                continue
            idle = now - conn.last
            due = (conn.refused and idle >= REFUSED_GRACE) or idle >= self.idle_timeout
            if due and _shutdown(conn.fd, conn.inode):
                conn.closing = True
                if not conn.refused:
                    self.stats.reaped_idle += 1
                    log.info("conn=%s idle for %.0fs: closed", conn.conn_id, idle)
        if not all_known:  # some session's descriptor is unknown: it would look silent
            return False
        sockets, in_use = _session_sockets()
        emergency = in_use >= self.fd_limit * SHED_FRACTION
        seen: dict[int, float] = {}
        closed_silent = shed = 0
        for fd, inode in sockets:
            if inode in known:
                continue
            first = seen[inode] = self._silent.get(inode, now)
            age = now - first
            due = age >= self.idle_timeout or (emergency and age >= SHED_AGE)
            if due and _shutdown(fd, inode):
                if age >= self.idle_timeout:
                    closed_silent += 1
                else:
                    shed += 1
        self._silent = seen
        self.stats.reaped_silent += closed_silent
        self.stats.shed += shed
        if closed_silent:
            log.info(
                "closed %d connection(s) that sent nothing for %.0fs",
                closed_silent,
                self.idle_timeout,
            )
        if shed:
            log.warning(
                "%d of %d descriptors in use: closed %d connection(s) that sent nothing",
                in_use,
                self.fd_limit,
                shed,
            )
        return emergency


# --------------------------------------------------------------------------- descriptors


def _soft_fd_limit() -> int:
    import resource  # noqa: PLC0415 (POSIX only, like the rest of the daemon)

    soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    return soft if soft != resource.RLIM_INFINITY else 1 << 20


def _open_fds() -> list[int]:
    """This process's descriptors (by probing each number when /proc cannot be listed)."""
    try:
        return [int(name) for name in os.listdir("/proc/self/fd")]  # noqa: PTH208
    except OSError:  # EMFILE: listing needs a descriptor; fstat does not
        fds = []
        for fd in range(min(_soft_fd_limit(), 1 << 16)):
            with contextlib.suppress(OSError):
                os.fstat(fd)
                fds.append(fd)
        return fds


def _session_sockets() -> tuple[list[tuple[int, int]], int]:
    """(descriptor, inode) of every accepted MTA connection, and the descriptors in use.

    An accepted connection is a stream socket, not listening, whose local address is that
    of a listening socket of this process (the same path, or the same family and port).
    """
    fds = _open_fds()
    listening: set[object] = set()
    streams: list[tuple[int, int, object]] = []
    for fd in fds:
        try:
            st = os.fstat(fd)
        except OSError:
            continue
        if not stat.S_ISSOCK(st.st_mode):
            continue
        info = _socket_info(fd)
        if info is None:
            continue
        accepting, local = info
        if accepting:
            listening.add(local)
        else:
            streams.append((fd, st.st_ino, local))
    return [(fd, inode) for fd, inode, local in streams if local in listening], len(fds)


def _socket_info(fd: int) -> tuple[bool, object] | None:
    """(listening?, local address key) of a stream socket; None for anything else."""
    if socket.getdefaulttimeout() is not None:  # wrapping would make the socket non-blocking
        return None
    try:
        sock = socket.socket(fileno=fd)  # wraps the descriptor: no new one, detached below
    except OSError:
        return None
    try:
        if sock.type != socket.SOCK_STREAM:
            return None
        accepting = bool(sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN))
        name = sock.getsockname()
        if sock.family == socket.AF_UNIX:
            key: object = ("unix", name)
        elif sock.family in (socket.AF_INET, socket.AF_INET6):
            key = (int(sock.family), name[1])  # the port: a wildcard listener, a specific peer
        else:
            return None
        return accepting, key
    except OSError:
        return None
    finally:
        sock.detach()


def _shutdown(fd: int, inode: int) -> bool:
    """shutdown(2) the socket at ``fd`` if it is still the one with ``inode``."""
    if socket.getdefaulttimeout() is not None:  # wrapping would make the socket non-blocking
        return False
    try:
        target = os.dup(fd)  # holds the socket: the inode check cannot go stale
        owned = True
    except OSError:  # out of descriptors: check and act on fd itself
        target, owned = fd, False
    try:
        if os.fstat(target).st_ino != inode:
            return False
        sock = socket.socket(fileno=target)
        try:
            sock.shutdown(socket.SHUT_RDWR)
        finally:
            sock.detach()
    except OSError:
        return False
    finally:
        if owned:
            os.close(target)
    return True
