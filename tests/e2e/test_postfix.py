"""End to end: a real private Postfix, the real daemon, the loopback DNS server and a sink.

Postfix hands the milter the real client address (127.0.0.1), so ``trust.internal_hosts``
is emptied: inbound mail from loopback is checked as inbound. The submission port
(``milter_macro_daemon_name=ORIGINATING``) authenticates through a stand-in Dovecot auth
socket, so the milter sees a real ``{auth_authen}`` from Postfix. Local submission is the
real ``sendmail`` through pickup and cleanup (``non_smtpd_milters``).
"""

from __future__ import annotations

import smtplib
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
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
            "$ORIGIN victim.example.",
            '@ TXT "v=spf1 -all"',
            '_dmarc TXT "v=DMARC1; p=reject"',
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


# --------------------------------------------------------------------------- the three paths
# SMTP submission with SASL, port 25, and sendmail through pickup: who may sign what.

LOGIN = "c-login"  # carol's SASL login: part of no address, so it can be looked for
VICTIM = "ceo@victim.example"  # p=reject, not ours, not in the login map


def trust_config(dns: DnsServer, key_file: Path, **trust: Any) -> dict[str, Any]:
    """Signing for example.net, a sender login map, and ``trust`` over the e2e defaults."""
    login_map = key_file.parent / "sender_login"
    login_map.write_text(f"carol@example.net  {LOGIN}\n@example.net  admin\n")
    signing = {
        "keys": [{"domain": "example.net", "selector": "out", "key_file": str(key_file)}],
        "sender_login_map": str(login_map),
    }
    return daemon_config(dns, trust={"internal_hosts": [], **trust}, signing=signing)


def assert_signed_without_our_ar(dns: DnsServer, msg: ReceivedMessage) -> None:
    """Signed for example.net (verified), no A-R of ours, and no login name anywhere."""
    resolver = DnspythonResolver([dns.address], timeout=2)

    def dnsfunc(name: bytes, timeout: float = 5) -> bytes:
        return b"".join(resolver.query(name.decode(), "TXT").txt())

    text = msg.data.decode(errors="replace")
    assert dkim.verify(msg.data, dnsfunc=dnsfunc), text
    ours = [v for v in msg.header_values("Authentication-Results") if v.startswith(AUTHSERV)]
    assert ours == [] and LOGIN not in text, text


