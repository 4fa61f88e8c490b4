"""iprev through the real daemon over the milter protocol, PTR records from the loopback DNS
server: reported in the A-R and the log line, the optional 550 5.7.25 at RCPT TO, and a
SASL user with broken reverse DNS (a roaming laptop) never checked nor refused."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator

import pytest

from tests.support.daemon import AuthmilterDaemon
from tests.support.dnsserver import DnsServer
from tests.support.keys import DkimKey, new_rsa_key
from tests.support.mail import dkim_sign, make_message, quoted, zone
from tests.support.milterclient import MilterClient, Reply

pytestmark = pytest.mark.integration

AUTHSERV = "mx.test.example"
CONFIRMED = "192.0.2.10"  # PTR mail.example.org, which resolves back
UNCONFIRMED = "198.51.100.7"  # PTR forged.example.org, which has no address
NO_PTR = "203.0.113.5"


def ptr(ip: str) -> str:
    return ipaddress.ip_address(ip).reverse_pointer


@pytest.fixture(scope="module")
def key() -> DkimKey:
    return new_rsa_key(2048)


@pytest.fixture(scope="module")
def dns(key: DkimKey) -> Iterator[DnsServer]:
    text = zone(
        "example.org",
        f'@ TXT "v=spf1 ip4:{CONFIRMED} -all"',
        '_dmarc TXT "v=DMARC1; p=reject"',
        f"sel._domainkey TXT {quoted(key.txt)}",
        f"mail A {CONFIRMED}",
    )
    text += f"{ptr(CONFIRMED)}. 300 IN PTR mail.example.org.\n"
    text += f"{ptr(UNCONFIRMED)}. 300 IN PTR forged.example.org.\n"
    with DnsServer(text) as server:
        yield server


@pytest.fixture(scope="module")
def daemon(dns: DnsServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[AuthmilterDaemon]:
    config = {
        "milter": {"authserv_id": AUTHSERV, "log_level": "info"},
        "dns": {"nameservers": [dns.address], "timeout": 1.5, "cache_size": 0},
        "trust": {"internal_hosts": []},
        "iprev": {"reject_fail": True},
    }
    with AuthmilterDaemon(tmp_path_factory.mktemp("iprev"), config) as d:
        yield d


def send(daemon: AuthmilterDaemon, key: DkimKey, ip: str, **kwargs: object) -> Reply:
    raw = dkim_sign(make_message(from_addr="alice@example.org"), "example.org", "sel", key)
    with MilterClient(daemon.socket) as client:
        return client.send_message(
            raw,
            client_ip=ip,
            mail_from="alice@example.org",
            **kwargs,  # type: ignore[arg-type]
        )


def log_line(daemon: AuthmilterDaemon, qid: str) -> str:
    """The daemon's one line for the message with this queue id."""
    log = daemon.wait_for_log(f"qid={qid} ")
    (line,) = [x for x in log.splitlines() if f"qid={qid} " in x]
    return line


def our_ar(reply: Reply) -> str:
    ars = [m.text for m in reply.added_headers() if m.name.lower() == "authentication-results"]
    assert len(ars) == 1, reply
    return ars[0]


def test_confirmed_client_is_iprev_pass_in_the_ar_and_the_log(
    daemon: AuthmilterDaemon, dns: DnsServer, key: DkimKey
) -> None:
    dns.reset_counts()
    reply = send(daemon, key, CONFIRMED, queue_id="QPASS")
    assert reply.smtp_class == "accept", reply
    ar = our_ar(reply)
    assert ar.startswith(
        f" {AUTHSERV};\n\tiprev=pass policy.iprev={CONFIRMED} (mail.example.org);\n\tspf=pass"
    ), ar
    line = log_line(daemon, "QPASS")
    assert " iprev=pass(mail.example.org) spf=pass(" in line
    assert dns.queries(ptr(CONFIRMED), "PTR") == 1  # once for the message (no cache here)


def test_unconfirmed_client_is_refused_at_rcpt_when_asked(
    daemon: AuthmilterDaemon, key: DkimKey
) -> None:
    reply = send(daemon, key, UNCONFIRMED, queue_id="QFAIL")
    assert reply.stage == "rcpt" and reply.code == 550, reply
    assert reply.text.startswith("550 5.7.25 reverse DNS validation failed"), reply
    line = log_line(daemon, "QFAIL")
    assert "why=iprev:fail@rcpt action=reject(550 5.7.25)" in line


def test_client_without_ptr_is_never_refused_for_it(daemon: AuthmilterDaemon, key: DkimKey) -> None:
    reply = send(daemon, key, NO_PTR, queue_id="QNOPTR")
    assert reply.smtp_class == "accept", reply  # DKIM passes, so DMARC does
    assert "iprev=permerror" in our_ar(reply)


def test_roaming_sasl_user_with_broken_reverse_dns_is_not_checked(
    daemon: AuthmilterDaemon, dns: DnsServer, key: DkimKey
) -> None:
    dns.reset_counts()
    reply = send(daemon, key, UNCONFIRMED, macros={"{auth_authen}": "alice"}, queue_id="QAUTH")
    assert reply.smtp_class == "accept", reply
    line = log_line(daemon, "QAUTH")
    assert "trusted=auth" in line and "iprev" not in line
    assert dns.queries(ptr(UNCONFIRMED), "PTR") == 0
