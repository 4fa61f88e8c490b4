"""The DNS answer cache is bounded by bytes, holds each answer once, and keeps negative answers
small. Sizes and counts only: nothing here measures time."""

from __future__ import annotations

import gc
import threading
import time
import tracemalloc
import weakref
from collections.abc import Callable
from typing import Any

import dns.message
import dns.name
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rdtypes.ANY.TXT
import dns.resolver
import dns.rrset
import pytest

from authmilter.compose import build_engine
from authmilter.config import from_dict
from authmilter.dnscache import DEFAULT_CACHE_BYTES, ENTRY_OVERHEAD, AnswerCache, entry_size
from authmilter.dnsresolver import Answer, DnspythonResolver
from tests.support.dnsserver import DnsServer

BIG = 235 * 255  # 59925 bytes of TXT data in one hostile answer
SOAS = {
    zone: dns.rrset.from_text(zone, 3600, "IN", "SOA", "ns.example. h.example. 1 7200 3600 9 60")
    for zone in ("nx.example.", "empty.example.")
}


class Source:
    """Stands in for dns.resolver.Resolver; each answer is parsed from wire, as from a server.

    ``*.big.example`` has a 60 KB TXT record, ``*.empty.example`` nothing (NODATA, with an
    SOA), ``*.nx.example`` does not exist (with an SOA); ``responses`` holds weak references
    to every response message handed out.
    """

    def __init__(self) -> None:
        self.calls = 0
        self.responses: list[weakref.ref[dns.message.Message]] = []

    def resolve(self, query: dns.name.Name, rdtype: str, **_: Any) -> dns.resolver.Answer:
        qname = query.to_text()
        self.calls += 1
        name = dns.name.from_text(qname)
        response = dns.message.make_response(dns.message.make_query(name, rdtype))
        if qname.endswith(".big.example."):
            strings = [b"x" * 255] * 235  # 255-byte character-strings
            txt = dns.rdtypes.ANY.TXT.TXT(dns.rdataclass.IN, dns.rdatatype.TXT, strings)
            response.answer.append(dns.rrset.from_rdata(name, 300, txt))
        else:
            response.authority.append(SOAS[qname.partition(".")[2]])
        if qname.endswith(".nx.example."):
            response.set_rcode(dns.rcode.NXDOMAIN)
        wire = dns.message.from_wire(response.to_wire(max_size=65535))
        self.responses.append(weakref.ref(wire))
        if wire.rcode() == dns.rcode.NXDOMAIN:
            raise dns.resolver.NXDOMAIN(qnames=[name], responses={name: wire})
        return dns.resolver.Answer(name, dns.rdatatype.TXT, dns.rdataclass.IN, wire)


def resolver(cache_bytes: int, cache_size: int = 100_000) -> tuple[DnspythonResolver, Source]:
    r = DnspythonResolver(["127.0.0.1"], timeout=1, cache_size=cache_size, cache_bytes=cache_bytes)
    source = Source()
    r._resolver = source  # type: ignore[assignment]
    return r, source


def held_bytes(fn: Callable[[], object]) -> int:
    """Bytes still allocated after ``fn()`` returns (tracemalloc), garbage collected."""
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        fn()
        gc.collect()
        return tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()


def test_many_large_answers_stay_within_the_budget() -> None:
    budget = 4 * 1024 * 1024
    r, source = resolver(budget)
    assert r.cache is not None
    cache = r.cache

    def fill() -> None:
        for i in range(150):  # 9 MB of answers offered
            assert len(r.query(f"n{i}.big.example", "TXT").txt()[0]) == BIG
            assert cache.bytes <= budget

    held = held_bytes(fill)
    assert 40 <= len(cache) < 150  # many kept, the oldest evicted
    assert held <= budget  # real memory: the estimate is not below it
    assert cache.bytes >= 0.9 * budget
    assert source.calls == 150


def test_a_large_answer_is_sized_honestly() -> None:
    r, _ = resolver(DEFAULT_CACHE_BYTES)
    assert r.cache is not None
    held = held_bytes(lambda: r.query("n0.big.example", "TXT"))
    hit = r.cache.get(("n0.big.example", "TXT"), now=0)
    assert hit is not None and r.cache.bytes == entry_size(hit)
    assert BIG < held <= r.cache.bytes < BIG * 1.3  # payload plus overheads, not below the truth


def test_each_answer_is_held_once() -> None:
    real = DnspythonResolver(["127.0.0.1"])
    assert real._resolver.cache is None  # dnspython's own cache is not used
    r, source = resolver(DEFAULT_CACHE_BYTES)
    first = r.query("one.big.example", "TXT")
    gc.collect()
    assert all(ref() is None for ref in source.responses)  # no response (nor its wire) kept
    assert r.query("ONE.big.example.", "TXT") is first  # the cached object itself
    assert source.calls == 1


