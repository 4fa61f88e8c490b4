"""The one DNS seam: a :class:`Resolver` protocol and its two implementations.

* :class:`DnspythonResolver`: shared, cached (negative answers too) in one
  :class:`AnswerCache` bounded by bytes, explicit timeouts, never a search list;
  nameservers given as ``host`` or ``host:port`` (``[v6]:port``). Its
  :class:`FailureMemory` makes a dead name server cost one timeout, not one per lookup.
* :class:`StaticResolver`: answers from RFC 1035 zone files or from records given in code,
  for ``authmilter test --zone`` and unit tests; can be told to fail names on purpose.

Every implementation keeps three outcomes apart: an answer (possibly empty: NODATA), a name
that does not exist (NXDOMAIN), and :class:`~authmilter.errors.DnsTempError` (timeout,
SERVFAIL, refused): the last must never be read as "no record".
"""

from __future__ import annotations

import contextlib
import copy
import ipaddress
import logging
import math
import select
import socket
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.query
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.resolver
import dns.rrset
import dns.tokenizer
import dns.zone

from authmilter import metrics
from authmilter.errors import ConfigError, DnsTempError
from authmilter.files import read_text

log = logging.getLogger("authmilter")

# TXT: the character-strings; A/AAAA/PTR/CNAME/NS: text; MX: (preference, exchange)
RecordValue = tuple[bytes, ...] | str | tuple[int, str]

SUPPORTED_TYPES = ("A", "AAAA", "MX", "TXT", "PTR", "CNAME", "NS", "SPF")


@dataclass(frozen=True, slots=True)
class Answer:
    """Records of one type at one name; ``exists`` is False for NXDOMAIN."""

    name: str
    rdtype: str
    records: tuple[RecordValue, ...] = ()
    exists: bool = True

    def txt(self) -> list[bytes]:
        """TXT records, each with its character-strings joined (RFC 7208 3.3, RFC 6376 3.6.2.2)."""
        out = []
        for record in self.records:
            if isinstance(record, tuple) and all(isinstance(p, bytes) for p in record):
                out.append(b"".join(p for p in record if isinstance(p, bytes)))
        return out


def normalise_name(name: str | bytes) -> str:
    """Lower-case, no trailing dot, text form."""
    if isinstance(name, bytes):
        name = name.decode("ascii", "replace")
    return name.rstrip(".").lower()


class Resolver(Protocol):
    """What the checks need from DNS."""

    def query(self, name: str, rdtype: str, timeout: float | None = None) -> Answer:
        """Look ``name`` up; raise DnsTempError for timeout / SERVFAIL / refused."""
        ...


# --------------------------------------------------------------------------- dnspython


def parse_nameserver(spec: str) -> tuple[str, int]:
    """``host``, ``host:port``, ``v6``, ``[v6]`` or ``[v6]:port`` -> (ip, port)."""
    spec = spec.strip()
    host, port = spec, 53
    if spec.startswith("["):
        host, _, rest = spec[1:].partition("]")
        if rest:
            if not rest.startswith(":") or not rest[1:].isdigit():
                raise ValueError(f"bad nameserver {spec!r}")
            port = int(rest[1:])
    elif spec.count(":") == 1:
        host, _, p = spec.partition(":")
        if not p.isdigit():
            raise ValueError(f"bad port in nameserver {spec!r}")
        port = int(p)
    try:
        ipaddress.ip_address(host)
    except ValueError:
        raise ValueError(f"nameserver {spec!r} is not an IP address") from None
    if not 0 < port < 65536:
        raise ValueError(f"port out of range in nameserver {spec!r}")
    return host, port


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


RETRANSMIT_FIRST = 1.0  # seconds before the first retransmission (or the next server)
RETRANSMIT_MAX = 4.0  # the interval doubles up to this


def literal_name(name: str) -> dns.name.Name | None:
    """The absolute DNS name whose labels are exactly ``name``'s (None if it cannot be one).

    Names reach us built from what senders control (SPF macros expand local parts), so a
    backslash or a quote is a character of a label, never a zone-file escape, and non-ASCII
    labels are IDNA-encoded (raw UTF-8 when IDNA refuses them). Empty or over-long labels
    and names over 255 octets cannot be asked for.
    """
    labels = []
    for label in name.split("."):
        if label.isascii():
            raw = label.encode("ascii")
        else:
            try:
                raw = label.encode("idna")
            except UnicodeError:
                raw = label.encode("utf-8", "surrogateescape")
        labels.append(raw)
    try:
        return dns.name.Name([*labels, b""])
    except (dns.name.NameTooLong, dns.name.EmptyLabel, dns.name.LabelTooLong):
        return None


