"""The per-message Session that the adapter and ``authmilter test`` both drive."""

from __future__ import annotations

import ipaddress
import logging

import pytest

from authmilter.decision import Action
from authmilter.engine import Engine
from authmilter.model import parse_message
from authmilter.session import Session
from tests.support.engines import BAD_IP, GOOD_IP, make_engine
from tests.support.keys import sign, simple_message


def feed(
    session: Session, raw: bytes, ip: str = GOOD_IP, mail_from: str = "<alice@example.com>"
) -> None:
    session.connect("client.example", ipaddress.ip_address(ip), "")
    session.helo("mail.example.com")
    session.mail_from(mail_from, None, "Q1")
    assert session.recipient("<bob@example.org>") is None
    tx = parse_message(raw)
    for h in tx.headers:
        session.header(h.name, h.value)
    session.end_of_headers()
    for i in range(0, len(tx.body), 5):
        session.body(tx.body[i : i + 5])


def test_a_message_then_another_on_the_same_connection(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, "authmilter")
    session = Session(make_engine(), "7")
    feed(session, sign(simple_message(), "example.com", "rsa"))
    first = session.end_of_message("Q1")
    assert first.action == Action.ACCEPT and first.add_headers
    feed(session, simple_message(), ip=BAD_IP)  # per-message state was reset at MAIL FROM
    second = session.end_of_message()
    assert second.action == Action.REJECT and second.add_headers == ()
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 2 and lines[1].startswith("qid=Q1 conn=7 client=client.example[")
    assert "why=dmarc:reject action=reject(550 5.7.26)" in lines[1]


@pytest.mark.parametrize("stage", ["check_envelope", "body_specs", "evaluate"])
def test_an_error_in_any_stage_is_one_451_and_one_traceback(
    stage: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    calls = []

    def boom(*_a: object, **_k: object) -> None:
        calls.append(stage)
        raise RuntimeError("boom")

    monkeypatch.setattr(Engine, stage, boom)
    session = Session(make_engine(), "1")
    feed(session, sign(simple_message(), "example.com", "rsa"))
    decision = session.end_of_message()
    assert decision.action == Action.TEMPFAIL and decision.reply is not None
    assert (decision.reply.code, decision.reply.status) == (451, "4.3.0")
    assert decision.add_headers == () and decision.why.startswith("internal-error:")
    assert calls == [stage]  # the first failure ends the message's work
    assert (
        sum("Traceback" in (r.exc_text or "") or r.exc_info is not None for r in caplog.records)
        == 1
    )


def test_on_error_accept_adds_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(*_a: object, **_k: object) -> None:
        raise RuntimeError("boom")

    monkeypatch.setattr(Engine, "evaluate", boom)
    session = Session(make_engine(milter={"on_error": "accept"}), "1")
    feed(session, simple_message())
    decision = session.end_of_message()
    assert (decision.action, decision.reply, decision.add_headers) == (Action.ACCEPT, None, ())