def test_negative_answers_are_cached_and_cost_little() -> None:
    r, source = resolver(DEFAULT_CACHE_BYTES)
    assert r.cache is not None
    cache = r.cache

    def fill() -> None:
        for i in range(500):
            assert not r.query(f"host{i:04d}.nx.example", "TXT").exists
            assert r.query(f"host{i:04d}.empty.example", "TXT").records == ()

    held = held_bytes(fill)
    assert len(cache) == 1000 and source.calls == 1000
    assert cache.bytes <= 1000 * (ENTRY_OVERHEAD + 32)
    assert held < 1000 * 1024  # well under 1 KB each, in real memory too
    r.query("host0000.nx.example", "TXT")
    r.query("host0000.empty.example", "TXT")
    assert source.calls == 1000  # both came from the cache
    # RFC 2308: min(SOA TTL 3600, MINIMUM 60)
    key = ("host0001.nx.example", "TXT")
    assert cache.get(key, time.time() + 30) is not None
    assert cache.get(key, time.time() + 61) is None


def test_an_answer_over_a_sixteenth_of_the_budget_is_not_cached() -> None:
    r, source = resolver(512 * 1024)  # largest entry: 32 KiB
    r.query("n0.big.example", "TXT")
    r.query("n0.big.example", "TXT")
    assert r.cache is not None and len(r.cache) == 0 and r.cache.bytes == 0
    assert source.calls == 2


@pytest.mark.parametrize(("size", "nbytes"), [(0, DEFAULT_CACHE_BYTES), (100, 0)])
def test_zero_turns_the_cache_off(size: int, nbytes: int) -> None:
    r, source = resolver(nbytes, cache_size=size)
    r.query("a.nx.example", "TXT")
    r.query("a.nx.example", "TXT")
    assert r.cache is None and source.calls == 2


def small(name: str, n: int = 100) -> Answer:
    return Answer(name, "TXT", ((b"v" * n,),))


def test_least_recently_used_goes_first_and_entries_are_capped() -> None:
    one = entry_size(small("n00.example"))
    cache = AnswerCache(max_bytes=20 * one, max_entries=1000)
    names = [f"n{i:02d}.example" for i in range(21)]
    for name in names[:20]:
        assert cache.put((name, "TXT"), small(name), expires=1e12)
    assert cache.get((names[0], "TXT"), now=0) is not None  # now the most recently used
    cache.put((names[20], "TXT"), small(names[20]), expires=1e12)
    gone = [n for n in names if cache.get((n, "TXT"), now=0) is None]
    assert gone == [names[1]] and cache.bytes == 20 * one
    capped = AnswerCache(max_bytes=10**9, max_entries=2)
    for name in names[:3]:
        capped.put((name, "TXT"), small(name), expires=1e12)
    assert len(capped) == 2 and capped.bytes == 2 * one


def test_replacing_and_expiring_keep_the_count_right() -> None:
    cache = AnswerCache(max_bytes=10**6, max_entries=100)
    key = ("a.example", "TXT")
    cache.put(key, small("a.example", 10), expires=100)
    cache.put(key, small("a.example", 200), expires=100)
    assert len(cache) == 1 and cache.bytes == entry_size(small("a.example", 200))
    assert cache.get(key, now=100) is None  # expired: dropped
    assert len(cache) == 0 and cache.bytes == 0


def test_threads_keep_the_accounting_exact() -> None:
    cache = AnswerCache(max_bytes=200 * entry_size(small("t0-0.example", 500)), max_entries=10**6)

    def work(t: int) -> None:
        for i in range(2000):
            name = f"t{t}-{i % 300}.example"
            if cache.get((name, "TXT"), now=0) is None:
                cache.put((name, "TXT"), small(name, 100 + i % 400), expires=1e12)

    threads = [threading.Thread(target=work, args=(t,)) for t in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    entries = list(cache._entries.values())
    assert cache.bytes == sum(size for _, size, _ in entries) <= cache.max_bytes


def test_real_server_answers_and_nxdomain_are_asked_once() -> None:
    with DnsServer('a.example. 300 IN TXT "v=spf1 -all"\n') as server:
        r = DnspythonResolver([server.address], timeout=2)
        for _ in range(3):
            assert r.query("a.example", "TXT").txt() == [b"v=spf1 -all"]
            assert not r.query("nx.example", "TXT").exists
            assert r.query("a.example", "MX").records == ()
        assert server.queries("a.example", "TXT") == 1
        assert server.queries("nx.example", "TXT") == 1
        assert server.queries("a.example", "MX") == 1


def test_config_sets_the_budget() -> None:
    cfg = from_dict({"dns": {"nameservers": ["127.0.0.1"], "cache_bytes": 1 << 20}})
    engine = build_engine(cfg)
    assert isinstance(engine.resolver, DnspythonResolver) and engine.resolver.cache is not None
    assert engine.resolver.cache.max_bytes == 1 << 20
    assert from_dict({}).dns.cache_bytes == DEFAULT_CACHE_BYTES
