"""Safe key rotation: a key signs only while its DNS record is published and matches it.

With ``signing.require_published_key`` (the default) the engine owns one
:class:`KeyPublication`: the runtime state "which keys may sign now", the one mutable part
of an otherwise immutable engine. Each key is judged by :func:`~.dnscheck.check_key`,
exactly as a verifier would judge its record:

* ``ok``: the key signs;
* ``missing`` (no record, or several) or ``mismatch`` (another key, revoked, a record a
  verifier refuses): the key does not sign, so a new selector waits for its record and an
  old one stops when its record is removed; with two selectors for one domain, both sign
  while both are published;
* ``temperror``: the last known state is kept. With no known state yet (DNS failing at
  start) the key signs, since the administrator configured it, and a warning is logged;
  after a temperror the key is looked up again within :data:`TEMPERROR_RETRY` seconds.

When: every key with a fixed domain is checked when the engine is built (start and each
reload, :func:`authmilter.compose.build_engine`), then again when it is about to sign and
its last check is older than ``signing.publish_check_interval``. The first message after
the interval looks the key up (through the shared, cached resolver); messages signed
meanwhile by other connections use the last known state, never waiting for it. Keys whose
domain is ``%`` (the From domain) are checked per domain the first time they would sign
for it. There is no thread: the check runs in whichever process signs, so each of
``milter.workers`` keeps its own state, ``authmilter test`` behaves as the daemon does, and
the engine a reload replaces simply stops being asked.

Every change of state is logged (record names through :func:`~authmilter.logline.safe`).
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from authmilter.dnsresolver import Resolver
from authmilter.logline import safe
from authmilter.signing.dnscheck import KeyCheck, KeyStatus, check_key
from authmilter.signing.signer import Selection, SigningKey

log = logging.getLogger("authmilter")

TEMPERROR_RETRY = 60.0  # seconds before a key whose lookup failed is looked up again (at most)


@dataclass(slots=True)
class _State:
    signs: bool  # may sign now
    status: KeyStatus  # what the last lookup said
    due: float  # clock time of the next lookup


class KeyPublication:
    """Which keys may sign now, by their published DNS records; thread-safe."""

    def __init__(
        self,
        resolver: Resolver,
        interval: float,
        *,
        clock: Callable[[], float] = time.monotonic,
        timeout: float | None = None,
    ) -> None:
        self.interval = interval
        self._resolver = resolver
        self._clock = clock
        self._timeout = timeout
        self._lock = threading.Lock()
        self._states: dict[tuple[str, str], _State] = {}  # (key name, d=) -> state

    # ------------------------------------------------------------------ queries

    def check(self, keys: Iterable[SigningKey]) -> list[KeyCheck]:
        """Look every key with a fixed domain up now (start, reload) and log its state."""
        return [self._refresh(key, key.domain) for key in keys if key.domain != "%"]

    def allowed(
        self, selections: Sequence[Selection]
    ) -> tuple[frozenset[tuple[str, str]], tuple[Selection, ...]]:
        """The (``d=``, ``s=``) pairs of ``selections`` that may sign, and those withheld.

        Looks a key up first when its last check is older than the interval (or when it
        has never been checked for this domain).
        """
        allowed: set[tuple[str, str]] = set()
        withheld: list[Selection] = []
        for sel in selections:
            if self.signs(sel.key, sel.domain):
                allowed.add((sel.domain, sel.key.selector.lower()))
            else:
                withheld.append(sel)
        return frozenset(allowed), tuple(withheld)

    def signs(self, key: SigningKey, domain: str) -> bool:
        """Whether ``key`` may sign for ``domain`` now (looking it up when due)."""
        slot = (key.name, domain)
        with self._lock:
            state = self._states.get(slot)
            if state is not None:
                now = self._clock()
                if state.due > now:
                    return state.signs
                # ours to look up; meanwhile every other message uses the last known state
                state.due = now + self.interval
        self._refresh(key, domain)
        with self._lock:
            return self._states[slot].signs

    def status(self, key: SigningKey, domain: str | None = None) -> KeyStatus | None:
        """What the last lookup of ``key`` said (None: never looked up)."""
        with self._lock:
            state = self._states.get((key.name, domain or key.domain))
            return state.status if state is not None else None

    # ------------------------------------------------------------------ lookups

    def _refresh(self, key: SigningKey, domain: str) -> KeyCheck:
        target = key if key.domain == domain else dataclasses.replace(key, domain=domain)
        check = check_key(target, self._resolver, self._timeout)
        slot = (key.name, domain)
        now = self._clock()
        with self._lock:
            old = self._states.get(slot)
            if check.status == KeyStatus.TEMPERROR:
                signs = old.signs if old is not None else True
                due = now + min(self.interval, TEMPERROR_RETRY)
            else:
                signs = check.status == KeyStatus.OK
                due = now + self.interval
            self._states[slot] = _State(signs, check.status, due)
        _log_change(check, old, signs)
        return check


def _log_change(check: KeyCheck, old: _State | None, signs: bool) -> None:
    """One line when a key's state is first known or changes (nothing when it stays)."""
    name = f"signing key {safe(check.record_name)}"
    detail = f" detail={safe(check.detail)}" if check.detail else ""
    if check.status == KeyStatus.TEMPERROR:
        if old is None:
            log.warning(
                "%s: DNS lookup failed (temperror): signing with it until a lookup says "
                "whether it is published%s",
                name,
                detail,
            )
        elif old.status != KeyStatus.TEMPERROR:
            state = "signing" if signs else "not signing"
            log.warning(
                "%s: DNS lookup failed (temperror): keeping the last known state (%s)%s",
                name,
                state,
                detail,
            )
        return
    if old is not None and old.signs == signs and old.status == check.status:
        return
    if signs:
        log.info("%s: published and matching: signing with it", name)
        return
    if old is not None and old.signs:
        log.warning(
            "%s: not published (%s): no longer signing with it (signing.require_published_key)%s",
            name,
            check.status.value,
            detail,
        )
        return
    log.warning(
        "%s: not published (%s): not signing with it until its record is published and "
        "matches the private key (signing.require_published_key)%s",
        name,
        check.status.value,
        detail,
    )
