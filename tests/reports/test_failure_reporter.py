"""The failure report observer: which messages are reported, the rate limit, destination
authorisation, a relay that is down, the bounded queue, and a drained stop."""

from __future__ import annotations

import ipaddress
import socket
import threading
from collections.abc import Sequence
from email.message import EmailMessage
from typing import Any

import pytest

from authmilter.checks.dmarc_record import parse_record
from authmilter.config import Config, from_dict
from authmilter.decision import Action, Decision
from authmilter.model import Envelope, Transaction, parse_message
from authmilter.reports.failure import FailureReporter, RateLimit
from authmilter.reports.relay import Relay, RelayTempError
from authmilter.results import AuthResults, DmarcResult, Result, SpfResult
from authmilter.staticresolver import StaticResolver
from authmilter.trust import Trust
from tests.support.smtpsink import SmtpSink

RUF = "v=DMARC1; p=reject; ruf=mailto:ruf@{domain}; fo=1"


class Recorder:
    def __init__(self, fail: bool = False, gate: threading.Event | None = None) -> None:
        self.sent: list[tuple[EmailMessage, str, tuple[str, ...]]] = []
        self.fail = fail
        self.gate = gate

    def send(
        self, message: EmailMessage, sender: str, recipients: Sequence[str]
    ) -> dict[str, tuple[int, bytes]]:
        if self.gate is not None:
            self.gate.wait(10)
        if self.fail:
            raise RelayTempError("relay down")
        self.sent.append((message, sender, tuple(recipients)))
        return {}


def config(**reports: Any) -> Config:
    return from_dict(
        {
            "milter": {"authserv_id": "mx.test"},
            "reports": {"failure_reports": True, "email": "dmarc@mx.test", **reports},
        }
    )


def reporter(
    relay: Any = None, resolver: StaticResolver | None = None, clock: Any = None, **reports: Any
) -> FailureReporter:
    kwargs: dict[str, Any] = {} if clock is None else {"clock": clock}
    return FailureReporter(
        config(**reports),
        relay if relay is not None else Recorder(),
        resolver if resolver is not None else StaticResolver({}),
        **kwargs,
    )


def failing(
    domain: str = "example.com",
    record: str | None = None,
    trusted: Trust | None = None,
    dmarc: Result = Result.FAIL,
    headers: bytes = b"",
) -> tuple[Transaction, AuthResults]:
    env = Envelope(
        client_ip=ipaddress.ip_address("203.0.113.9"),
        mail_from=f"someone@{domain}",
        rcpt_to=("user@mx.test",),
    )
    tx = parse_message(headers + f"From: a@{domain}\r\nSubject: x\r\n\r\nbody\r\n".encode(), env)
    text = record if record is not None else RUF.format(domain=domain)
    results = AuthResults(
        spf=SpfResult(Result.FAIL, domain=domain),
        dmarc=DmarcResult(
            dmarc,
            from_domain=domain,
            org_domain=domain,
            policy_domain=domain,
            record=parse_record(text),
        ),
        trusted=trusted,
    )
    return tx, results


REJECT = Decision(Action.REJECT)


def test_one_failure_one_report() -> None:
    relay = Recorder()
    r = reporter(relay)
    r.observe(*failing(), REJECT)
    r.close(10)
    assert r.counts == {"sent": 1}
    ((message, sender, to),) = relay.sent
    assert sender == "dmarc@mx.test" and to == ("ruf@example.com",)
    assert message.get_content_type() == "multipart/report"


@pytest.mark.parametrize(
    ("case", "kwargs", "decision"),
    [
        ("off", {"failure_reports": False}, REJECT),
        ("excluded", {"exclude_domains": ["example.com"]}, REJECT),
        ("excluded parent", {"exclude_domains": ["com"]}, REJECT),
        ("tempfail", {}, Decision(Action.TEMPFAIL)),
    ],
)
def test_config_and_decision_that_send_nothing(
    case: str, kwargs: dict[str, Any], decision: Decision
) -> None:
    relay = Recorder()
    r = reporter(relay, **kwargs)
    r.observe(*failing(), decision)
    r.close(10)
    assert relay.sent == [] and r.counts == {}, case


@pytest.mark.parametrize(
    ("case", "kwargs"),
    [
        ("our own user", {"trusted": Trust.AUTHENTICATED}),
        ("dmarc pass", {"dmarc": Result.PASS}),
        ("dmarc none", {"dmarc": Result.NONE}),
        ("no ruf", {"record": "v=DMARC1; p=reject; fo=1"}),
        ("https ruf only", {"record": "v=DMARC1; p=reject; ruf=https://example.com/r"}),
        ("psd=y", {"record": "v=DMARC1; p=reject; psd=y; ruf=mailto:r@example.com"}),
        (
            "fo=d, no signature failed",
            {"record": "v=DMARC1; p=reject; ruf=mailto:r@example.com; fo=d"},
        ),
        (
            "a feedback report",
            {"headers": b"Content-Type: multipart/report; report-type=feedback-report\r\n"},
        ),
    ],
)
def test_messages_that_are_not_reported(case: str, kwargs: dict[str, Any]) -> None:
    relay = Recorder()
    r = reporter(relay)
    r.observe(*failing(**kwargs), REJECT)
    r.close(10)
    assert relay.sent == [] and r.counts == {}, case


