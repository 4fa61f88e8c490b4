"""End to end: a real private Postfix, the real daemon, the loopback DNS server and a sink.

Postfix hands the milter the real client address (127.0.0.1), so ``trust.internal_hosts``
is emptied: inbound mail from loopback is checked as inbound. The submission port
(``milter_macro_daemon_name=ORIGINATING``) authenticates through a stand-in Dovecot auth
socket, so the milter sees a real ``{auth_authen}`` from Postfix.
"""

from __future__ import annotations

import smtplib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import dkim
import pytest

from authmilter.dnsresolver import DnspythonResolver
from tests.support.daemon import AuthmilterDaemon
from tests.support.dnsserver import DnsServer
from tests.support.keys import DkimKey, new_rsa_key
from tests.support.mail import dkim_sign, make_message, quoted, zone
from tests.support.postfix import PostfixInstance
from tests.support.smtpsink import ReceivedMessage, SmtpSink

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

AUTHSERV = "mx.test.example"


@dataclass
class Outcome:
    code: int
    text: str


def smtp_send(
    port: int, mail_from: str, rcpts: list[str], data: bytes, login: tuple[str, str] | None = None
) -> Outcome:
    """Send one message; the final SMTP answer (250 when queued)."""
    try:
        with smtplib.SMTP("127.0.0.1", port, timeout=60) as client:
            client.ehlo("client.test")
            if login:
                client.login(*login)
            client.sendmail(mail_from, rcpts, data)
    except smtplib.SMTPRecipientsRefused as exc:
        code, text = next(iter(exc.recipients.values()))
        return Outcome(code, text.decode())
    except smtplib.SMTPResponseException as exc:
        return Outcome(exc.smtp_code, exc.smtp_error.decode())
    return Outcome(250, "queued")


@pytest.fixture(scope="module")
def inbound_key() -> DkimKey:
    return new_rsa_key(2048)


@pytest.fixture(scope="module")
def outbound_key() -> DkimKey:
    return new_rsa_key(2048)


@pytest.fixture
def world(dns_server: DnsServer, inbound_key: DkimKey, outbound_key: DkimKey) -> DnsServer:
    dns_server.add_zone(
        zone(
            "example.org",
            '@ TXT "v=spf1 ip4:127.0.0.1 -all"',
            '_dmarc TXT "v=DMARC1; p=reject"',
            f"sel._domainkey TXT {quoted(inbound_key.txt)}",
            "$ORIGIN example.net.",
            '@ TXT "v=spf1 -all"',
            '_dmarc TXT "v=DMARC1; p=reject"',
            f"out._domainkey TXT {quoted(outbound_key.txt)}",
        )
    )
    return dns_server


def daemon_config(dns: DnsServer, **extra: Any) -> dict[str, Any]:
    cfg: dict[str, Any] = {
        "milter": {"authserv_id": AUTHSERV},
        "dns": {"nameservers": [dns.address], "timeout": 2.0},
        "trust": {"internal_hosts": []},
    }
    cfg.update(extra)
    return cfg


def our_ar(msg: ReceivedMessage) -> str:
    ours = [
        v
        for v in msg.header_values("Authentication-Results")
        if v.split(";")[0].strip() == AUTHSERV
    ]
    assert len(ours) == 1, msg.data.decode(errors="replace")
    return ours[0]


def test_signed_inbound_message_arrives_with_dkim_and_dmarc_pass(
    world: DnsServer,
    inbound_key: DkimKey,
    smtp_sink: SmtpSink,
    authmilter_daemon: Callable[..., AuthmilterDaemon],
    postfix: Callable[..., PostfixInstance],
) -> None:
    daemon = authmilter_daemon(daemon_config(world), shared=True)
    pf = postfix(daemon.socket, smtp_sink.port)
    raw = dkim_sign(make_message(from_addr="alice@example.org"), "example.org", "sel", inbound_key)
    outcome = smtp_send(pf.port, "alice@example.org", ["bob@example.com"], raw)
    assert outcome.code == 250, (outcome, pf.maillog(), daemon.log())
    (msg,) = smtp_sink.wait_for(1, timeout=30)
    ar = our_ar(msg)
    assert "dkim=pass" in ar and "dmarc=pass" in ar and "spf=pass" in ar, ar
    assert msg.header_fields()[0][0].lower() == "authentication-results"  # at the top


