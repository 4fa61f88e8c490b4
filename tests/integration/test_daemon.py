"""The real daemon as a subprocess, driven over the milter protocol, DNS from a loopback server.

Inbound checks use client addresses outside ``trust.internal_hosts`` (which is emptied), so
nothing here is treated as "our own" mail unless a test says so.
"""

from __future__ import annotations

import signal
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.daemon import AuthmilterDaemon, socket_accepts
from tests.support.dnsserver import DnsServer
from tests.support.keys import DkimKey, new_rsa_key
from tests.support.mail import dkim_sign, make_message, quoted, zone
from tests.support.milterclient import MilterClient, Reply

pytestmark = pytest.mark.integration

AUTHSERV = "mx.test.example"
GOOD_IP = "192.0.2.10"  # permitted by example.org's SPF
BAD_IP = "198.51.100.7"  # not permitted


@pytest.fixture(scope="module")
def key() -> DkimKey:
    return new_rsa_key(2048)


def example_zone(key: DkimKey) -> str:
    return zone(
        "example.org",
        f'@ TXT "v=spf1 ip4:{GOOD_IP} -all"',
        '_dmarc TXT "v=DMARC1; p=reject; adkim=r; aspf=r"',
        f"sel._domainkey TXT {quoted(key.txt)}",
        # a second domain whose key lookups we break on purpose
        "$ORIGIN broken.example.",
        f'@ TXT "v=spf1 ip4:{GOOD_IP} -all"',
        '_dmarc TXT "v=DMARC1; p=reject"',
        f"sel._domainkey TXT {quoted(key.txt)}",
    )


def config(dns: DnsServer, **sections: dict[str, Any]) -> dict[str, Any]:
    base: dict[str, Any] = {
        "milter": {"authserv_id": AUTHSERV, "log_level": "info"},
        # failure_ttl 0: the tests here change faults between messages on one daemon (the
        # failure memory has its own tests in test_dns_faults.py)
        "dns": {"nameservers": [dns.address], "timeout": 1.5, "cache_size": 0, "failure_ttl": 0},
        "trust": {"internal_hosts": []},
    }
    for name, values in sections.items():
        base.setdefault(name, {}).update(values)
    return base


@pytest.fixture(scope="module")
def shared_dns(key: DkimKey) -> Iterator[DnsServer]:
    with DnsServer(example_zone(key)) as server:
        yield server