class DnspythonResolver:
    """The real resolver: one instance shared by every connection (each lookup has its own sockets).

    A lookup gets the whole ``timeout`` (``dns.timeout``): its query goes out over UDP from
    one socket, is retransmitted on that socket at 1, 3, 7... seconds (to the next name
    server in turn, when there are several), and the first answer to any of the copies is
    taken, so a server slower than the retransmission interval is still used. A truncated
    answer is asked again over TCP; SERVFAIL/REFUSED from every server is a temperror.
    dnspython parses and builds the messages.

    Answers are cached once, as finished :class:`Answer` objects in an :class:`AnswerCache`.
    ``cache_size`` (entries) or ``cache_bytes`` of 0 turns caching off. ``failure_ttl``:
    seconds a failure is remembered (:class:`FailureMemory`); 0 (the default here; the
    daemon's config default is ``DEFAULT_FAILURE_TTL``) turns that off.
    """

    def __init__(
        self,
        nameservers: Iterable[str] = (),
        timeout: float = 5.0,
        cache_size: int = 10000,
        cache_bytes: int = DEFAULT_CACHE_BYTES,
        failure_ttl: float = 0.0,
    ) -> None:
        servers = [parse_nameserver(s) for s in nameservers] or _system_nameservers()
        self._resolver = WireResolver(servers, self._heard)
        self.timeout = timeout
        self.cache = AnswerCache(cache_bytes, cache_size) if cache_size and cache_bytes else None
        self.failures = FailureMemory(failure_ttl, self._probe) if failure_ttl > 0 else None
        self._resolver = metrics.timed(self._resolver)  # each query counted and timed

    def query(self, name: str, rdtype: str, timeout: float | None = None) -> Answer:
        """One lookup with an explicit lifetime and no search list."""
        name = normalise_name(name)
        key = (name, rdtype)
        if self.cache is not None:
            hit = self.cache.get(key, time.time())
            metrics.dns_cache(hit is not None)
            if hit is not None:
                return hit
        if self.failures is not None:
            self.failures.check(key)
        qname = literal_name(name)
        if qname is None:  # a label no DNS name can have: nothing exists there
            return Answer(name, rdtype, (), exists=False)
        lifetime = self.timeout if timeout is None else max(0.05, min(timeout, self.timeout))
        started = time.monotonic()
        try:
            answer = self._resolver.resolve(
                qname, rdtype, lifetime=lifetime, search=False, raise_on_no_answer=False
            )
        except dns.resolver.NXDOMAIN as exc:
            self._heard()
            result = Answer(name, rdtype, (), exists=False)
            responses = exc.kwargs.get("responses") or {}
            ttl = min((_negative_ttl(r) for r in responses.values()), default=0)
            self._keep(key, result, ttl)
            return result
        except dns.resolver.NoNameservers as exc:  # SERVFAIL / REFUSED from every server
            self._heard()
            raise DnsTempError(f"{name}/{rdtype}: no nameserver answered ({_short(exc)})") from None
        except dns.exception.Timeout:
            if self.failures is not None:
                self.failures.timed_out(key, started)
            raise DnsTempError(f"{name}/{rdtype}: timed out after {lifetime:g}s") from None
        except dns.resolver.YXDOMAIN:
            raise DnsTempError(f"{name}/{rdtype}: name too long after DNAME") from None
        except dns.exception.DNSException as exc:
            raise DnsTempError(f"{name}/{rdtype}: {_short(exc)}") from None
        self._heard()
        if answer.rrset is None:
            result = Answer(name, rdtype, ())
            self._keep(key, result, _negative_ttl(answer.response))
        else:
            result = Answer(name, rdtype, tuple(_rdata_value(rdtype, r) for r in answer.rrset))
            self._keep(key, result, min(answer.expiration - time.time(), MAX_TTL))
        return result

    def _keep(self, key: tuple[str, str], answer: Answer, ttl: float) -> None:
        if self.cache is not None and ttl > 0:
            self.cache.put(key, answer, time.time() + ttl)

    def uncached(self) -> DnspythonResolver:
        """The same resolver (servers, failure memory) without the answer cache."""
        view = copy.copy(self)
        view.cache = None
        return view

    def _heard(self) -> None:
        if self.failures is not None:
            self.failures.heard()

    def _probe(self, timeout: float) -> bool:
        """Does any name server answer anything (the root's NS, which resolvers keep)?"""
        try:
            self._resolver.resolve(
                dns.name.root, "NS", lifetime=timeout, search=False, raise_on_no_answer=False
            )
        except dns.exception.Timeout:
            return False
        except dns.exception.DNSException:
            return True  # NXDOMAIN, SERVFAIL, REFUSED...: an answer all the same
        return True


