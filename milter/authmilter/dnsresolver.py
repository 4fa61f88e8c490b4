"""The one DNS seam: a :class:`Resolver` protocol and its two implementations.

* :class:`DnspythonResolver`: shared, cached (negative answers too), explicit timeouts,
  never a search list; nameservers given as ``host`` or ``host:port`` (``[v6]:port``).
* :class:`StaticResolver`: answers from RFC 1035 zone files or from records given in code,
  for ``authmilter test --zone`` and unit tests; can be told to fail names on purpose.

Every implementation keeps three outcomes apart: an answer (possibly empty: NODATA), a name
that does not exist (NXDOMAIN), and :class:`~authmilter.errors.DnsTempError` (timeout,
SERVFAIL, refused): the last must never be read as "no record".
"""

from __future__ import annotations

import ipaddress
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import dns.exception
import dns.name
import dns.rdataclass
import dns.rdatatype
import dns.resolver
import dns.zone

from authmilter.errors import ConfigError, DnsTempError
from authmilter.files import read_text

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


class DnspythonResolver:
    """The real resolver: one instance shared by every connection (dnspython is thread-safe)."""

    def __init__(
        self,
        nameservers: Iterable[str] = (),
        timeout: float = 5.0,
        cache_size: int = 10000,
    ) -> None:
        servers = [parse_nameserver(s) for s in nameservers]
        if servers:
            self._resolver = dns.resolver.Resolver(configure=False)
            self._resolver.nameservers = [ip for ip, _ in servers]
            ports = {port for _, port in servers}
            if len(ports) == 1:
                self._resolver.port = ports.pop()
            else:
                self._resolver.nameserver_ports = dict(servers)
        else:
            self._resolver = dns.resolver.Resolver(configure=True)
        self._resolver.search = []
        self._resolver.use_search_by_default = False
        self._resolver.timeout = min(timeout, 2.0)  # per attempt; lifetime bounds the total
        self._resolver.lifetime = timeout
        if cache_size > 0:
            self._resolver.cache = dns.resolver.LRUCache(cache_size)
        self.timeout = timeout
        # In front of dnspython's cache (which still holds NXDOMAIN): finished Answers by
        # (name, type) until their TTL runs out; a hit costs a dict lookup, not a Resolution.
        self._answers: dict[tuple[str, str], tuple[float, Answer]] = {}
        self._answers_max = cache_size

    def query(self, name: str, rdtype: str, timeout: float | None = None) -> Answer:
        """One lookup with an explicit lifetime and no search list."""
        name = normalise_name(name)
        key = (name, rdtype)
        hit = self._answers.get(key)
        if hit is not None and hit[0] > time.time():
            return hit[1]
        lifetime = self.timeout if timeout is None else max(0.05, min(timeout, self.timeout))
        try:
            answer = self._resolver.resolve(
                name + ".", rdtype, lifetime=lifetime, search=False, raise_on_no_answer=False
            )
        except dns.resolver.NXDOMAIN:
            return Answer(name, rdtype, (), exists=False)
        except dns.resolver.NoNameservers as exc:  # SERVFAIL / REFUSED from every server
            raise DnsTempError(f"{name}/{rdtype}: no nameserver answered ({_short(exc)})") from None
        except dns.exception.Timeout:
            raise DnsTempError(f"{name}/{rdtype}: timed out after {lifetime:g}s") from None
        except dns.resolver.YXDOMAIN:
            raise DnsTempError(f"{name}/{rdtype}: name too long after DNAME") from None
        except dns.exception.DNSException as exc:
            raise DnsTempError(f"{name}/{rdtype}: {_short(exc)}") from None
        if answer.rrset is None:
            result = Answer(name, rdtype, ())
        else:
            result = Answer(name, rdtype, tuple(_rdata_value(rdtype, r) for r in answer.rrset))
        if self._answers_max > 0:
            if len(self._answers) >= self._answers_max:
                self._answers.clear()  # crude but bounded; dnspython's LRU still has them
            self._answers[key] = (float(answer.expiration), result)
        return result


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
        """Load an RFC 1035 master file ($ORIGIN, $TTL, relative names, multi-string TXT)."""
        path = Path(path)
        text = read_text(path, "zone file")
        try:
            zone = dns.zone.from_text(
                text,
                origin=dns.name.root,
                relativize=False,
                check_origin=False,
                filename=str(path),
            )
        except (dns.exception.DNSException, ValueError) as exc:
            raise ConfigError(f"{path}: bad zone file: {exc}") from None
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
