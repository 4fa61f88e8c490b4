"""The one DNS seam: a :class:`Resolver` protocol and its two implementations.

* :class:`DnspythonResolver` (here): shared, cached (negative answers too) in one
  :class:`~authmilter.dnscache.AnswerCache` bounded by bytes, explicit timeouts, never a
  search list; nameservers given as ``host`` or ``host:port`` (``[v6]:port``). Its
  :class:`~authmilter.dnscache.FailureMemory` makes a dead name server cost one timeout,
  not one per lookup; the wire is :mod:`authmilter.dnswire`.
* :class:`~authmilter.staticresolver.StaticResolver`: answers from RFC 1035 zone files or
  from records given in code, for ``authmilter test --zone`` and unit tests; can be told
  to fail names on purpose.

Every implementation keeps three outcomes apart: an answer (possibly empty: NODATA), a name
that does not exist (NXDOMAIN), and :class:`~authmilter.errors.DnsTempError` (timeout,
SERVFAIL, refused): the last must never be read as "no record".
"""

from __future__ import annotations

import copy
import ipaddress
import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass
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
from authmilter.dnscache import (
    DEFAULT_CACHE_BYTES,
    MAX_NEGATIVE_TTL,
    MAX_TTL,
    NEGATIVE_TTL_WITHOUT_SOA,
    AnswerCache,
    FailureMemory,
)
from authmilter.dnswire import WireResolver, literal_name, short_error, system_nameservers
from authmilter.errors import DnsTempError

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
        servers = [parse_nameserver(s) for s in nameservers] or system_nameservers()
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
            raise DnsTempError(
                f"{name}/{rdtype}: no nameserver answered ({short_error(exc)})"
            ) from None
        except dns.exception.Timeout:
            if self.failures is not None:
                self.failures.timed_out(key, started)
            raise DnsTempError(f"{name}/{rdtype}: timed out after {lifetime:g}s") from None
        except dns.resolver.YXDOMAIN:
            raise DnsTempError(f"{name}/{rdtype}: name too long after DNAME") from None
        except dns.exception.DNSException as exc:
            raise DnsTempError(f"{name}/{rdtype}: {short_error(exc)}") from None
        self._heard()
        if answer.rrset is None:
            result = Answer(name, rdtype, ())
            self._keep(key, result, _negative_ttl(answer.response))
        else:
            result = Answer(name, rdtype, tuple(rdata_value(rdtype, r) for r in answer.rrset))
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


def _negative_ttl(response: dns.message.Message) -> float:
    """RFC 2308: the SOA's TTL capped by its MINIMUM field; the same in every dnspython."""
    for rrset in response.authority:
        if rrset.rdtype == dns.rdatatype.SOA and len(rrset):
            soa_minimum = int(rrset[0].minimum)  # type: ignore[attr-defined]
            return float(min(rrset.ttl, soa_minimum, MAX_NEGATIVE_TTL))
    return NEGATIVE_TTL_WITHOUT_SOA


def rdata_value(rdtype: str, rdata: object) -> RecordValue:
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
