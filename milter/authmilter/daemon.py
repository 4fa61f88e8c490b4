"""``authmilter run``: the process around the engine (socket, privileges, workers, reload).

Engines come from :mod:`authmilter.compose`; libmilter is driven through
:mod:`authmilter.milter_adapter`. Order matters: build the engine (keys, PSL) first, so a
broken config never opens a socket; block TERM/INT/HUP/USR1 before any thread starts
(libmilter's own signal thread then owns TERM/INT/HUP and stops cleanly, and our reload
thread sigwaits for USR1); open the socket with the configured umask, hand it to the
configured user, drop privileges, and enter libmilter's main loop. With ``milter.workers``
> 1 the process opens the socket itself and a :class:`~authmilter.supervisor.Supervisor`
forks that many workers, each running libmilter on the inherited descriptor.

History (``reports.history``): each process that serves mail (the one process, or each
worker after its fork) starts its own recorder once privileges are dropped
(:class:`History`); a reload with the same DSN keeps it, a changed DSN starts a new one and
flushes and closes the old one after the swap; a clean stop flushes it before the exit.
Failure reports (``reports.failure_reports``) follow the same life (:class:`FailureReports`).

Metrics (``metrics.listen``) are served by the one process there is, or by the supervisor,
which sums its workers' values (:mod:`authmilter.metrics`); they start after privileges
are dropped, and a failure to serve them is logged, never fatal.
"""

from __future__ import annotations

import contextlib
import logging
import os
import resource
import signal
import socket
import stat
import threading
from pathlib import Path

from authmilter import __version__, metrics, milter_adapter
from authmilter.compose import (
    build_engine,
    load_engine,
    start_failure_reporter,
    start_recorder,
    with_observers,
)
from authmilter.config import Config, load
from authmilter.engine import Engine
from authmilter.errors import AuthmilterError, ConfigError
from authmilter.logsetup import setup_logging
from authmilter.reports.failure import FailureReporter
from authmilter.reports.recorder import HistoryRecorder
from authmilter.sessionguard import SessionGuard
from authmilter.supervisor import WAITED, Supervisor, die_with_parent
from authmilter.users import user_ids

log = logging.getLogger("authmilter")


class EngineHolder:
    """The current engine; a reload swaps it (open connections keep theirs)."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._lock = threading.Lock()

    def get(self) -> Engine:
        with self._lock:
            return self._engine

    def swap(self, engine: Engine) -> None:
        with self._lock:
            self._engine = engine


class History:
    """This process's history recorder, kept across reloads while ``reports.history`` stays."""

    CLOSE_TIMEOUT = 5.0  # seconds a stop or a DSN change waits for queued rows (under the
    # supervisor's 10 s stop timeout)

    def __init__(self) -> None:
        self.recorder: HistoryRecorder | None = None
        self._dsn = ""
        self._lock = threading.Lock()
        self.failure = FailureReports()  # and this process's failure reporter

    def attach(self, engine: Engine) -> tuple[Engine, HistoryRecorder | None]:
        """``engine`` with this process's recorder; and the recorder it replaces, if any
        (to be closed once the new engine is in place)."""
        engine = self.failure.attach(engine)
        with self._lock:
            dsn = engine.config.reports.history
            old = None
            if dsn != self._dsn or (dsn and self.recorder is None):  # new, or failed before
                old, self._dsn = self.recorder, dsn
                self.recorder = start_recorder(engine.config, engine.authserv_id)
            if self.recorder is None:
                return engine, old
            return with_observers(engine, (*engine.observers, self.recorder)), old

    def close(self) -> None:
        """Write out what is queued and stop recording (a clean stop)."""
        with self._lock:
            recorder, self.recorder, self._dsn = self.recorder, None, ""
        if recorder is not None:
            recorder.close(self.CLOSE_TIMEOUT)
        self.failure.close()


class FailureReports:
    """This process's failure reporter (:mod:`authmilter.reports.failure`), made after the
    fork and the privilege drop like the recorder, kept across reloads while its settings,
    resolver and PSL stay (and with it the rate limit's counts)."""

    CLOSE_TIMEOUT = 5.0  # seconds a stop waits for queued reports

    def __init__(self) -> None:
        self.reporter: FailureReporter | None = None
        self._key: tuple[object, ...] = ()
        self._lock = threading.Lock()

    def attach(self, engine: Engine) -> Engine:
        """``engine`` with this process's failure reporter, when failure reports are on.

        A replaced reporter drains in the background (it takes nothing new), so that a
        reload never waits for a relay.
        """
        cfg = engine.config
        key = (cfg.reports, engine.authserv_id, id(engine.resolver), id(engine.psl))
        with self._lock:
            if key != self._key:
                old, self._key = self.reporter, key
                self.reporter = start_failure_reporter(engine)
                if old is not None:
                    threading.Thread(
                        target=old.close, args=(self.CLOSE_TIMEOUT,), name="failure-close"
                    ).start()
            reporter = self.reporter
        if reporter is None:
            return engine
        return with_observers(engine, (*engine.observers, reporter))

    def close(self) -> None:
        """Send what is queued (for at most CLOSE_TIMEOUT seconds) and stop (a clean stop)."""
        with self._lock:
            reporter, self.reporter, self._key = self.reporter, None, ()
        if reporter is not None:
            reporter.close(self.CLOSE_TIMEOUT)


