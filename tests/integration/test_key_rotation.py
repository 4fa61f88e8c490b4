"""Safe key rotation through the real daemon, with a DNS server whose records change.

``signing.publish_check_interval`` is short here and the resolver's cache is off, so a
change in DNS reaches the daemon by the next due check; every wait is a bounded poll that
sends messages until the expected selectors sign (no timing is asserted). The steps are an
administrator's: a new selector is configured and reloaded before its record is published
(it does not sign), its record is published (both sign), the old record is removed (the
old key stops), and DNS fails (each key keeps its last known state).
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import dkim
import pytest

from authmilter.dnsresolver import DnspythonResolver
from tests.support.daemon import AuthmilterDaemon
from tests.support.dnsserver import DnsServer
from tests.support.keys import DkimKey, new_ed25519_key, new_rsa_key
from tests.support.mail import make_message, zone
from tests.support.milterclient import MilterClient

pytestmark = pytest.mark.integration

AUTHSERV = "mx.test.example"
INTERVAL = 0.2  # signing.publish_check_interval, seconds
OLD = "old._domainkey.example.org"
NEW = "new._domainkey.example.org"


@pytest.fixture(scope="module")
def old_key() -> DkimKey:
    return new_rsa_key(2048)


@pytest.fixture(scope="module")
def new_key() -> DkimKey:
    return new_ed25519_key()


def key_entry(directory: Path, selector: str, key: DkimKey) -> dict[str, str]:
    path = key.write(directory / f"{selector}.private")
    return {"domain": "example.org", "selector": selector, "key_file": str(path)}


def config(dns: DnsServer, keys: list[dict[str, str]]) -> dict[str, Any]:
    return {
        "milter": {"authserv_id": AUTHSERV, "log_level": "info"},
        "dns": {"nameservers": [dns.address], "timeout": 1.0, "cache_size": 0},
        "trust": {"internal_hosts": []},  # SASL is what makes the test's mail ours
        "signing": {"publish_check_interval": INTERVAL, "keys": keys},
    }


def publish(dns: DnsServer, name: str, key: DkimKey) -> None:
    dns.add(name, "TXT", key.txt, ttl=1)


def selectors(daemon: AuthmilterDaemon, dns: DnsServer | None = None) -> list[str]:
    """The selectors that sign one authenticated message (each signature verified)."""
    raw = make_message(from_addr="alice@example.org")
    with MilterClient(daemon.socket) as client:
        reply = client.send_message(
            raw,
            client_ip="198.51.100.7",
            mail_from="alice@example.org",
            macros={"{auth_authen}": "alice"},
        )
    assert reply.smtp_class == "accept", (reply, daemon.log())
    found = []
    for m in reply.added_headers():
        if m.name == "DKIM-Signature":
            found += re.findall(r"(?:^|[;\s])s=([\w.-]+);", m.text)
            if dns is not None:
                assert verifies(dns, m.text, raw), m.text
    return sorted(found)


def verifies(dns: DnsServer, signature: str, raw: bytes) -> bool:
    resolver = DnspythonResolver([dns.address], timeout=2, cache_size=0)

    def dnsfunc(name: bytes, timeout: float = 5) -> bytes:
        return b"".join(resolver.query(name.decode(), "TXT").txt())

    field = b"DKIM-Signature:" + signature.replace("\n", "\r\n").encode() + b"\r\n"
    return bool(dkim.verify(field + raw, dnsfunc=dnsfunc))


def wait_for_selectors(
    daemon: AuthmilterDaemon, expected: list[str], until: Callable[[], bool] = lambda: True
) -> None:
    """Send messages until ``expected`` sign (and ``until()`` holds); at most 20 s."""
    seen: list[list[str]] = []
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        seen.append(selectors(daemon))
        if seen[-1] == expected and until():
            return
        time.sleep(INTERVAL / 2)
    raise AssertionError(f"never signed by {expected}: {seen[-5:]}\n{daemon.log()}")


@pytest.fixture
def world(dns_server: DnsServer) -> DnsServer:
    dns_server.add_zone(
        zone(
            "example.org",
            '@ TXT "v=spf1 -all"',
            '_dmarc TXT "v=DMARC1; p=reject"',
            ttl=1,
        )
    )
    return dns_server


def test_a_new_selector_signs_once_published_and_the_old_stops_once_removed(
    world: DnsServer,
    old_key: DkimKey,
    new_key: DkimKey,
    tmp_path: Path,
    authmilter_daemon: Callable[..., AuthmilterDaemon],
) -> None:
    publish(world, OLD, old_key)
    old = key_entry(tmp_path, "old", old_key)
    daemon = authmilter_daemon(config(world, [old]))
    assert selectors(daemon, world) == ["old"]
    assert f"signing key {OLD}: published and matching: signing with it" in daemon.log()

    # 1. the new selector is configured before its record is out: it does not sign yet
    daemon.write_config({"signing": {"keys": [old, key_entry(tmp_path, "new", new_key)]}})
    daemon.reload()
    log = daemon.wait_for_log("reloaded")
    assert f"signing key {NEW}: not published (missing): not signing with it until" in log
    assert selectors(daemon, world) == ["old"]
    assert f"signed=1 unpublished={NEW} " in daemon.log()

    # 2. its record is published: after the interval both sign (the rotation's grace period)
    publish(world, NEW, new_key)
    wait_for_selectors(daemon, ["new", "old"])
    assert selectors(daemon, world) == ["new", "old"]  # both verify
    assert f"signing key {NEW}: published and matching: signing with it" in daemon.log()

    # 3. the old record is removed: the old key stops signing by itself
    world.remove(OLD, "TXT")
    wait_for_selectors(daemon, ["new"])
    assert f"signing key {OLD}: not published (missing): no longer signing" in daemon.log()

    # 4. DNS fails for both: each keeps its last known state (new signs, old does not)
    world.reset_counts()
    world.set_fault(OLD, "servfail")
    world.set_fault(NEW, "servfail")
    wait_for_selectors(
        daemon,
        ["new"],
        until=lambda: world.queries(OLD) >= 2 and world.queries(NEW) >= 2,  # re-checked
    )
    assert selectors(daemon) == ["new"]
    kept = "DNS lookup failed (temperror): keeping the last known state"
    log = daemon.log()
    assert f"signing key {NEW}: {kept} (signing)" in log
    assert f"signing key {OLD}: {kept} (not signing)" in log
    assert daemon.running()


def test_dns_failing_at_start_signs_with_a_warning_until_a_lookup_answers(
    world: DnsServer,
    old_key: DkimKey,
    tmp_path: Path,
    authmilter_daemon: Callable[..., AuthmilterDaemon],
) -> None:
    """No known state: the administrator configured the key, so it signs (documented)."""
    world.set_fault(OLD, "servfail")  # and no record behind the failure
    daemon = authmilter_daemon(config(world, [key_entry(tmp_path, "old", old_key)]))
    assert (
        f"signing key {OLD}: DNS lookup failed (temperror): signing with it until a lookup "
        "says whether it is published"
    ) in daemon.log()
    assert selectors(daemon) == ["old"]
    world.clear_faults()  # DNS answers: there is no record, so the key stops signing
    wait_for_selectors(daemon, [])
    assert f"signing key {OLD}: not published (missing): no longer signing" in daemon.log()


def test_a_reload_sees_a_record_published_just_before_it_despite_the_answer_cache(
    world: DnsServer,
    new_key: DkimKey,
    tmp_path: Path,
    authmilter_daemon: Callable[..., AuthmilterDaemon],
) -> None:
    """The answer cache survives a reload; the key check must not read a cached NXDOMAIN."""
    entry = key_entry(tmp_path, "new", new_key)
    cfg = config(world, [entry])
    cfg["dns"] = {"nameservers": [world.address], "timeout": 1.0}  # the cache on (default)
    cfg["signing"]["publish_check_interval"] = 3600  # no periodic check during the test
    daemon = authmilter_daemon(cfg)
    assert f"signing key {NEW}: not published (missing)" in daemon.log()
    assert selectors(daemon) == []
    publish(world, NEW, new_key)
    daemon.reload()
    daemon.wait_for_log(f"signing key {NEW}: published and matching")
    assert selectors(daemon, world) == ["new"]
