"""``authmilter run``: the composition root of the daemon.

Order matters: load the config and build the engine (keys, PSL) first, so a broken config
never opens a socket; block TERM/INT/HUP/USR1 before any thread starts (libmilter's own
signal thread then owns TERM/INT/HUP and stops cleanly, and our reload thread sigwaits for
USR1); open the socket with the configured umask, hand it to the configured user, drop
privileges, and enter libmilter's main loop.
"""

from __future__ import annotations

import contextlib
import grp
import itertools
import logging
import os
import pwd
import signal
import threading
from pathlib import Path

import Milter
import milter

from authmilter import __version__
from authmilter.config import Config, load
from authmilter.engine import Engine, build_engine
from authmilter.errors import AuthmilterError, ConfigError
from authmilter.logsetup import setup_logging
from authmilter.milter_adapter import FLAGS, AuthMilter

log = logging.getLogger("authmilter")

STOP_SIGNALS = {signal.SIGTERM, signal.SIGINT, signal.SIGHUP}


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


def run(config_path: str) -> int:
    """Run the milter in the foreground until TERM/INT/HUP."""
    cfg = load(config_path)
    setup_logging(cfg.milter)
    engine = build_engine(cfg)
    holder = EngineHolder(engine)

    signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS | {signal.SIGUSR1})
    reloader = threading.Thread(
        target=_reload_loop, args=(config_path, holder), name="reload", daemon=True
    )
    reloader.start()

    counter = itertools.count(1)
    Milter.factory = lambda: AuthMilter(holder.get, next(counter))
    Milter.set_flags(FLAGS)
    Milter.set_exception_policy(Milter.TEMPFAIL)
    _register(cfg)
    _open_socket(cfg)
    _drop_privileges(cfg)
    log.info(
        "authmilter %s listening on %s (authserv-id %s)",
        __version__,
        cfg.milter.socket,
        engine.authserv_id,
    )
    try:
        milter.main()
    except milter.error as exc:
        raise AuthmilterError(f"milter main loop failed: {exc}") from None
    finally:
        _remove_socket(cfg)
    log.info("authmilter stopped")
    return 0


def _register(cfg: Config) -> None:
    """What Milter.runmilter does before opening the socket (we need a step in between)."""
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
    milter.setconn(_libmilter_spec(cfg.milter.socket))
    milter.settimeout(cfg.milter.timeout)
    milter.register(
        "authmilter",
        data=lambda ctx: ctx.getpriv().data(),
        unknown=lambda ctx, cmd: ctx.getpriv().unknown(cmd),
        negotiate=Milter.negotiate_callback,
    )


def _libmilter_spec(spec: str) -> str:
    kind, _, rest = spec.partition(":")
    return f"local:{rest}" if kind == "unix" else spec


def _unix_path(spec: str) -> str | None:
    kind, _, rest = spec.partition(":")
    return rest if kind in ("unix", "local") else None


def _open_socket(cfg: Config) -> None:
    path = _unix_path(cfg.milter.socket)
    if path is not None:
        parent = Path(path).parent
        if not parent.is_dir():
            raise ConfigError(f"{cfg.path}: milter.socket: directory {parent} does not exist")
    old = os.umask(int(cfg.milter.umask, 8))
    try:
        milter.opensocket(True)  # True: remove a stale socket left by a crash
    except milter.error:
        raise AuthmilterError(f"cannot open milter socket {cfg.milter.socket}") from None
    finally:
        os.umask(old)
    if path is not None and cfg.milter.user and os.geteuid() == 0:
        uid, gid = _user_ids(cfg)
        os.chown(path, uid, gid)


def _remove_socket(cfg: Config) -> None:
    """libmilter leaves its unix socket behind; a clean stop removes it."""
    path = _unix_path(cfg.milter.socket)
    if path is not None:
        with contextlib.suppress(OSError):
            Path(path).unlink()


def _user_ids(cfg: Config) -> tuple[int, int]:
    try:
        pw = pwd.getpwnam(cfg.milter.user)
    except KeyError:
        raise ConfigError(f"{cfg.path}: milter.user: no such user {cfg.milter.user!r}") from None
    gid = pw.pw_gid
    if cfg.milter.group:
        try:
            gid = grp.getgrnam(cfg.milter.group).gr_gid
        except KeyError:
            raise ConfigError(
                f"{cfg.path}: milter.group: no such group {cfg.milter.group!r}"
            ) from None
    return pw.pw_uid, gid


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


def _reload_loop(config_path: str, holder: EngineHolder) -> None:
    while True:
        signal.sigwait({signal.SIGUSR1})
        reload_engine(config_path, holder)


def reload_engine(config_path: str, holder: EngineHolder) -> bool:
    """Build a new engine from the config file; keep the old one if that fails."""
    try:
        cfg = load(config_path)
        engine = build_engine(cfg)
    except AuthmilterError as exc:
        log.error("reload failed, keeping the running configuration: %s", exc)
        return False
    except Exception:
        log.exception("reload failed, keeping the running configuration")
        return False
    holder.swap(engine)
    log.info("reloaded %s", config_path)
    return True