def run(config_path: str) -> int:
    """Run the milter in the foreground until TERM/INT/HUP."""
    cfg = load(config_path)
    setup_logging(cfg.milter)
    raise_fd_limit()
    engine = build_engine(cfg)
    # Before any thread exists: libmilter's signal thread and our sigwait()s need these blocked.
    signal.pthread_sigmask(signal.SIG_BLOCK, WAITED)
    workers = cfg.milter.worker_count()  # "auto" is resolved here, once
    if workers == 1:
        return _serve(cfg, config_path, engine)
    listener = open_listener(cfg)
    # Non-blocking: every worker polls the socket and all wake for one connection; those
    # that lose the race must get EAGAIN, not sit in accept() where no stop flag is seen.
    listener.setblocking(False)
    _drop_privileges(cfg)
    parent = os.getpid()
    endpoint = metrics.start(cfg.metrics.listen, workers=workers)
    log.info(
        "authmilter %s listening on %s with %s (authserv-id %s)",
        __version__,
        cfg.milter.socket,
        workers_text(cfg, workers),
        engine.authserv_id,
    )

    def spawn(slot: int) -> int:
        pid = os.fork()
        if pid == 0:  # the worker: never returns into the parent's code
            status = 1
            try:
                if not die_with_parent(parent):
                    os._exit(0)  # the supervisor died while forking us
                if endpoint is not None:
                    endpoint.close_in_worker()
                fresh = _fresh_engine(config_path, engine) if supervisor.restarts else engine
                status = _serve(
                    cfg, config_path, fresh, fd=listener.fileno(), worker=slot + 1, parent=parent
                )
            except BaseException:
                log.exception("worker %d failed", slot + 1)
            finally:
                os._exit(status)
        return pid

    supervisor = Supervisor(workers, spawn)
    try:
        return supervisor.run()
    finally:
        listener.close()
        _remove_socket(cfg)
        if endpoint is not None:
            endpoint.close()
        log.info("authmilter stopped")


def workers_text(cfg: Config, count: int) -> str:
    """What the start-up line says about ``milter.workers``: "2 workers (auto)", "1 worker"."""
    auto = " (auto)" if cfg.milter.workers == "auto" else ""
    return f"{count} worker{'s' if count != 1 else ''}{auto}"


def _fresh_engine(config_path: str, fallback: Engine) -> Engine:
    """A restarted worker reads the config again (it may have been reloaded since)."""
    holder = EngineHolder(fallback)
    reload_engine(config_path, holder)
    return holder.get()


def _serve(
    cfg: Config,
    config_path: str,
    engine: Engine,
    *,
    fd: int | None = None,
    worker: int = 0,
    parent: int | None = None,
) -> int:
    """One libmilter main loop: on the configured socket, or on an inherited one (``fd``).

    ``parent``: a worker's supervisor; the worker stops when it is gone.
    """
    holder = EngineHolder(engine)
    history = History()
    if fd is not None:  # a worker: privileges were dropped before the fork
        holder.swap(history.attach(engine)[0])
    reloader = threading.Thread(
        target=_reload_loop, args=(config_path, holder, history), name="reload", daemon=True
    )
    reloader.start()
    spec = f"fd:{fd}" if fd is not None else _libmilter_spec(cfg.milter.socket)
    prefix = f"{worker}." if worker else ""
    guard = SessionGuard(session_cap(cfg.milter.max_sessions), cfg.milter.timeout)
    milter_adapter.prepare(holder.get, spec, cfg.milter.timeout, prefix, guard)
    endpoint = None
    if fd is None:
        _open_socket(cfg)
        _drop_privileges(cfg)
        holder.swap(history.attach(engine)[0])
        endpoint = metrics.start(cfg.metrics.listen)
        log.info(
            "authmilter %s listening on %s with %s (authserv-id %s)",
            __version__,
            cfg.milter.socket,
            workers_text(cfg, 1),
            engine.authserv_id,
        )
    else:
        milter_adapter.open_socket(False, spec)
    try:
        milter_adapter.main_loop(parent, guard)
    finally:
        history.close()
        if fd is None:
            _remove_socket(cfg)
        if endpoint is not None:
            endpoint.close()
    if fd is None:
        log.info("authmilter stopped")
    return 0


FDS_RESERVED = 64  # descriptors kept for everything but sessions (libraries, logs, keys)
FDS_PER_SESSION = 2  # its socket, and a DNS socket while one of its lookups runs