class WireResolver:
    """dnspython's ``Resolver.resolve`` as DnspythonResolver uses it, over :class:`_Exchange`.

    Returns a ``dns.resolver.Answer`` and raises dnspython's exceptions (NXDOMAIN,
    NoNameservers, Timeout, YXDOMAIN), so DnspythonResolver reads its results as it read
    dnspython's resolver's. ``heard()`` is called for every answer received.
    """

    cache = None  # no second cache: DnspythonResolver keeps the finished answers

    def __init__(self, servers: Iterable[tuple[str, int]], heard: Callable[[], None]) -> None:
        self.servers = tuple((ipaddress.ip_address(ip).compressed, port) for ip, port in servers)
        self.heard = heard

    def resolve(
        self,
        qname: dns.name.Name,
        rdtype: str,
        *,
        lifetime: float,
        search: bool = False,
        raise_on_no_answer: bool = False,
    ) -> dns.resolver.Answer:
        """One lookup of an absolute name (no search list; NODATA is an empty Answer)."""
        name = qname
        qtype = dns.rdatatype.from_text(rdtype)
        with _Exchange(self.servers, name, qtype, lifetime, self.heard) as exchange:
            response = exchange.run()
        rcode = response.rcode()
        if rcode == dns.rcode.NXDOMAIN:
            raise dns.resolver.NXDOMAIN(qnames=[name], responses={name: response})  # type: ignore[no-untyped-call]
        if rcode == dns.rcode.YXDOMAIN:
            raise dns.resolver.YXDOMAIN
        if not isinstance(response, dns.message.QueryMessage):  # from_wire gives one for QUERY
            raise dns.resolver.NoNameservers("not an answer to a query")  # type: ignore[no-untyped-call]
        answer = dns.resolver.Answer(name, qtype, dns.rdataclass.IN, response)
        if raise_on_no_answer and answer.rrset is None:
            raise dns.resolver.NoAnswer(response=response)  # type: ignore[no-untyped-call]
        return answer


