"""The libmilter adapter: the only module that imports ``Milter`` (pymilter).

:class:`AuthMilter` turns libmilter's callbacks into :class:`~authmilter.session.Session`
stages (raw header bytes with their leading space, body chunks, macros, client address) and
executes the session's :class:`~authmilter.decision.Decision`: reply, header edits,
quarantine. libmilter runs one connection's callbacks on different threads, so the state
lives on the instance (one per connection). :func:`prepare`, :func:`open_socket` and
:func:`main_loop` are libmilter's set-up, for the daemon.
"""

from __future__ import annotations

import collections
import contextlib
import ctypes
import functools
import ipaddress
import itertools
import logging
import os
import signal
import socket
import stat
import threading
import weakref
from collections.abc import Callable
from typing import Any, TypeVar

import Milter
import milter

from authmilter import metrics, replies
from authmilter.decision import Action, Decision, Reply
from authmilter.engine import Engine
from authmilter.errors import AuthmilterError
from authmilter.session import Session
from authmilter.sessionguard import Conn, SessionGuard

log = logging.getLogger("authmilter")

_ACTIONS = {
    Action.ACCEPT: Milter.ACCEPT,
    Action.QUARANTINE: Milter.ACCEPT,
    Action.REJECT: Milter.REJECT,
    Action.TEMPFAIL: Milter.TEMPFAIL,
    Action.DISCARD: Milter.DISCARD,
}

FLAGS = Milter.ADDHDRS | Milter.CHGHDRS | Milter.QUARANTINE

# Bookkeeping of connections collected without a close() callback (deque.append and
# popleft are atomic and take no lock, so a finalizer may call append at any moment).
_ORPHANED: collections.deque[Callable[[], None]] = collections.deque()


def _run_orphaned() -> None:
    while True:
        try:
            undo = _ORPHANED.popleft()
        except IndexError:
            return
        undo()


_Callback = TypeVar("_Callback", bound=Callable[..., int])


def _tracked(method: _Callback) -> _Callback:
    """A callback the session guard sees start and end (its idle clock; the cap's count)."""

    @functools.wraps(method)
    def wrapper(self: AuthMilter, *args: Any) -> int:
        guard, conn = self._guard, self._conn
        if guard is None or conn is None:
            return method(self, *args)
        if not conn.fd_tried:
            guard.learn_fd(conn, _session_fd(getattr(self, "_ctx", None), self))
        guard.begin(conn)
        try:
            return method(self, *args)
        finally:
            guard.end(conn)

    return wrapper  # type: ignore[return-value]


