"""Failure reports through the real daemon: a DMARC-failing message from a domain with
ruf= and fo=1, DNS from the loopback server, the report relay an SMTP sink. One report with
``reports.failure_reports`` on, none with it off, and the same verdict both ways."""

from __future__ import annotations

import email
import email.policy
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.daemon import AuthmilterDaemon
from tests.support.dnsserver import DnsServer
from tests.support.mail import make_message, zone
from tests.support.milterclient import MilterClient, Reply
from tests.support.smtpsink import SmtpSink

pytestmark = pytest.mark.integration

AUTHSERV = "mx.test.example"
FORGER = "203.0.113.9"  # not in example.org's SPF


@pytest.fixture(scope="module")
def dns() -> Iterator[DnsServer]:
    text = zone(
        "example.org",
        '@ TXT "v=spf1 ip4:192.0.2.10 -all"',
        '_dmarc TXT "v=DMARC1; p=reject; ruf=mailto:ruf@example.org; fo=1"',
    )
    with DnsServer(text) as server:
        yield server


@pytest.fixture
def sink() -> Iterator[SmtpSink]:
    with SmtpSink() as server:
        yield server


def run_one(dns: DnsServer, sink: SmtpSink, tmp: Path, on: bool) -> Reply:
    """One forged message through a daemon with failure reports on or off; the daemon is
    stopped (its queue drained) before this returns."""
    config = {
        "milter": {"authserv_id": AUTHSERV},
        "dns": {"nameservers": [dns.address], "timeout": 2.0},
        "trust": {"internal_hosts": []},
        "reports": {
            "failure_reports": on,
            "relay": f"smtp://127.0.0.1:{sink.port}",
            "email": "dmarc-reports@mx.test.example",
        },
    }
    raw = make_message(from_addr="ceo.secret@example.org", to_addr="victim@mx.test.example")
    with AuthmilterDaemon(tmp, config) as daemon, MilterClient(daemon.socket) as client:
        reply = client.send_message(
            raw,
            client_ip=FORGER,
            mail_from="ceo.secret@example.org",
            rcpts=("victim@mx.test.example",),
            queue_id="QFAIL1",
        )
        if on:
            sink.wait_for(1)
    return reply


def test_one_report_when_on_none_when_off_same_verdict(
    dns: DnsServer, sink: SmtpSink, tmp_path: Path
) -> None:
    off = run_one(dns, sink, tmp_path / "off", on=False)
    assert sink.messages == []  # the daemon has stopped: nothing is still queued
    on = run_one(dns, sink, tmp_path / "on", on=True)
    assert (on.action, on.text) == (off.action, off.text)
    assert on.code == 550 and "5.7.26" in on.text

    (report,) = sink.messages  # exactly one, after the daemon drained and stopped
    assert report.mail_from == "dmarc-reports@mx.test.example"
    assert report.rcpt_to == ("ruf@example.org",)
    msg = email.message_from_bytes(report.data, policy=email.policy.default)
    assert msg.get_content_type() == "multipart/report"
    assert msg.get_param("report-type") == "feedback-report"
    assert b"Feedback-Type: auth-failure\r\n" in report.data
    assert b"Auth-Failure: dmarc\r\n" in report.data
    assert b"Identity-Alignment: spf\r\n" in report.data  # SPF of example.org failed
    assert b"Source-IP: 203.0.113.9\r\n" in report.data
    assert b"Reported-Domain: example.org\r\n" in report.data
    assert b"Original-Envelope-Id: QFAIL1\r\n" in report.data
    assert b"ceo.secret" not in report.data and b"victim@" not in report.data  # redacted
    assert b"Subject: test message" in report.data  # the original's header fields


def test_workers_and_a_reload_keep_sending(dns: DnsServer, sink: SmtpSink, tmp_path: Path) -> None:
    """With two workers each has its own reporter (made after the fork); a reload keeps it."""
    config = {
        "milter": {"authserv_id": AUTHSERV, "workers": 2},
        "dns": {"nameservers": [dns.address], "timeout": 2.0},
        "trust": {"internal_hosts": []},
        "reports": {"failure_reports": True, "relay": f"smtp://127.0.0.1:{sink.port}"},
    }
    raw = make_message(from_addr="someone@example.org")
    with AuthmilterDaemon(tmp_path, config) as daemon:
        for n in range(3):
            if n == 2:
                daemon.reload()
                daemon.wait_for_log("reloaded")
            with MilterClient(daemon.socket) as client:
                reply = client.send_message(
                    raw, client_ip=FORGER, mail_from="someone@example.org", queue_id=f"Q{n}"
                )
            assert reply.code == 550
            sink.wait_for(n + 1)
    assert len(sink.messages) == 3
    ids = {m.message()["Message-ID"] for m in sink.messages}
    assert len(ids) == 3