class _Exchange:
    """One lookup on the wire: UDP from one socket per address family, retransmitted on it.

    The query (no EDNS, as dnspython's resolver sends it: answers over 512 bytes come with
    TC and are asked again over TCP) goes to the servers in turn at 0, 1, 3, 7... seconds;
    an answer to any copy counts, so a late answer to the first is never lost. NOERROR,
    NXDOMAIN and YXDOMAIN end the lookup; any other rcode (SERVFAIL, REFUSED...) rules that
    server out, and all of them out is NoNameservers at once; nothing usable by the
    deadline: dns.exception.Timeout.
    """

    def __init__(
        self,
        servers: tuple[tuple[str, int], ...],
        qname: dns.name.Name,
        rdtype: dns.rdatatype.RdataType,
        lifetime: float,
        heard: Callable[[], None],
    ) -> None:
        self.servers = servers
        self.deadline = time.monotonic() + lifetime
        self.query = dns.message.make_query(qname, rdtype)
        self.wire = self.query.to_wire()
        self.heard = heard
        self.socks: dict[int, socket.socket] = {}
        self.failed: dict[tuple[str, int], str] = {}
        self.asked: set[tuple[str, int]] = set()
        self.turn = 0
        self.interval = min(RETRANSMIT_FIRST, lifetime / 2)
        self.next_send = time.monotonic()

    def __enter__(self) -> _Exchange:
        return self

    def __exit__(self, *exc: object) -> None:
        for sock in self.socks.values():
            sock.close()

    def run(self) -> dns.message.Message:
        while True:
            now = time.monotonic()
            if now >= self.deadline:
                raise dns.exception.Timeout(timeout=0.0)  # type: ignore[no-untyped-call]
            if now >= self.next_send:
                self._send_next(now)
            wait = min(self.next_send, self.deadline) - now
            for sock in _wait_readable(list(self.socks.values()), wait):
                got = _receive(sock, self.query, self.asked)
                if got is None:
                    continue
                self.heard()
                response = self._usable(*got)
                if response is not None:
                    return response

    def _send_next(self, now: float) -> None:
        pending = [s for s in self.servers if s not in self.failed]
        server = pending[self.turn % len(pending)]
        self.turn += 1
        family = socket.AF_INET6 if ":" in server[0] else socket.AF_INET
        sock = self.socks.get(family)
        if sock is None:
            sock = self.socks[family] = socket.socket(family, socket.SOCK_DGRAM)
            sock.setblocking(False)
        with contextlib.suppress(OSError):  # unreachable now: the others, or the deadline
            sock.sendto(self.wire, server)
        self.asked.add(server)
        self.next_send = now + self.interval
        self.interval = min(self.interval * 2, RETRANSMIT_MAX)

    def _usable(
        self, server: tuple[str, int], response: dns.message.Message
    ) -> dns.message.Message | None:
        """The response if it ends the lookup; None to go on waiting (or asking)."""
        if response.flags & dns.flags.TC:
            over_tcp = self._tcp(server)
            if over_tcp is None:
                return None
            response = over_tcp
        rcode = response.rcode()
        if rcode in (dns.rcode.NOERROR, dns.rcode.NXDOMAIN, dns.rcode.YXDOMAIN):
            return response
        self._fail(server, dns.rcode.to_text(rcode))
        self.next_send = time.monotonic()  # ask the next server now
        return None

    def _tcp(self, server: tuple[str, int]) -> dns.message.Message | None:
        """A truncated UDP answer: the same question over TCP to the same server."""
        remaining = self.deadline - time.monotonic()
        if remaining <= 0:
            raise dns.exception.Timeout(timeout=0.0)  # type: ignore[no-untyped-call]
        try:
            return dns.query.tcp(self.query, server[0], timeout=remaining, port=server[1])
        except dns.exception.Timeout:
            raise dns.exception.Timeout from None
        except (OSError, dns.exception.DNSException) as exc:
            self._fail(server, f"TCP: {_short(exc)}")
            return None

    def _fail(self, server: tuple[str, int], why: str) -> None:
        self.failed[server] = why
        if len(self.failed) == len(self.servers):
            servers = ", ".join(f"{ip}:{port} {text}" for (ip, port), text in self.failed.items())
            raise dns.resolver.NoNameservers(servers)  # type: ignore[no-untyped-call]


def _system_nameservers() -> list[tuple[str, int]]:
    """The name servers of /etc/resolv.conf (dnspython reads it)."""
    conf = dns.resolver.Resolver(configure=True)
    out = []
    for ns in conf.nameservers:
        if isinstance(ns, str):
            out.append((ns, conf.port))
        else:  # dnspython >= 2.4 may hold Nameserver objects
            out.append((str(ns.address), int(getattr(ns, "port", conf.port))))  # type: ignore[attr-defined]
    return out


def _wait_readable(socks: list[socket.socket], timeout: float) -> list[socket.socket]:
    if timeout <= 0:
        return []
    poller = select.poll()
    by_fd = {}
    for sock in socks:
        poller.register(sock.fileno(), select.POLLIN)
        by_fd[sock.fileno()] = sock
    return [by_fd[fd] for fd, _ in poller.poll(timeout * 1000)]


def _receive(
    sock: socket.socket, query: dns.message.Message, asked: set[tuple[str, int]]
) -> tuple[tuple[str, int], dns.message.Message] | None:
    """One datagram: an answer to ``query`` from a server it was sent to, or None."""
    try:
        wire, source = sock.recvfrom(65535)
    except OSError:  # nothing after all, or an ICMP error reported on the socket
        return None
    server = (ipaddress.ip_address(source[0]).compressed, int(source[1]))
    if server not in asked:
        return None
    try:
        response = dns.message.from_wire(wire, ignore_trailing=True)
    except dns.exception.DNSException:
        return None
    if not query.is_response(response):
        return None
    return server, response


def _negative_ttl(response: dns.message.Message) -> float:
    """RFC 2308: the SOA's TTL capped by its MINIMUM field; the same in every dnspython."""
    for rrset in response.authority:
        if rrset.rdtype == dns.rdatatype.SOA and len(rrset):
            soa_minimum = int(rrset[0].minimum)  # type: ignore[attr-defined]
            return float(min(rrset.ttl, soa_minimum, MAX_NEGATIVE_TTL))
    return NEGATIVE_TTL_WITHOUT_SOA