@Milter.header_leading_space
class AuthMilter(Milter.Base):  # type: ignore[misc]
    """One instance per SMTP connection."""

    def __init__(
        self,
        engine_provider: Callable[[], Engine],
        conn_id: str = "0",
        guard: SessionGuard | None = None,
    ) -> None:
        _run_orphaned()
        self.session = Session(engine_provider(), conn_id)  # one engine per connection
        self._closed = metrics.session_opened()  # sessions in flight, until close()
        self._guard = guard
        self._conn: Conn | None = None
        if guard is not None:
            self._conn = guard.open(conn_id)
        # Should libmilter never call close(): the bookkeeping runs after the object is
        # collected, at the next connection. Never in the finalizer itself: the cyclic GC
        # may run it on a thread that holds the guard's (or a metric's) lock right then.
        self._finalizer = weakref.finalize(self, _ORPHANED.append, self._close_bookkeeping)

    def _macro(self, name: str) -> str:
        try:
            value = self.getsymval(name)
        except Exception:  # noqa: BLE001  (no context in some test harnesses)
            return ""
        return value if isinstance(value, str) else ""

    # ------------------------------------------------------------------ callbacks

    @_tracked
    def connect(self, hostname: str, family: int, hostaddr: Any) -> int:
        # Not @noreply: beyond milter.max_sessions the answer is a 451 at once.
        guard, conn = self._guard, self._conn
        if guard is not None and conn is not None and not guard.admit(conn):
            self._reply(replies.busy())
            return Milter.TEMPFAIL
        self.session.connect(
            hostname or "", _address(family, hostaddr), self._macro("{daemon_name}")
        )
        return Milter.CONTINUE

    @Milter.noreply
    @_tracked
    def hello(self, heloname: str) -> int:
        self.session.helo(heloname or "")
        return Milter.CONTINUE

    @_tracked
    def envfrom(self, mailfrom: str, *esmtp: str) -> int:
        self.session.mail_from(
            mailfrom,
            self._macro("{auth_authen}") or None,
            self._macro("i"),
            self._macro("{daemon_name}"),
        )
        return Milter.CONTINUE

    @_tracked
    def envrcpt(self, to: str, *esmtp: str) -> int:
        decision = self.session.recipient(to)
        if decision is None:
            return Milter.CONTINUE
        self._apply(decision)
        return _ACTIONS[decision.action]

    @Milter.noreply
    @Milter.decode("bytes")
    @_tracked
    def header(self, name: str, value: bytes) -> int:
        if isinstance(value, str):  # an MTA that does not honour the bytes strategy
            value = value.encode("utf-8", "surrogateescape")
        if not self._leading_space():
            value = b" " + value  # the MTA stripped it; "Name: value" is the norm
        self.session.header(name, value)
        return Milter.CONTINUE

    @Milter.noreply
    @_tracked
    def eoh(self) -> int:
        # Kept (not negotiated away): some MTA-side tools (miltertest) insist on sending it.
        self.session.end_of_headers()
        return Milter.CONTINUE

    @Milter.noreply
    @_tracked
    def body(self, chunk: bytes) -> int:
        self.session.body(chunk)
        return Milter.CONTINUE

    @_tracked
    def eom(self) -> int:
        decision = self.session.end_of_message(self._macro("i"))
        try:
            self._apply(decision)
        except Exception:
            log.exception("conn=%s cannot apply the decision", self.session.conn_id)
            metrics.internal_error("apply")
            self._reply(replies.internal_error())
            return Milter.TEMPFAIL
        return _ACTIONS[decision.action]

    def close(self) -> int:
        """libmilter's close callback (never negotiated away): the connection is gone."""
        self._finalizer.detach()
        self._close_bookkeeping()
        _run_orphaned()
        return Milter.CONTINUE

    @property
    def _close_bookkeeping(self) -> Callable[[], None]:
        """What a closed connection must undo (idempotent; holds no reference to self)."""
        closed, guard, conn = self._closed, self._guard, self._conn

        def undo() -> None:
            closed()
            if guard is not None and conn is not None:
                guard.forget(conn)

        return undo

    # abort is not overridden: per-message state is reset at MAIL FROM, so pymilter
    # negotiates that callback away.

    # ------------------------------------------------------------------ actions

    def _leading_space(self) -> bool:
        """Did the MTA agree to pass header values with their leading space (SMFIP_HDR_LEADSPC)?"""
        return bool(getattr(self, "_protocol", 0) & Milter.P_HDR_LEADSPC)

    def _apply(self, decision: Decision) -> None:
        if decision.reply is not None:
            self._reply(decision.reply)
        if not decision.edits_applied:
            return
        for edit in decision.remove_headers:
            self.chgheader(edit.name, edit.index, None)
        space = " " if self._leading_space() else ""  # with HDR_LEADSPC we supply it
        for edit in decision.add_headers:
            if edit.value is not None:
                self.addheader(edit.name, space + _milter_value(edit.value), edit.index)
        if decision.action == Action.QUARANTINE:
            self.quarantine(decision.why or "authmilter")

    def _reply(self, reply: Reply) -> None:
        self.setreply(str(reply.code), reply.status, reply.text.replace("%", "%%"))


def _address(family: int, hostaddr: Any) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """The client's IP address (None for a unix-socket or unknown client)."""
    if family not in (socket.AF_INET, socket.AF_INET6) or not hostaddr:
        return None
    try:
        return ipaddress.ip_address(str(hostaddr[0]).split("%")[0])
    except ValueError:
        return None


def _milter_value(value: str) -> str:
    """Header values go to libmilter with LF folds and no CR."""
    return value.replace("\r\n", "\n").replace("\r", "")


# --------------------------------------------------------------------------- libmilter set-up


def prepare(
    engine_provider: Callable[[], Engine],
    spec: str,
    timeout: int,
    conn_prefix: str = "",
    guard: SessionGuard | None = None,
) -> None:
    """What Milter.runmilter does before opening the socket (the daemon needs a step between).

    ``spec`` is libmilter's socket spec (``local:/path``, ``inet:port@host``, ``fd:N``);
    ``guard``: the session cap and idle reaper (:func:`main_loop` runs its thread).
    """
    counter = itertools.count(1)
    Milter.factory = lambda: AuthMilter(engine_provider, f"{conn_prefix}{next(counter)}", guard)
    Milter.set_flags(FLAGS)
    Milter.set_exception_policy(Milter.TEMPFAIL)
    milter.set_connect_callback(Milter.connect_callback)
    milter.set_helo_callback(lambda ctx, host: ctx.getpriv().hello(host))
    milter.set_envfrom_callback(lambda ctx, *b: ctx.getpriv().envfrom_bytes(*b))
    milter.set_envrcpt_callback(lambda ctx, *b: ctx.getpriv().envrcpt_bytes(*b))
    milter.set_header_callback(lambda ctx, f, v: ctx.getpriv().header_bytes(f, v))
    milter.set_eoh_callback(lambda ctx: ctx.getpriv().eoh())
    milter.set_body_callback(lambda ctx, chunk: ctx.getpriv().body(chunk))
    milter.set_eom_callback(lambda ctx: ctx.getpriv().eom())
    milter.set_abort_callback(lambda ctx: ctx.getpriv().abort())
    milter.set_close_callback(Milter.close_callback)
    milter.setconn(spec)
    milter.settimeout(timeout)
    milter.register(
        "authmilter",
        data=lambda ctx: ctx.getpriv().data(),
        unknown=lambda ctx, cmd: ctx.getpriv().unknown(cmd),
        negotiate=Milter.negotiate_callback,
    )