def raise_fd_limit() -> int:
    """Raise the soft RLIMIT_NOFILE to the hard one (the unit sets both); the soft limit.

    Under the Debian unit the sandbox forbids setrlimit and LimitNOFILE has done it.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
        except (OSError, ValueError) as exc:
            log.debug("cannot raise the descriptor limit from %d to %d: %s", soft, hard, exc)
    return soft if soft != resource.RLIM_INFINITY else 1 << 20


def session_cap(configured: int) -> int:
    """milter.max_sessions, lowered to what the descriptor limit can hold.

    libmilter's accept loop spins on EMFILE: the cap must keep a process well below it.
    """
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return configured
    room = max(1, (soft - FDS_RESERVED) // FDS_PER_SESSION)
    if configured > room:
        log.warning(
            "milter.max_sessions = %d needs more descriptors than the limit of %d allows:"
            " capping sessions at %d (raise LimitNOFILE / ulimit -n)",
            configured,
            soft,
            room,
        )
        return room
    return configured


def _libmilter_spec(spec: str) -> str:
    kind, _, rest = spec.partition(":")
    return f"local:{rest}" if kind == "unix" else spec


def _unix_path(spec: str) -> str | None:
    kind, _, rest = spec.partition(":")
    return rest if kind in ("unix", "local") else None


def _open_socket(cfg: Config) -> None:
    path = _unix_path(cfg.milter.socket)
    if path is not None:
        _check_socket_dir(cfg, path)
    old = os.umask(int(cfg.milter.umask, 8))
    try:
        milter_adapter.open_socket(True, cfg.milter.socket)  # True: remove a stale socket
    finally:
        os.umask(old)
    if path is not None and cfg.milter.user and os.geteuid() == 0:
        uid, gid = _user_ids(cfg)
        os.chown(path, uid, gid)


def open_listener(cfg: Config) -> socket.socket:
    """The listening socket the workers share (what libmilter would open itself)."""
    spec = cfg.milter.socket
    kind, _, rest = spec.partition(":")
    if kind == "fd":
        return socket.socket(fileno=int(rest))
    path = _unix_path(spec)
    try:
        if path is not None:
            _check_socket_dir(cfg, path)
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            with contextlib.suppress(FileNotFoundError):
                if stat.S_ISSOCK(os.lstat(path).st_mode):
                    Path(path).unlink()  # stale socket of a crashed run
            old = os.umask(int(cfg.milter.umask, 8))
            try:
                sock.bind(path)
            finally:
                os.umask(old)
            if cfg.milter.user and os.geteuid() == 0:
                os.chown(path, *_user_ids(cfg))
        else:
            port, _, host = rest.partition("@")
            family = socket.AF_INET6 if kind == "inet6" else socket.AF_INET
            host = host.strip("[]") or ("::" if family == socket.AF_INET6 else "0.0.0.0")  # noqa: S104
            sock = socket.socket(family, socket.SOCK_STREAM)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((host, int(port)))
        sock.listen(128)
    except OSError as exc:
        raise AuthmilterError(f"cannot open milter socket {spec}: {exc.strerror}") from None
    os.set_inheritable(sock.fileno(), True)
    return sock


def _check_socket_dir(cfg: Config, path: str) -> None:
    parent = Path(path).parent
    if not parent.is_dir():
        raise ConfigError(f"{cfg.path}: milter.socket: directory {parent} does not exist")


def _remove_socket(cfg: Config) -> None:
    """libmilter leaves its unix socket behind; a clean stop removes it."""
    path = _unix_path(cfg.milter.socket)
    if path is not None:
        with contextlib.suppress(OSError):
            Path(path).unlink()


def _user_ids(cfg: Config) -> tuple[int, int]:
    return user_ids(cfg.milter.user, cfg.milter.group, f"{cfg.path}: milter")


def _drop_privileges(cfg: Config) -> None:
    if not cfg.milter.user:
        return
    uid, gid = _user_ids(cfg)
    if os.geteuid() != 0:
        if os.geteuid() == uid:
            return
        raise ConfigError(
            f"{cfg.path}: milter.user: must start as root to become {cfg.milter.user!r}"
        )
    os.setgroups([gid])
    os.setgid(gid)
    os.setuid(uid)
    log.info("running as %s (uid %d, gid %d)", cfg.milter.user, uid, gid)


def _reload_loop(config_path: str, holder: EngineHolder, history: History) -> None:
    while True:
        signal.sigwait({signal.SIGUSR1})
        metrics.reload(reload_engine(config_path, holder, history))


def reload_engine(config_path: str, holder: EngineHolder, history: History | None = None) -> bool:
    """Build a new engine from the config file; keep the old one if that fails.

    The DNS resolver, and so its cache, is kept when the ``[dns]`` settings did not change;
    the history recorder when ``reports.history`` did not (``history``: this process's).
    """
    try:
        engine = load_engine(config_path, holder.get())
    except AuthmilterError as exc:
        log.error("reload failed, keeping the running configuration: %s", exc)
        return False
    except Exception:
        log.exception("reload failed, keeping the running configuration")
        return False
    if engine.config.metrics != holder.get().config.metrics:
        log.warning("metrics: a changed [metrics] section takes effect at the next start")
    old = None
    if history is not None:
        engine, old = history.attach(engine)
    holder.swap(engine)
    if old is not None:
        old.close(History.CLOSE_TIMEOUT)
    log.info("reloaded %s", config_path)
    return True
