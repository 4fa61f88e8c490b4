"""The per-message log line cannot be split or forged from the message or the envelope.

Each case of :data:`tests.support.loglines.INJECTIONS` goes through a Session the way
``authmilter test`` and the adapter drive it; exactly one line is logged for the message,
printable, with one ``action=`` (its own) and none of the planted pairs.
"""

from __future__ import annotations

import ipaddress
import logging

import pytest

from authmilter.cli import run_session
from authmilter.logline import safe
from authmilter.model import parse_message
from authmilter.session import Session
from tests.support.engines import BAD_IP, make_engine
from tests.support.loglines import INJECTIONS, Injection, check_line

DOMAIN = "example.com"


@pytest.mark.parametrize("case", INJECTIONS, ids=lambda c: c.name)
def test_one_clean_line_per_message(case: Injection, caplog: pytest.LogCaptureFixture) -> None:
    session = Session(make_engine(), "7")
    with caplog.at_level(logging.INFO, logger="authmilter"):
        decision = run_session(
            session,
            parse_message(case.message(DOMAIN)),
            client=(case.client_name, ipaddress.ip_address(BAD_IP), ""),
            helo=case.helo,
            mail_from=case.text(case.mail_from, DOMAIN),
            rcpts=["bob@example.net"],
            auth_user=None,
            queue_id="Q1" + case.queue_id,
        )
    assert decision.action == "reject"
    lines = [r.getMessage() for r in caplog.records if r.name == "authmilter"]
    assert len(lines) == 1, lines
    assert lines[0].startswith(session.last_line + " ms=")
    check_line(lines[0])


@pytest.mark.parametrize(
    "text",
    ["a\r\nb", "a b", "a=b", "a\tb", "a\x00b", "a\x1b[2Jb", "a\u2028b", "a\x85b", "a\u202eb"],
)
def test_safe_leaves_one_token(text: str) -> None:
    out = safe(text)
    assert out.isprintable() and " " not in out and "=" not in out, repr(out)
    assert len(out) == len(text) and "?" in out  # each character kept or replaced
    assert safe("x" * 500) == "x" * 200