def open_socket(remove_stale: bool, what: str) -> None:
    """Open the socket given to :func:`prepare` (``what`` names it in errors)."""
    try:
        milter.opensocket(remove_stale)
    except milter.error:
        raise AuthmilterError(f"cannot open milter socket {what}") from None


# libmilter's listener polls its socket for up to MI_CHK_TIME (5 s) before it looks at its stop
# flag again, so a TERM (or smfi_stop) takes up to 5 s to stop it. A watcher thread reads the
# flag (mi_stop(), lock-free) and interrupts that poll with a signal sent to the main thread:
# poll returns EINTR and the listener sees the flag at once.
WAKE_SIGNAL = signal.SIGUSR2
WATCH_INTERVAL = 0.1  # seconds between two looks at the stop flag and the parent
MILTER_CONT = 0  # libmilter's mi_stop() value while running


@functools.cache
def _libmilter() -> ctypes.CDLL | None:
    """libmilter as pymilter loaded it (symbols are looked up through pymilter's module)."""
    try:
        lib = ctypes.CDLL(milter.__file__)
        lib.mi_stop.restype = ctypes.c_int
        lib.mi_stop.argtypes = []
        lib.smfi_getpriv.restype = ctypes.c_void_p
        lib.smfi_getpriv.argtypes = [ctypes.c_void_p]
    except (OSError, AttributeError, TypeError):
        return None
    return lib


def _session_fd(ctx: object, instance: object) -> int | None:
    """The socket libmilter reads this connection from, or None when it cannot be known.

    pymilter's context object is ``{PyObject_HEAD; SMFICTX *ctx; PyObject *priv; ...}`` and
    libmilter's SMFICTX starts ``{pthread_t ctx_id; int ctx_sd; ...}``. Neither is an API,
    so each step is checked before the next: the object's size, its ``priv`` being this
    AuthMilter, libmilter's own ``smfi_getpriv(ctx)`` naming the context object back, and
    the descriptor being a socket. Anything else (another pymilter, a test's fake context)
    gives None, and the guard then reaps nothing by descriptor.
    """
    lib = _libmilter()
    word = ctypes.sizeof(ctypes.c_void_p)
    head = object.__basicsize__
    if lib is None or ctx is None or type(ctx).__basicsize__ != head + 3 * word:
        return None
    base = id(ctx)
    if ctypes.c_void_p.from_address(base + head + word).value != id(instance):
        return None
    smfictx = ctypes.c_void_p.from_address(base + head).value
    if not smfictx or lib.smfi_getpriv(smfictx) != base:
        return None
    fd = ctypes.c_int.from_address(smfictx + ctypes.sizeof(ctypes.c_ulong)).value
    try:
        return fd if fd >= 0 and stat.S_ISSOCK(os.fstat(fd).st_mode) else None
    except OSError:
        return None


class StopWatcher(threading.Thread):
    """Makes libmilter's main loop stop promptly; in a worker, also when its parent is gone.

    ``parent``: the supervisor's pid. When the worker's parent changes (the supervisor was
    killed; ``PR_SET_PDEATHSIG`` normally says so first), the worker sends itself SIGTERM,
    which libmilter's signal thread turns into a clean stop.
    """

    def __init__(self, parent: int | None = None) -> None:
        super().__init__(name="stop-watcher", daemon=True)
        self.parent = parent
        self._main = threading.main_thread().ident
        self._done = threading.Event()
        self._lib = _libmilter()
        self._orphaned = False

    def run(self) -> None:
        while not self._done.wait(WATCH_INTERVAL):
            if self.parent is not None and not self._orphaned and os.getppid() != self.parent:
                self._orphaned = True
                log.warning("supervisor (pid %d) is gone: stopping", self.parent)
                os.kill(os.getpid(), signal.SIGTERM)
            if self._stopping() and self._main is not None:
                with contextlib.suppress(ProcessLookupError):
                    signal.pthread_kill(self._main, WAKE_SIGNAL)

    def _stopping(self) -> bool:
        if self._lib is None:
            return self._orphaned
        return int(self._lib.mi_stop()) != MILTER_CONT

    def finish(self) -> None:
        """The main loop has returned: stop watching."""
        self._done.set()


def main_loop(parent: int | None = None, guard: SessionGuard | None = None) -> None:
    """libmilter's main loop, until TERM/INT/HUP (or, given ``parent``, until it is gone).

    Call from the main thread, with TERM/INT/HUP blocked (libmilter's signal thread waits
    for them). ``guard``: the one given to :func:`prepare`; its reaper runs meanwhile.
    """
    signal.signal(WAKE_SIGNAL, _woken)
    watcher = StopWatcher(parent)
    watcher.start()
    if guard is not None:
        guard.start()
    try:
        milter.main()
    except milter.error as exc:
        raise AuthmilterError(f"milter main loop failed: {exc}") from None
    finally:
        watcher.finish()
        if guard is not None:
            guard.stop()


def _woken(signum: int, frame: object) -> None:
    """WAKE_SIGNAL's handler: nothing to do, the signal only interrupts libmilter's poll."""