def test_p_reject_spoof_is_refused_at_smtp(
    world: DnsServer,
    smtp_sink: SmtpSink,
    authmilter_daemon: Callable[..., AuthmilterDaemon],
    postfix: Callable[..., PostfixInstance],
) -> None:
    daemon = authmilter_daemon(daemon_config(world), shared=True)
    pf = postfix(daemon.socket, smtp_sink.port)
    raw = make_message(from_addr="ceo@example.net")  # SPF -all, no signature, p=reject
    outcome = smtp_send(pf.port, "bounce@example.net", ["bob@example.com"], raw)
    assert outcome.code == 550 and outcome.text.startswith("5.7.26"), outcome
    assert "milter-reject" in pf.wait_for_log("milter-reject")
    assert smtp_sink.messages == []


def test_stopped_milter_tempfails_and_loses_nothing(
    world: DnsServer,
    smtp_sink: SmtpSink,
    authmilter_daemon: Callable[..., AuthmilterDaemon],
    postfix: Callable[..., PostfixInstance],
) -> None:
    daemon = authmilter_daemon(daemon_config(world), shared=True)
    pf = postfix(daemon.socket, smtp_sink.port)
    daemon.stop()
    raw = make_message(from_addr="alice@example.org")
    outcome = smtp_send(pf.port, "alice@example.org", ["bob@example.com"], raw)
    assert 400 <= outcome.code < 500, (outcome, pf.maillog())
    assert smtp_sink.messages == []
    assert "Mail queue is empty" in pf.postqueue()  # refused, not silently queued
    # the sender retries once the milter is back, and the message goes through
    daemon.start()
    assert smtp_send(pf.port, "alice@example.org", ["bob@example.com"], raw).code == 250
    assert "dmarc=pass" in our_ar(smtp_sink.wait_for(1, timeout=30)[0])


def test_submission_mail_is_signed_and_verifies_at_the_sink(  # noqa: PLR0917
    world: DnsServer,
    outbound_key: DkimKey,
    shared_dir: Any,
    smtp_sink: SmtpSink,
    authmilter_daemon: Callable[..., AuthmilterDaemon],
    postfix: Callable[..., PostfixInstance],
) -> None:
    key_file = outbound_key.write(shared_dir / "out.private")
    cfg = daemon_config(
        world,
        signing={
            "keys": [{"domain": "example.net", "selector": "out", "key_file": str(key_file)}],
        },
    )
    daemon = authmilter_daemon(cfg, shared=True)
    pf = postfix(daemon.socket, smtp_sink.port, sasl_users={"carol": "s3cret"})
    raw = make_message(from_addr="carol@example.net", to_addr="dave@example.com")
    outcome = smtp_send(
        pf.submission_port,
        "carol@example.net",
        ["dave@example.com"],
        raw,
        login=("carol", "s3cret"),
    )
    assert outcome.code == 250, (outcome, pf.maillog(), daemon.log())
    (msg,) = smtp_sink.wait_for(1, timeout=30)
    assert msg.header_values("DKIM-Signature"), msg.data.decode(errors="replace")
    resolver = DnspythonResolver([world.address], timeout=2)

    def dnsfunc(name: bytes, timeout: float = 5) -> bytes:
        return b"".join(resolver.query(name.decode(), "TXT").txt())

    assert dkim.verify(msg.data, dnsfunc=dnsfunc), msg.data.decode(errors="replace")
    assert "d=example.net" in msg.header_values("DKIM-Signature")[0].replace(" ", "")
