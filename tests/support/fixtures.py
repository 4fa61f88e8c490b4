"""pytest fixtures for integration and end-to-end tests (``pytest_plugins`` loads this).

* ``dns_server``: a started :class:`DnsServer` (empty; add zone text with ``.add_zone``).
* ``smtp_sink``: a started :class:`SmtpSink`.
* ``authmilter_daemon``: factory ``(config: dict, shared: bool = False) -> AuthmilterDaemon``
  (started; ``shared=True`` puts the socket where Postfix's unprivileged smtpd can reach it).
* ``postfix``: factory ``(milter=..., sink_port=..., **kwargs) -> PostfixInstance`` (started);
  skips unless root with Postfix installed, but fails instead when ``CI=true``.
* ``shared_dir``: a fresh 0755 directory under /tmp, removed afterwards.
* every test: the ``authmilter`` logger as it was before (``authmilter test`` run in-process
  silences it for the rest of its process).
"""

from __future__ import annotations

import logging
import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.daemon import AuthmilterDaemon
from tests.support.dnsserver import DnsServer
from tests.support.postfix import PostfixInstance, make_shared_dir, postfix_available
from tests.support.smtpsink import SmtpSink


def in_ci() -> bool:
    """True when the environment says this is CI (then missing tools are failures)."""
    return os.environ.get("CI", "").lower() in ("true", "1", "yes")


def require_postfix() -> None:
    """Skip (or, in CI, fail) when a private Postfix cannot run here."""
    reason = postfix_available()
    if reason is None:
        return
    if in_ci():
        pytest.fail(f"e2e tests need Postfix as root in CI: {reason}")
    pytest.skip(reason)


@pytest.fixture(autouse=True)
def _authmilter_logger() -> Iterator[None]:
    """Restore the package logger: ``cli.main(["test", ...])`` stops its propagation."""
    logger = logging.getLogger("authmilter")
    handlers, propagate, level = logger.handlers[:], logger.propagate, logger.level
    yield
    logger.handlers[:] = handlers
    logger.propagate = propagate
    logger.setLevel(level)


@pytest.fixture
def dns_server() -> Iterator[DnsServer]:
    """A loopback DNS server for this test."""
    with DnsServer() as server:
        yield server


@pytest.fixture
def smtp_sink() -> Iterator[SmtpSink]:
    """A loopback SMTP sink for this test."""
    with SmtpSink() as sink:
        yield sink


@pytest.fixture
def shared_dir() -> Iterator[Path]:
    """A directory the ``postfix`` user can traverse (pytest's tmp_path is 0700)."""
    path = make_shared_dir()
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def authmilter_daemon(
    tmp_path: Path, request: pytest.FixtureRequest
) -> Iterator[Callable[..., AuthmilterDaemon]]:
    """Factory for started daemons; every one is stopped at teardown."""
    started: list[AuthmilterDaemon] = []
    counter = iter(range(1000))

    def make(
        config: dict[str, Any] | None = None, shared: bool = False, **kwargs: Any
    ) -> AuthmilterDaemon:
        base = request.getfixturevalue("shared_dir") if shared else tmp_path
        directory = Path(base) / f"daemon{next(counter)}"
        directory.mkdir()
        directory.chmod(0o755)
        cfg = dict(config or {})
        if shared:  # Postfix's smtpd runs as "postfix": let it reach the socket
            cfg.setdefault("milter", {})
            cfg["milter"] = {"umask": "0000", **cfg["milter"]}
        daemon = AuthmilterDaemon(directory, cfg, **kwargs)
        started.append(daemon)
        return daemon.start()

    yield make
    for daemon in started:
        daemon.stop()


@pytest.fixture
def postfix(shared_dir: Path) -> Iterator[Callable[..., PostfixInstance]]:
    """Factory for started private Postfix instances; all are stopped at teardown."""
    require_postfix()
    started: list[PostfixInstance] = []

    def make(milter: str | None, sink_port: int, **kwargs: Any) -> PostfixInstance:
        instance = PostfixInstance(shared_dir, milter=milter, sink_port=sink_port, **kwargs)
        started.append(instance)
        return instance.start()

    yield make
    for instance in started:
        instance.stop()
