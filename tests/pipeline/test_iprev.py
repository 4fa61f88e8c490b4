"""iprev through the engine and the session: once per message at MAIL FROM, reported in the
A-R and the log line, skipped for trusted clients, and the optional reject at RCPT TO."""

from __future__ import annotations

import ipaddress
import logging

import pytest

from authmilter.cli import run_session
from authmilter.decision import Action, Decision
from authmilter.model import Envelope, parse_message
from authmilter.results import Result
from authmilter.session import Session
from authmilter.staticresolver import StaticResolver
from tests.support.engines import BAD_IP, GOOD_IP, example_zone, make_engine
from tests.support.keys import sign, simple_message

PTR_GOOD = ipaddress.ip_address(GOOD_IP).reverse_pointer
PTR_BAD = ipaddress.ip_address(BAD_IP).reverse_pointer


def zone() -> StaticResolver:
    """example.com, with a confirmed PTR for GOOD_IP and an unconfirmed one for BAD_IP."""
    dns = example_zone()
    dns.add(PTR_GOOD, "PTR", "mail.example.com")
    dns.add("mail.example.com", "A", GOOD_IP)
    dns.add(PTR_BAD, "PTR", "forged.example.com")  # no address: iprev=fail
    return dns


def send(
    session: Session, ip: str, *, auth: str | None = None, message: bytes | None = None
) -> Decision:
    return run_session(
        session,
        parse_message(message or sign(simple_message(), "example.com", "rsa")),
        client=("client.example", ipaddress.ip_address(ip), ""),
        helo="mail.example.com",
        mail_from="alice@example.com",
        rcpts=["bob@example.org"],
        auth_user=auth,
        queue_id="Q1",
    )


def ar_of(session: Session, ip: str, **kw: object) -> str:
    decision = send(session, ip, **kw)  # type: ignore[arg-type]
    values = [h.value for h in decision.add_headers if h.name == "Authentication-Results"]
    assert len(values) == 1 and values[0] is not None
    return str(values[0])


def test_pass_is_reported_in_the_ar_and_the_log_line(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, "authmilter")
    dns = zone()
    session = Session(make_engine(dns), "7")
    value = ar_of(session, GOOD_IP)
    assert value.startswith(
        "mx.test;\n\tiprev=pass policy.iprev=192.0.2.25 (mail.example.com);\n\tspf=pass"
    )
    assert session.results is not None and session.results.iprev is not None
    assert session.results.iprev.result == Result.PASS
    assert " iprev=pass(mail.example.com) spf=pass(" in session.last_line
    assert dns.queries.count((PTR_GOOD, "PTR")) == 1  # once per message


def test_fail_is_reported_only_by_default() -> None:
    session = Session(make_engine(zone()), "7")
    decision = send(session, BAD_IP)  # signed: DKIM passes, DMARC passes
    assert (decision.action, decision.why) == (Action.ACCEPT, "")
    assert " iprev=fail spf=fail(" in session.last_line


def test_each_message_of_a_connection_gets_its_own_result() -> None:
    dns = zone()
    session = Session(make_engine(dns), "7")
    send(session, GOOD_IP)
    send(session, GOOD_IP)
    assert dns.queries.count((PTR_GOOD, "PTR")) == 2


def test_reject_fail_refuses_at_rcpt_with_5_7_25(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, "authmilter")
    session = Session(make_engine(zone(), iprev={"reject_fail": True}), "7")
    decision = send(session, BAD_IP)
    assert decision.action == Action.REJECT
    reply = decision.reply
    assert (reply.code, reply.status) == (550, "5.7.25")
    assert reply.text == "reverse DNS validation failed: no PTR name of 203.0.113.9 resolves back"
    assert session.last_line.endswith("why=iprev:fail@rcpt action=reject(550 5.7.25)")
    assert session.results is None  # refused at RCPT: the message was never evaluated


def test_reject_fail_never_refuses_a_client_without_ptr() -> None:
    """No PTR at all is permerror: never rejected (that is Postfix's own, blunter check)."""
    session = Session(make_engine(zone(), iprev={"reject_fail": True}), "7")
    other = "198.51.100.7"  # no PTR: iprev=permerror
    decision = send(session, other, message=sign(simple_message(), "example.com", "rsa"))
    assert decision.action == Action.ACCEPT
    assert " iprev=permerror " in session.last_line


def test_roaming_user_with_broken_reverse_dns_is_never_checked() -> None:
    """A SASL user on a hotel network whose address's PTR does not resolve back: no iprev
    lookup, no reject, even with reject_fail on."""
    dns = zone()
    session = Session(make_engine(dns, iprev={"reject_fail": True}), "7")
    decision = send(session, BAD_IP, auth="alice")
    assert decision.action == Action.ACCEPT
    assert session.results is not None and session.results.iprev is None
    assert "iprev" not in session.last_line
    assert (PTR_BAD, "PTR") not in dns.queries


def test_internal_hosts_and_disabled_and_no_address_are_not_checked() -> None:
    dns = zone()
    internal = make_engine(dns, trust={"internal_hosts": [f"{BAD_IP}/32"]})
    off = make_engine(dns, iprev={"enabled": False})
    env = Envelope(client_ip=ipaddress.ip_address(BAD_IP), mail_from="a@example.com")
    assert internal.check_client(env) is None
    assert off.check_client(env) is None
    assert make_engine(dns).check_client(Envelope(mail_from="a@example.com")) is None
    assert not [q for q in dns.queries if q[1] == "PTR"]
    found = make_engine(dns).check_client(env)
    assert found is not None and found.result == Result.FAIL


def test_engine_evaluate_without_the_mail_from_stage_computes_it() -> None:
    dns = zone()
    eng = make_engine(dns)
    env = Envelope(
        client_ip=ipaddress.ip_address(GOOD_IP),
        helo="mail.example.com",
        mail_from="alice@example.com",
        rcpt_to=("bob@example.org",),
    )
    results, _ = eng.evaluate(parse_message(sign(simple_message(), "example.com", "rsa"), env))
    assert results.iprev is not None and results.iprev.name == "mail.example.com"