@pytest.fixture(scope="module")
def shared_daemon(
    shared_dns: DnsServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[AuthmilterDaemon]:
    """One daemon for the tests that do not change it (fewer starts, fewer key loads)."""
    with AuthmilterDaemon(tmp_path_factory.mktemp("daemon"), config(shared_dns)) as d:
        yield d


@pytest.fixture
def dns(shared_dns: DnsServer) -> Iterator[DnsServer]:
    shared_dns.clear_faults()
    shared_dns.reset_counts()
    yield shared_dns
    shared_dns.clear_faults()


@pytest.fixture
def daemon(shared_daemon: AuthmilterDaemon, dns: DnsServer) -> AuthmilterDaemon:
    assert shared_daemon.running(), shared_daemon.log()
    return shared_daemon


@pytest.fixture
def own_daemon(
    dns_server: DnsServer, key: DkimKey, authmilter_daemon: Callable[..., AuthmilterDaemon]
) -> AuthmilterDaemon:
    """A daemon of its own, for tests that reload or stop it."""
    dns_server.add_zone(example_zone(key))
    return authmilter_daemon(config(dns_server))


def send(daemon: AuthmilterDaemon, raw: bytes, **kwargs: Any) -> Reply:
    kwargs.setdefault("client_ip", GOOD_IP)
    kwargs.setdefault("mail_from", "alice@example.org")
    with MilterClient(daemon.socket) as client:
        return client.send_message(raw, **kwargs)


def our_ar(reply: Reply) -> str:
    """The A-R we inserted at the top; fails unless there is exactly one."""
    ars = [m for m in reply.added_headers() if m.name.lower() == "authentication-results"]
    assert len(ars) == 1, reply
    assert ars[0].kind == "insert_header" and ars[0].index == 0, ars[0]
    text = ars[0].text
    # the milter asked for SMFIP_HDR_LEADSPC, so the value carries its own leading space
    assert text.startswith(" "), text
    assert text.split(";")[0].strip() == AUTHSERV, text
    return text


def signed(key: DkimKey, domain: str = "example.org", **kwargs: Any) -> bytes:
    return dkim_sign(make_message(from_addr=f"alice@{domain}", **kwargs), domain, "sel", key)


@pytest.mark.parametrize("transport", ["udp", "tcp"])
def test_signed_message_passes_dkim_and_dmarc(
    daemon: AuthmilterDaemon, dns: DnsServer, key: DkimKey, transport: str
) -> None:
    if transport == "tcp":
        dns.set_fault("sel._domainkey.example.org", "truncate")
    reply = send(daemon, signed(key))
    assert reply.action == "accept", (reply, daemon.log())
    ar = our_ar(reply)
    assert "dkim=pass" in ar and "header.d=example.org" in ar
    assert "dmarc=pass" in ar and "spf=pass" in ar
    assert dns.queries("sel._domainkey.example.org", "TXT") >= 1
    if transport == "tcp":
        assert dns.transport_count("tcp") >= 1


def test_bad_signature_fails_but_spf_alignment_still_passes_dmarc(
    daemon: AuthmilterDaemon, key: DkimKey
) -> None:
    raw = signed(key).replace(b"This is a test.", b"This is a forgery.")
    reply = send(daemon, raw)
    ar = our_ar(reply)
    assert "dkim=fail" in ar and "dmarc=pass" in ar and reply.action == "accept"


@pytest.mark.parametrize("fault", ["timeout", "servfail"])
def test_key_lookup_trouble_under_p_reject_tempfails(
    daemon: AuthmilterDaemon, dns: DnsServer, key: DkimKey, fault: str
) -> None:
    dns.set_fault("sel._domainkey.broken.example", fault)
    raw = signed(key, domain="broken.example")
    # SPF fails (bad IP), so DMARC hangs on the DKIM key we cannot fetch: never a reject
    reply = send(daemon, raw, client_ip=BAD_IP, mail_from="alice@broken.example")
    assert reply.smtp_class == "tempfail", (reply, daemon.log())
    assert reply.code is not None and 400 <= reply.code < 500
    assert dns.queries("sel._domainkey.broken.example", "TXT") >= 1


def test_p_reject_spoof_is_rejected_with_5_7_26(daemon: AuthmilterDaemon) -> None:
    raw = make_message(from_addr="ceo@example.org")
    reply = send(daemon, raw, client_ip=BAD_IP, mail_from="bounce@spoofer.test")
    assert reply.action == "replycode" and reply.stage == "eom", reply
    assert reply.text.startswith("550 5.7.26"), reply.text
    assert "example.org" in reply.text


def test_sasl_user_is_not_checked_as_inbound(daemon: AuthmilterDaemon) -> None:
    raw = make_message(from_addr="ceo@example.org")
    reply = send(
        daemon, raw, client_ip=BAD_IP, mail_from="ceo@example.org", macros={"{auth_authen}": "ceo"}
    )
    assert reply.smtp_class == "accept", (reply, daemon.log())
    assert not any("dmarc=fail" in m.text for m in reply.added_headers())


def test_forged_ar_with_our_id_is_removed_and_others_kept(
    daemon: AuthmilterDaemon, key: DkimKey
) -> None:
    raw = signed(
        key,
        extra_headers=(
            ("Authentication-Results", "other.example; spf=pass smtp.mailfrom=example.org"),
            ("Authentication-Results", f"{AUTHSERV.upper()}; dkim=pass header.d=paypal.com"),
        ),
    )
    reply = send(daemon, raw)
    changes = [(m.name.lower(), m.index, m.value) for m in reply.header_changes()]
    # the second A-R carries our authserv-id (case-insensitively): deleted; the first stays
    assert changes == [("authentication-results", 2, b"")], reply
    assert "dkim=pass" in our_ar(reply)


def test_reload_on_sigusr1_keeps_serving_with_new_config(
    own_daemon: AuthmilterDaemon, key: DkimKey
) -> None:
    assert our_ar(send(own_daemon, signed(key)))
    own_daemon.write_config({"milter": {"authserv_id": "reloaded.test.example"}})
    own_daemon.reload()
    own_daemon.wait_for_log("reloaded")
    reply = send(own_daemon, signed(key))
    ars = [m.text for m in reply.added_headers() if m.name == "Authentication-Results"]
    assert len(ars) == 1 and ars[0].startswith(" reloaded.test.example;"), reply
    assert own_daemon.running()


def test_failed_reload_keeps_the_running_config(own_daemon: AuthmilterDaemon, key: DkimKey) -> None:
    own_daemon.config_path.write_text("[milter]\nno_such_key = 1\n")
    own_daemon.reload()
    own_daemon.wait_for_log("reload failed")
    assert our_ar(send(own_daemon, signed(key)))


def test_sigterm_stops_cleanly(own_daemon: AuthmilterDaemon, tmp_path: Path) -> None:
    assert socket_accepts(own_daemon.socket)
    status = own_daemon.stop(timeout=15)
    assert status == 0, own_daemon.log()
    assert not socket_accepts(own_daemon.socket)
    assert "stopped" in own_daemon.log()
    # a clean stop removes the socket file (libmilter's smfi_main does on a clean exit)
    path = own_daemon.socket_path
    assert path is not None and not path.exists()
    own_daemon.start()
    assert socket_accepts(own_daemon.socket)
    # a crash (SIGKILL) leaves a stale socket; starting again removes it and listens
    own_daemon.signal(signal.SIGKILL)
    assert own_daemon.proc is not None and own_daemon.proc.wait(10) == -signal.SIGKILL
    assert path.exists() and not socket_accepts(own_daemon.socket)
    own_daemon.start()
    assert socket_accepts(own_daemon.socket)


def test_broken_config_exits_78(tmp_path: Path) -> None:
    daemon = AuthmilterDaemon(tmp_path, {"dns": {"nameservers": ["not-an-ip"]}})
    with pytest.raises(Exception, match="exited with 78"):
        daemon.start()