def _short(exc: Exception) -> str:
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return text[:200]


def _rdata_value(rdtype: str, rdata: object) -> RecordValue:
    if rdtype in ("TXT", "SPF"):
        return tuple(rdata.strings)  # type: ignore[attr-defined]
    if rdtype in ("A", "AAAA"):
        return str(rdata.address)  # type: ignore[attr-defined]
    if rdtype == "MX":
        return (
            int(rdata.preference),  # type: ignore[attr-defined]
            normalise_name(rdata.exchange.to_text()),  # type: ignore[attr-defined]
        )
    return normalise_name(rdata.target.to_text())  # type: ignore[attr-defined]  # PTR CNAME NS


# --------------------------------------------------------------------------- static


class StaticResolver:
    """Answers from records held in memory; read-only after construction, so thread-safe.

    Names never seen are NXDOMAIN, and so are names outside every loaded zone. A name that
    only has records below it (``_domainkey.example.com``) exists with no records (NODATA).
    ``temperror`` names (and everything below them when given as ``*.name``) raise
    DnsTempError, to simulate a timeout.
    """

    def __init__(
        self,
        records: Mapping[tuple[str, str], Iterable[RecordValue]] | None = None,
        temperror: Iterable[str] = (),
    ) -> None:
        self._records: dict[tuple[str, str], tuple[RecordValue, ...]] = {}
        self._names: set[str] = set()
        self._temperror = {normalise_name(n) for n in temperror}
        self.queries: list[tuple[str, str]] = []  # for tests: what was asked, in order
        self._lock = threading.Lock()
        for (name, rdtype), values in (records or {}).items():
            self.add(name, rdtype, *values)

    def add(self, name: str, rdtype: str, *values: RecordValue) -> None:
        """Add records (TXT values may be given as str or bytes for convenience)."""
        key = (normalise_name(name), rdtype.upper())
        fixed = tuple(_coerce(key[1], v) for v in values)
        self._records[key] = self._records.get(key, ()) + fixed
        labels = key[0].split(".")
        for i in range(len(labels)):
            self._names.add(".".join(labels[i:]))

    def add_zone_file(self, path: str | Path) -> None:
        """Load an RFC 1035 master file ($ORIGIN, $TTL, relative names, multi-string TXT).

        A file with an SOA is read as that zone (names outside it are ignored, as BIND
        does); a file without one may hold names of any zone. Call once per file. Errors
        name the file and line, never the line's content.
        """
        path = Path(path)
        text = read_text(path, "zone file")
        try:
            zone = dns.zone.from_text(
                text,
                origin=_zone_origin(text, str(path)),
                relativize=False,
                check_origin=False,
                filename=str(path),
            )
        except _ZoneFileError as exc:
            raise ConfigError(f"{path}:{exc.line}: bad zone file: {exc.problem}") from None
        except (dns.exception.DNSException, ValueError) as exc:  # dnspython: "FILE:LINE: problem"
            number, _, problem = str(exc).removeprefix(f"{path}:").partition(": ")
            where = f"{path}:{number}" if number.isdigit() else str(path)
            raise ConfigError(f"{where}: bad zone file: {_quoting_nothing(problem)}") from None
        for owner, node in zone.nodes.items():
            for rdataset in node.rdatasets:
                if rdataset.rdclass != dns.rdataclass.IN:
                    continue
                rdtype = dns.rdatatype.to_text(rdataset.rdtype)
                if rdtype not in SUPPORTED_TYPES:
                    continue
                self.add(owner.to_text(), rdtype, *(_rdata_value(rdtype, r) for r in rdataset))

    def query(self, name: str, rdtype: str, timeout: float | None = None) -> Answer:
        """Answer from memory, following CNAMEs (at most 8)."""
        name, rdtype = normalise_name(name), rdtype.upper()
        with self._lock:
            self.queries.append((name, rdtype))
        for _ in range(8):
            self._check_temperror(name, rdtype)
            values = self._records.get((name, rdtype))
            if values is not None:
                return Answer(name, rdtype, values)
            cname = self._records.get((name, "CNAME"))
            if cname and rdtype != "CNAME":
                name = str(cname[0])
                continue
            return Answer(name, rdtype, (), exists=name in self._names)
        raise DnsTempError(f"{name}/{rdtype}: CNAME chain too long")

    def _check_temperror(self, name: str, rdtype: str) -> None:
        if name in self._temperror:
            raise DnsTempError(f"{name}/{rdtype}: timed out (simulated)")
        labels = name.split(".")
        for i in range(1, len(labels)):
            if "*." + ".".join(labels[i:]) in self._temperror:
                raise DnsTempError(f"{name}/{rdtype}: timed out (simulated)")


