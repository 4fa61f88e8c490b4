"""iprev (RFC 8601 sections 2.7.3 and 3): forward-confirmed reverse DNS over a StaticResolver."""

from __future__ import annotations

import ipaddress

import pytest

from authmilter.checks.iprev import MAX_NAMES, check_iprev, host_name
from authmilter.results import Result
from authmilter.staticresolver import StaticResolver

V4 = ipaddress.ip_address("192.0.2.25")
V6 = ipaddress.ip_address("2001:db8::25")
PTR4 = "25.2.0.192.in-addr.arpa"
PTR6 = V6.reverse_pointer


def zone(*records: tuple[str, str, str], temperror: tuple[str, ...] = ()) -> StaticResolver:
    resolver = StaticResolver(temperror=temperror)
    for name, rdtype, value in records:
        resolver.add(name, rdtype, value)
    return resolver


def test_pass_ipv4_carries_the_confirmed_name() -> None:
    dns = zone((PTR4, "PTR", "mail.example.net."), ("mail.example.net", "A", "192.0.2.25"))
    r = check_iprev(V4, dns)
    assert (r.result, r.ip, r.name, r.names, r.reason) == (
        Result.PASS,
        "192.0.2.25",
        "mail.example.net",
        1,
        "",
    )
    assert dns.queries == [(PTR4, "PTR"), ("mail.example.net", "A")]


def test_pass_ipv6_asks_aaaa_and_compares_addresses_not_text() -> None:
    dns = zone((PTR6, "PTR", "mail.example.net"), ("mail.example.net", "AAAA", "2001:DB8:0::25"))
    r = check_iprev(V6, dns)
    assert (r.result, r.ip, r.name) == (Result.PASS, "2001:db8::25", "mail.example.net")
    assert dns.queries == [(PTR6, "PTR"), ("mail.example.net", "AAAA")]


def test_ipv4_mapped_address_is_checked_as_ipv4() -> None:
    dns = zone((PTR4, "PTR", "mail.example.net"), ("mail.example.net", "A", "192.0.2.25"))
    r = check_iprev(ipaddress.ip_address("::ffff:192.0.2.25"), dns)
    assert (r.result, r.ip) == (Result.PASS, "192.0.2.25")


def test_second_name_may_confirm_and_stops_the_walk() -> None:
    dns = zone(
        (PTR4, "PTR", "a.example.net"),
        (PTR4, "PTR", "b.example.net"),
        (PTR4, "PTR", "c.example.net"),
        ("a.example.net", "A", "192.0.2.99"),
        ("b.example.net", "A", "192.0.2.25"),
        ("c.example.net", "A", "192.0.2.25"),
    )
    r = check_iprev(V4, dns)
    assert (r.result, r.name, r.names) == (Result.PASS, "b.example.net", 3)
    assert ("c.example.net", "A") not in dns.queries


def test_no_ptr_is_permerror() -> None:
    r = check_iprev(V4, zone())  # NXDOMAIN
    assert (r.result, r.name, r.reason) == (Result.PERMERROR, "", "no PTR record")


def test_ptr_nodata_is_permerror() -> None:
    dns = zone(("9." + PTR4, "PTR", "other.example"))  # 25.2.0.192.in-addr.arpa exists, empty
    dns.add(PTR4, "TXT", "x")
    assert check_iprev(V4, dns).result == Result.PERMERROR


def test_ptr_name_that_does_not_resolve_is_fail() -> None:
    r = check_iprev(V4, zone((PTR4, "PTR", "nowhere.example")))
    assert (r.result, r.name, r.reason) == (
        Result.FAIL,
        "",
        "the PTR name does not resolve back",
    )


def test_ptr_name_resolving_elsewhere_is_fail() -> None:
    dns = zone((PTR4, "PTR", "mail.example.net"), ("mail.example.net", "A", "192.0.2.26"))
    assert check_iprev(V4, dns).result == Result.FAIL


def test_ipv4_name_with_only_aaaa_is_fail() -> None:
    dns = zone((PTR4, "PTR", "mail.example.net"), ("mail.example.net", "AAAA", "::ffff:c000:219"))
    assert check_iprev(V4, dns).result == Result.FAIL


def test_ptr_timeout_is_temperror() -> None:
    r = check_iprev(V4, zone(temperror=(PTR4,)))
    assert (r.result, r.reason) == (Result.TEMPERROR, "PTR lookup failed")


def test_forward_timeout_without_a_pass_is_temperror_never_fail() -> None:
    dns = zone(
        (PTR4, "PTR", "a.example.net"),
        (PTR4, "PTR", "b.example.net"),
        ("b.example.net", "A", "192.0.2.99"),
        temperror=("a.example.net",),
    )
    assert check_iprev(V4, dns).result == Result.TEMPERROR


def test_forward_timeout_of_one_name_does_not_stop_a_pass() -> None:
    dns = zone(
        (PTR4, "PTR", "a.example.net"),
        (PTR4, "PTR", "b.example.net"),
        ("b.example.net", "A", "192.0.2.25"),
        temperror=("a.example.net",),
    )
    assert check_iprev(V4, dns).result == Result.PASS


def test_at_most_ten_names_are_looked_up() -> None:
    names = [f"n{i:02}.example.net" for i in range(MAX_NAMES + 5)]
    dns = zone(*((PTR4, "PTR", n) for n in names), (names[-1], "A", "192.0.2.25"))
    r = check_iprev(V4, dns)
    assert (r.result, r.names) == (Result.FAIL, MAX_NAMES + 5)
    assert r.reason == f"none of {MAX_NAMES} PTR names resolves back"
    assert len([q for q in dns.queries if q[1] == "A"]) == MAX_NAMES


def test_names_that_are_not_host_names_are_never_looked_up() -> None:
    dns = zone(
        (PTR4, "PTR", "x(y).example"),
        (PTR4, "PTR", "localhost"),
        ("x(y).example", "A", "192.0.2.25"),
    )
    r = check_iprev(V4, dns)
    assert (r.result, r.reason) == (Result.PERMERROR, "no PTR record names a host")
    assert dns.queries == [(PTR4, "PTR")]


def test_duplicate_ptr_names_are_looked_up_once() -> None:
    dns = zone((PTR4, "PTR", "a.example.net"), (PTR4, "PTR", "A.Example.NET."))
    r = check_iprev(V4, dns)
    assert (r.result, r.names) == (Result.FAIL, 1)
    assert dns.queries.count(("a.example.net", "A")) == 1


def test_spent_budget_is_temperror_without_forward_lookups() -> None:
    dns = zone((PTR4, "PTR", "mail.example.net"), ("mail.example.net", "A", "192.0.2.25"))
    r = check_iprev(V4, dns, time_budget=0)
    assert r.result == Result.TEMPERROR
    assert dns.queries == [(PTR4, "PTR")]


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("Mail.Example.NET.", "mail.example.net"),
        ("_srv.example", "_srv.example"),
        ("localhost", None),
        ("a..example", None),
        ("-a.example", None),
        ("a b.example", None),
        ("a;x=y.example", None),
        ("é.example", None),
        ("a" * 64 + ".example", None),
    ],
)
def test_host_name(name: str, expected: str | None) -> None:
    assert host_name(name) == expected
