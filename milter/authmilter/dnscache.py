"""What the real resolver remembers: finished answers (bounded by bytes) and failures.

:class:`AnswerCache` keeps answers by TTL; :class:`FailureMemory` makes a dead name server
cost one timeout per failure window instead of one per lookup.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import TYPE_CHECKING

from authmilter.errors import DnsTempError

if TYPE_CHECKING:
    from authmilter.dnsresolver import Answer

log = logging.getLogger("authmilter")


DEFAULT_CACHE_BYTES = 64 * 1024 * 1024  # per process ([dns] cache_bytes)
MAX_TTL = 86400  # cap on how long any answer is kept, seconds
MAX_NEGATIVE_TTL = 3600  # NXDOMAIN / NODATA (RFC 2308 SOA minimum, capped)
NEGATIVE_TTL_WITHOUT_SOA = 300  # a negative answer without an SOA to say how long
ENTRY_OVERHEAD = 512  # estimated bytes of one entry beyond its records: key, Answer, dict slot
OBJECT_OVERHEAD = 64  # estimated bytes of one str/bytes/tuple object and its reference
MAX_ENTRY_FRACTION = 16  # an answer larger than budget / this is not cached


def entry_size(answer: Answer) -> int:
    """Estimated bytes an answer costs in the cache: payload bytes plus object overheads."""
    size = ENTRY_OVERHEAD + len(answer.name)
    for record in answer.records:
        size += OBJECT_OVERHEAD
        parts: tuple[object, ...] = (record,) if isinstance(record, str) else record
        for part in parts:
            if isinstance(part, bytes | str):
                size += OBJECT_OVERHEAD + len(part)
    return size


class AnswerCache:
    """Answers by (name, type) until their expiry, bounded by estimated bytes and by entries.

    Least recently used entries go first when either bound is passed; an answer larger than
    ``max_bytes // MAX_ENTRY_FRACTION`` is never cached. Thread-safe.
    """

    def __init__(self, max_bytes: int, max_entries: int) -> None:
        self.max_bytes = max_bytes
        self.max_entries = max_entries
        self.max_entry_bytes = max_bytes // MAX_ENTRY_FRACTION
        self.bytes = 0  # estimated bytes held now (entry_size of every entry)
        self._entries: OrderedDict[tuple[str, str], tuple[float, int, Answer]] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: tuple[str, str], now: float) -> Answer | None:
        """The cached answer, or None when absent or expired."""
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                return None
            if entry[0] <= now:
                del self._entries[key]
                self.bytes -= entry[1]
                return None
            self._entries.move_to_end(key)
            return entry[2]

    def put(self, key: tuple[str, str], answer: Answer, expires: float) -> bool:
        """Keep ``answer`` until ``expires``; False when it is too large to cache."""
        size = entry_size(answer)
        if size > self.max_entry_bytes:
            return False
        with self._lock:
            old = self._entries.pop(key, None)
            if old is not None:
                self.bytes -= old[1]
            self._entries[key] = (expires, size, answer)
            self.bytes += size
            while self.bytes > self.max_bytes or len(self._entries) > self.max_entries:
                _, (_, evicted, _) = self._entries.popitem(last=False)
                self.bytes -= evicted
        return True


DEFAULT_FAILURE_TTL = 10.0  # [dns] failure_ttl, seconds
PROBE_TIMEOUT = 1.0  # seconds a liveness probe waits for any answer
REPROBE_INTERVAL = 1.0  # seconds between two probes while the servers are down
MAX_REMEMBERED_FAILURES = 4096  # (name, type) pairs that timed out


class FailureMemory:
    """Recent DNS failures, so that the next lookups fail at once instead of waiting again.

    Two things are remembered for ``ttl`` seconds:

    * a (name, type) whose lookup timed out: asking again now would time out again;
    * that the name servers answer nothing at all. A timeout alone does not say so (one
      domain's servers may be slow while the resolver is fine), so when no answer of any
      kind has come from the servers since the timed-out query was sent, one liveness
      probe (``probe(timeout) -> bool``, any answer counts) decides: no answer, and every
      lookup fails at once (DnsTempError) for ``ttl`` seconds; lookups made while the probe
      runs wait for its verdict (at most ``probe_timeout``). Meanwhile the probe is repeated
      every second: the first answer heard ends it (and forgets the names that timed out
      while the servers were down), so a server that comes back is used within a second.

    A failing lookup is a temperror, and a verdict that depends on it a 451: remembering a
    failure changes how fast that answer comes, never what it is.
    """

    def __init__(
        self, ttl: float, probe: Callable[[float], bool], probe_timeout: float = PROBE_TIMEOUT
    ) -> None:
        self.ttl = ttl
        self.probe_timeout = probe_timeout
        self.fast_failures = 0  # lookups answered from memory (for tests and the bench)
        self.probes = 0
        self._probe = probe
        self._names: OrderedDict[tuple[str, str], float] = OrderedDict()
        self._heard = -math.inf  # monotonic time of the last answer from a name server
        self._down_until = 0.0
        self._probing: threading.Event | None = None
        self._lock = threading.Lock()

    def heard(self) -> None:
        """A name server answered (anything, even SERVFAIL): the servers are alive."""
        with self._lock:
            self._alive()

    def _alive(self) -> None:  # with the lock held
        self._heard = time.monotonic()
        if self._down_until:
            self._down_until = 0.0
            self._names.clear()  # they timed out because nothing answered at all
            log.info("DNS: name servers answer again")

    def check(self, key: tuple[str, str]) -> None:
        """Raise DnsTempError at once when ``key`` or the servers are known to be failing."""
        with self._lock:
            probing = self._probing
        if probing is not None:
            probing.wait(self.probe_timeout + 1.0)
        now = time.monotonic()
        with self._lock:
            if now < self._down_until:
                self.fast_failures += 1
                raise DnsTempError(
                    f"{key[0]}/{key[1]}: name servers not answering"
                    f" (not asked again for {self._down_until - now:.0f}s)"
                )
            expires = self._names.get(key)
            if expires is not None:
                if now < expires:
                    self.fast_failures += 1
                    raise DnsTempError(
                        f"{key[0]}/{key[1]}: timed out {self.ttl - (expires - now):.0f}s ago"
                        " (not asked again yet)"
                    )
                del self._names[key]

    def timed_out(self, key: tuple[str, str], started: float) -> None:
        """The lookup of ``key``, sent at monotonic time ``started``, got no answer in time."""
        now = time.monotonic()
        with self._lock:
            self._names[key] = now + self.ttl
            self._names.move_to_end(key)
            while len(self._names) > MAX_REMEMBERED_FAILURES:
                self._names.popitem(last=False)
            if self._heard >= started or self._probing is not None or now < self._down_until:
                return
            event = self._probing = threading.Event()
        probe = threading.Thread(target=self._run_probe, args=(event,), name="dns-probe")
        probe.daemon = True
        probe.start()

    def _run_probe(self, event: threading.Event) -> None:
        alive = self._probe_once()
        with self._lock:
            if alive:
                self._alive()
            else:
                self._down_until = time.monotonic() + self.ttl
                log.warning(
                    "DNS: no name server answers; lookups fail at once (temperror) for up"
                    " to %gs, probing every %gs",
                    self.ttl,
                    REPROBE_INTERVAL,
                )
            self._probing = None
        event.set()
        # while down: probe again every second, so that recovery is noticed at once
        while not alive:
            time.sleep(REPROBE_INTERVAL)
            with self._lock:
                if not self._down_until or time.monotonic() >= self._down_until:
                    return  # heard meanwhile, or the window is over: lookups decide again
            alive = self._probe_once()
            if alive:
                with self._lock:
                    self._alive()

    def _probe_once(self) -> bool:
        try:
            alive = self._probe(self.probe_timeout)
        except Exception:  # a broken probe must not leave lookups waiting
            log.exception("DNS liveness probe failed")
            alive = False
        with self._lock:
            self.probes += 1
        return alive