class _ZoneFileError(Exception):
    """A problem found at a line of a zone file, in words that quote none of it."""

    def __init__(self, line: int, problem: str) -> None:
        super().__init__(line, problem)
        self.line = line
        self.problem = problem


def _zone_origin(text: str, filename: str) -> dns.name.Name:
    """The owner of the file's SOA record (its zone's origin), or the root when it has none."""
    tok = dns.tokenizer.Tokenizer(text, filename)
    origin: dns.name.Name | None = None  # the $ORIGIN in force
    owner: dns.name.Name | None = None  # the last owner name (a line may leave it out)
    soa_lines: dict[dns.name.Name, int] = {}  # each SOA owner and its first line
    line = 1
    try:
        while not (first := tok.get(want_leading=True)).is_eof():
            if first.is_eol():
                continue
            line = tok.line_number
            words = []
            while not (token := tok.get()).is_eol_or_eof():
                words.append(token.value)
            if first.value.upper() == "$ORIGIN" and words:
                origin = dns.name.from_text(words[0], origin)
                continue
            if first.value.startswith("$"):
                continue
            if not first.is_whitespace():
                owner = origin if first.value == "@" else dns.name.from_text(first.value, origin)
            rdtype = next((w for w in words if not _is_ttl_or_class(w)), "")
            if rdtype.upper() == "SOA":
                if owner is None or not owner.is_absolute():
                    raise _ZoneFileError(line, "the SOA owner is relative and no $ORIGIN is set")
                soa_lines.setdefault(owner, line)
    except dns.exception.DNSException as exc:
        raise _ZoneFileError(line, _quoting_nothing(str(exc))) from None
    if len(soa_lines) > 1:
        first_line, other = sorted(soa_lines.values())[:2]
        raise _ZoneFileError(
            other, f"an SOA of another zone than line {first_line}'s (give one zone per file)"
        )
    return next(iter(soa_lines), dns.name.root)


# dnspython's zone-file messages that quote nothing from the file (any other is replaced)
_ZONE_MESSAGES = frozenset(
    {
        "A DNS label is > 63 octets long.",
        "A DNS label is empty.",
        "A DNS name is > 255 octets long.",
        "DNS TTL value is not well-formed.",
        "Missing default TTL value",
        "RR class is not zone's class",
        "Text input ended unexpectedly.",
        "Text input is malformed.",
        "bad $TTL",
        "expecting a string",
        "expecting an identifier",
        "expecting an integer",
        "newline in quoted string",
        "string too long",
        "unbalanced parentheses",
    }
)


def _quoting_nothing(problem: str) -> str:
    """dnspython's problem when it quotes nothing from the file, else a summary of it."""
    if problem.startswith("unknown rdatatype"):
        return "unknown record type"
    return problem if problem in _ZONE_MESSAGES else "malformed record"


def _is_ttl_or_class(word: str) -> bool:
    upper = word.upper()
    return word[:1].isdigit() or upper in ("IN", "CH", "HS", "CS") or upper.startswith("CLASS")


def _coerce(rdtype: str, value: RecordValue | str | bytes) -> RecordValue:
    if rdtype in ("TXT", "SPF"):
        if isinstance(value, str):
            value = value.encode()
        if isinstance(value, bytes):
            # split like a zone file would: 255-byte character-strings
            return tuple(value[i : i + 255] for i in range(0, len(value), 255)) or (b"",)
        return value
    if rdtype in ("A", "AAAA", "PTR", "CNAME", "NS") and isinstance(value, str):
        return value if rdtype in ("A", "AAAA") else normalise_name(value)
    if rdtype == "MX" and isinstance(value, tuple) and len(value) == 2:
        pref, host = value
        return (int(pref), normalise_name(str(host)))  # type: ignore[call-overload]
    raise TypeError(f"bad {rdtype} value {value!r}")