def milter_reject(pf: PostfixInstance, sender: str, timeout: float = 30) -> str:
    """The maillog's milter-reject line for mail from ``sender``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for line in pf.maillog().splitlines():
            if "milter-reject" in line and f"from=<{sender}>" in line:
                return line
        time.sleep(0.1)
    raise AssertionError(f"no milter-reject for {sender}:\n{pf.maillog()}")


def test_sasl_submission_signs_the_users_own_addresses_and_names_no_login(  # noqa: PLR0917
    world: DnsServer,
    outbound_key: DkimKey,
    shared_dir: Path,
    smtp_sink: SmtpSink,
    authmilter_daemon: Callable[..., AuthmilterDaemon],
    postfix: Callable[..., PostfixInstance],
) -> None:
    key_file = outbound_key.write(shared_dir / "out.private")
    cfg = trust_config(world, key_file, daemon_names=["ORIGINATING"])
    daemon = authmilter_daemon(cfg, shared=True)
    pf = postfix(daemon.socket, smtp_sink.port, sasl_users={LOGIN: "s3cret"})
    login = (LOGIN, "s3cret")
    spoof = make_message(from_addr=VICTIM)
    # the README's submission service: no SASL, no mail
    outcome = smtp_send(pf.submission_port, VICTIM, ["dave@example.com"], spoof)
    assert outcome.code == 554 and outcome.text.startswith("5.7.1"), outcome
    # the user's own address: signed, and no header tells the recipient the login name
    own = make_message(from_addr="carol@example.net", to_addr="dave@example.com")
    outcome = smtp_send(pf.submission_port, "carol@example.net", ["dave@example.com"], own, login)
    assert outcome.code == 250, (outcome, pf.maillog(), daemon.log())
    assert_signed_without_our_ar(world, smtp_sink.wait_for(1, timeout=30)[0])
    # anyone else's: refused, whether ours (admin's) or a stranger's
    for sender in ("admin@example.net", VICTIM):
        raw = make_message(from_addr=sender)
        outcome = smtp_send(pf.submission_port, sender, ["dave@example.com"], raw, login)
        assert outcome.code == 553, outcome
        assert outcome.text == f"5.7.1 sender address {sender} is not owned by user {LOGIN}"
    assert len(smtp_sink.messages) == 1


def test_unauthenticated_origination_is_bound_by_the_login_map_and_port_25_by_dmarc(  # noqa: PLR0917
    world: DnsServer,
    outbound_key: DkimKey,
    shared_dir: Path,
    smtp_sink: SmtpSink,
    authmilter_daemon: Callable[..., AuthmilterDaemon],
    postfix: Callable[..., PostfixInstance],
) -> None:
    """The review's set-up: ORIGINATING trusted, the submission port open without SASL."""
    key_file = outbound_key.write(shared_dir / "out.private")
    cfg = trust_config(world, key_file, daemon_names=["ORIGINATING"])
    daemon = authmilter_daemon(cfg, shared=True)
    pf = postfix(daemon.socket, smtp_sink.port, sasl_users={LOGIN: "s3cret"}, require_sasl=False)
    spoof = make_message(from_addr=VICTIM)
    outcome = smtp_send(pf.submission_port, VICTIM, ["dave@example.com"], spoof)
    assert outcome.code == 553, (outcome, daemon.log())
    assert outcome.text == f"5.7.1 sender address {VICTIM} is not in the sender login map"
    outcome = smtp_send(pf.port, VICTIM, ["dave@example.com"], spoof)  # port 25: inbound
    assert outcome.code == 550 and outcome.text.startswith("5.7.26"), outcome
    assert smtp_sink.messages == []


@pytest.mark.parametrize(
    ("local_name", "trust", "own"),
    [
        ("LOCAL", {"local_daemon_names": ["LOCAL"]}, "signed"),  # local_submission login-map
        ("", {"internal_hosts": ["127.0.0.0/8"]}, "signed"),  # not told apart: internal
        ("LOCAL", {"local_daemon_names": ["LOCAL"], "local_submission": "check"}, "5.7.26"),
    ],
    ids=["login-map", "unnamed", "check"],
)
def test_sendmail_through_pickup(  # noqa: PLR0917
    world: DnsServer,
    outbound_key: DkimKey,
    shared_dir: Path,
    smtp_sink: SmtpSink,
    authmilter_daemon: Callable[..., AuthmilterDaemon],
    postfix: Callable[..., PostfixInstance],
    local_name: str,
    trust: dict[str, Any],
    own: str,
) -> None:
    key_file = outbound_key.write(shared_dir / "out.private")
    daemon = authmilter_daemon(trust_config(world, key_file, **trust), shared=True)
    pf = postfix(daemon.socket, smtp_sink.port, submission=False, local_daemon_name=local_name)
    pf.sendmail(
        "cron@example.net", ["dave@example.com"], make_message(from_addr="cron@example.net")
    )
    if own == "signed":
        assert_signed_without_our_ar(world, smtp_sink.wait_for(1, timeout=30)[0])
    else:  # checked as inbound: SPF -all from 127.0.0.1, unsigned, p=reject
        assert f": {own} " in milter_reject(pf, "cron@example.net")
    pf.sendmail(VICTIM, ["dave@example.com"], make_message(from_addr=VICTIM))
    refusal = "is not in the sender login map" if own == "signed" else ": 5.7.26 "
    assert refusal in milter_reject(pf, VICTIM)
    assert all(m.mail_from != VICTIM for m in smtp_sink.messages), daemon.log()