def test_rate_limit_per_policy_domain_per_hour() -> None:
    now = [1000.0]
    relay = Recorder()
    r = reporter(relay, clock=lambda: now[0], failure_rate=3)
    for _ in range(10):
        r.observe(*failing("example.com"), REJECT)
    for _ in range(2):
        r.observe(*failing("other.example"), REJECT)
    now[0] += 3600  # a new window
    for _ in range(5):
        r.observe(*failing("example.com"), REJECT)
    r.close(10)
    assert r.counts == {"sent": 3 + 2 + 3, "rate_limited": 7 + 2}
    assert len(relay.sent) == 8


def test_rate_limit_tracks_a_bounded_number_of_domains() -> None:
    now = [0.0]
    limit = RateLimit(1, max_keys=3, clock=lambda: now[0])
    assert [limit.take(d) for d in ("a", "b", "c", "d", "a")] == [True, True, True, False, False]
    now[0] = 3600.0  # every window is over: the domains are forgotten
    assert [limit.take(d) for d in ("d", "e", "a")] == [True, True, True]


def test_zero_rate_sends_nothing() -> None:
    r = reporter(failure_rate=0)
    r.observe(*failing(), REJECT)
    r.close(10)
    assert r.counts == {"rate_limited": 1}


def test_unauthorised_external_destination_is_not_sent() -> None:
    dns = StaticResolver(
        {
            ("_dmarc.example.com", "TXT"): [RUF.format(domain="example.com")],
            ("example.com._report._dmarc.reports.example", "TXT"): ["v=DMARC1"],
        }
    )
    relay = Recorder()
    r = reporter(relay, dns)
    record = (
        "v=DMARC1; p=reject; fo=0; ruf=mailto:a@evil.example,mailto:b@example.com,"
        "mailto:c@reports.example,mailto:d@sub.example.com"
    )
    r.observe(*failing(record=record), REJECT)
    r.observe(*failing(record="v=DMARC1; p=reject; ruf=mailto:a@evil.example"), REJECT)
    r.close(10)
    assert [to for _, _, to in relay.sent] == [
        ("b@example.com", "c@reports.example", "d@sub.example.com")
    ]
    assert ("example.com._report._dmarc.evil.example", "TXT") in dns.queries
    assert r.counts == {"sent": 1, "unauthorized": 1}


def test_destination_temperror_drops_the_report() -> None:
    dns = StaticResolver(temperror=["example.com._report._dmarc.reports.example"])
    relay = Recorder()
    r = reporter(relay, dns)
    r.observe(*failing(record="v=DMARC1; p=reject; ruf=mailto:r@reports.example"), REJECT)
    r.close(10)
    assert relay.sent == [] and r.counts == {"dns_error": 1}


def test_relay_trouble_is_counted_never_raised() -> None:
    r = reporter(Recorder(fail=True))
    r.observe(*failing(), REJECT)  # returns at once, raises nothing
    r.close(10)
    assert r.counts == {"relay_error": 1}


def test_real_relay_that_is_down() -> None:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    relay = Relay.from_config(config(relay=f"smtp://127.0.0.1:{port}").reports)
    r = reporter(relay)
    r.observe(*failing(), REJECT)
    r.close(30)
    assert r.counts == {"relay_error": 1}


def test_real_relay_to_a_sink() -> None:
    with SmtpSink() as sink:
        relay = Relay.from_config(config(relay=f"smtp://127.0.0.1:{sink.port}").reports)
        r = reporter(relay)
        r.observe(*failing(), REJECT)
        r.close(30)
        (received,) = sink.messages
    assert r.counts == {"sent": 1}
    assert received.message().get_content_type() == "multipart/report"
    assert b"Feedback-Type: auth-failure" in received.data


def test_full_queue_drops_and_counts_never_blocks() -> None:
    gate = threading.Event()
    relay = Recorder(gate=gate)
    r = FailureReporter(config(failure_rate=100), relay, StaticResolver({}), queue_size=2)
    for _ in range(10):
        r.observe(*failing(), REJECT)
    gate.set()
    r.close(10)
    # one in the sender's hands, two waiting, the rest dropped
    assert r.counts["sent"] + r.counts["queue_full"] == 10
    assert 2 <= r.counts["sent"] <= 3
    assert len(relay.sent) == r.counts["sent"]


def test_close_drains_what_is_queued_and_then_takes_nothing() -> None:
    relay = Recorder()
    r = reporter(relay, failure_rate=100)
    for _ in range(20):
        r.observe(*failing(), REJECT)
    r.close(10)
    assert len(relay.sent) == 20
    r.observe(*failing(), REJECT)
    assert len(relay.sent) == 20 and r.counts == {"sent": 20}


def test_a_full_queue_is_logged_once_not_per_report(caplog: pytest.LogCaptureFixture) -> None:
    gate = threading.Event()
    r = FailureReporter(
        config(failure_rate=1000), Recorder(gate=gate), StaticResolver({}), queue_size=1
    )
    with caplog.at_level("WARNING", logger="authmilter"):
        for _ in range(50):
            r.observe(*failing(), REJECT)
    gate.set()
    r.close(10)
    assert r.counts["queue_full"] >= 45
    assert len([m for m in caplog.messages if "queue full" in m]) == 1
