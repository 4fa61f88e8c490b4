"""The composition root: config -> resolver -> PSL -> keys -> login map -> engine.

Every command builds its engine here: ``run`` (and each reload), ``test`` and
``check-config``. Nothing else constructs a resolver, loads keys or reads the tables.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Sequence
from pathlib import Path

from authmilter.config import Config, from_dict, load
from authmilter.dnsresolver import DnspythonResolver, Resolver
from authmilter.engine import Engine, MessageObserver
from authmilter.errors import UsageError
from authmilter.psl import PublicSuffixList
from authmilter.reports.failure import FailureReporter
from authmilter.reports.recorder import HistoryRecorder
from authmilter.reports.relay import Relay
from authmilter.reports.store import open_store
from authmilter.signing.arcseal import Sealer
from authmilter.signing.keys import Identity
from authmilter.signing.loginmap import LoginMap
from authmilter.signing.signer import Signer
from authmilter.staticresolver import StaticResolver

log = logging.getLogger("authmilter")


def load_config(path: str | None) -> Config:
    """The config file, or the built-in defaults when ``path`` is None."""
    return load(path) if path else from_dict({}, "<defaults>")


def make_resolver(
    cfg: Config, *, zones: Sequence[str] = (), nameservers: Sequence[str] = ()
) -> Resolver:
    """The configured resolver; or answers from zone files; or other name servers."""
    if zones and nameservers:
        raise UsageError("use zone files or name servers, not both")
    if zones:
        static = StaticResolver()
        for zone in zones:
            static.add_zone_file(zone)
        return static
    try:
        return DnspythonResolver(
            nameservers or cfg.dns.nameservers,
            cfg.dns.timeout,
            cfg.dns.cache_size,
            cfg.dns.cache_bytes,
            cfg.dns.failure_ttl,
        )
    except ValueError as exc:  # only a command-line name server can be invalid here
        raise UsageError(f"--nameserver: {exc}") from None


def key_owner(cfg: Config) -> Identity:
    """Whom the key files must be safe for: ``milter.user``, else the running process."""
    return (
        Identity.for_user(cfg.milter.user, cfg.milter.group)
        if cfg.milter.user
        else Identity.current()
    )


def build_engine(
    cfg: Config,
    resolver: Resolver | None = None,
    *,
    warn_unsafe_keys: Callable[[str], None] | None = None,
    check_published: bool = True,
) -> Engine:
    """One engine (ConfigError on trouble): PSL, signing keys, ARC sealing key, login map,
    authserv-id.

    ``warn_unsafe_keys`` is for commands that never run as the daemon (``test``): when
    ``milter.user`` is not set, a key file unsafe for the current user is reported there
    and used anyway; a key unsafe for the configured user is still refused.

    With ``signing.require_published_key`` every signing key is looked up in DNS here (at
    start and on each reload) and logged as signing or not; ``check_published=False``
    leaves that to the first message (``check-config`` asks DNS only with ``--dns``).
    """
    config_dir = Path(cfg.path).parent if cfg.path and not cfg.path.startswith("<") else Path()
    psl = None
    if cfg.dmarc.enabled and cfg.dmarc.org_domain == "psl":
        psl = PublicSuffixList.load(cfg.dmarc.psl_file)
    signer = None
    if cfg.signing.enabled:
        owner = key_owner(cfg)
        warn = None if owner.configured else warn_unsafe_keys
        signer = Signer.from_config(cfg.signing, str(config_dir), identity=owner, warn=warn)
    sealer = None
    if cfg.arc.seal:
        seal_owner = key_owner(cfg)
        sealer = Sealer.from_config(
            cfg.arc,
            str(config_dir),
            require_safe=cfg.signing.require_safe_keys,
            identity=seal_owner,
            warn=None if seal_owner.configured else warn_unsafe_keys,
        )
    login_map = None
    if cfg.signing.sender_login_map:
        login_map = LoginMap.load(config_dir / cfg.signing.sender_login_map)
    resolver = resolver if resolver is not None else make_resolver(cfg)
    engine = Engine(
        config=cfg,
        resolver=resolver,
        signer=signer,
        psl=psl,
        login_map=login_map,
        sealer=sealer,
        authserv_id=cfg.milter.effective_authserv_id(),
        # key records are asked for afresh: the answer cache outlives a reload, and a record
        # published just before it must not wait for a cached NXDOMAIN to expire
        publication_resolver=resolver.uncached()
        if isinstance(resolver, DnspythonResolver)
        else None,
    )
    if check_published and engine.publication is not None and engine.active_signer is not None:
        engine.publication.check(engine.active_signer.keys)
    return engine


def load_engine(path: str, previous: Engine | None = None) -> Engine:
    """Read the config file and build its engine (the daemon's start and reload).

    A reload passes the running engine: when the ``[dns]`` settings are unchanged its
    resolver (its answer cache and failure memory) carries over to the new engine.
    """
    cfg = load(path)
    if previous is not None and previous.config.dns == cfg.dns:
        return build_engine(cfg, previous.resolver)
    return build_engine(cfg)


def start_recorder(cfg: Config, host: str) -> HistoryRecorder | None:
    """The daemon's history recorder for ``reports.history`` (None when it is "").

    Opens the store and applies its migrations; when that fails the trouble is logged and
    recording is off (None): the milter runs without it, mail first. Called in the process
    that records (each worker after its fork), after privileges were dropped, so that a new
    SQLite file belongs to the daemon's user.
    """
    dsn = cfg.reports.history
    if not dsn:
        return None
    try:
        store = open_store(dsn, host)
        version = store.migrate()
    except Exception as exc:  # noqa: BLE001  (ConfigError, StoreError, anything: mail first)
        log.error("history: recording is off: %s", exc)
        return None
    log.info("history: recording DMARC evaluations (schema version %d)", version)
    return HistoryRecorder(store, cfg.reports, host, dsn=dsn)


def start_failure_reporter(engine: Engine) -> FailureReporter | None:
    """The daemon's failure reporter (None when ``reports.failure_reports`` is off, or when
    its relay cannot be set up: logged, and mail flows without failure reports)."""
    cfg = engine.config
    if not cfg.reports.failure_reports:
        return None
    config_dir = Path(cfg.path).parent if cfg.path and not cfg.path.startswith("<") else Path()
    try:
        relay = Relay.from_config(cfg.reports, config_dir)
    except Exception as exc:  # noqa: BLE001  (ConfigError, an unreadable file: mail first)
        log.error("failure reports are off: %s", exc)
        return None
    log.info("failure reports: on (at most %d per domain per hour)", cfg.reports.failure_rate)
    return FailureReporter(cfg, relay, engine.resolver, engine.psl)


def with_observers(engine: Engine, observers: Sequence[MessageObserver]) -> Engine:
    """The same engine told about every decided message (its runtime state kept)."""
    new = dataclasses.replace(engine, observers=tuple(observers))
    object.__setattr__(new, "publication", engine.publication)
    return new
