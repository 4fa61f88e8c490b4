"""What a decided message records (reports/rows.py), the DMARC record and override it uses."""

from __future__ import annotations

import ipaddress
from typing import Any

import pytest

from authmilter.config import ReportsConfig
from authmilter.decision import Action, Decision
from authmilter.model import Envelope, Transaction, parse_message
from authmilter.reports.history import DkimAuth, SpfAuth
from authmilter.reports.rows import excluded, history_row
from authmilter.results import AuthResults
from authmilter.staticresolver import StaticResolver
from authmilter.trust import Trust
from tests.support.engines import BAD_IP, GOOD_IP, make_engine
from tests.support.keys import dkim_record, sign, simple_message

REPORTS = ReportsConfig()
NOW = 1_780_000_123.7


def zone(dmarc: str = "v=DMARC1; p=reject; rua=mailto:agg@example.com") -> StaticResolver:
    return StaticResolver(
        {
            ("example.com", "TXT"): [f"v=spf1 ip4:{GOOD_IP} -all"],
            ("_dmarc.example.com", "TXT"): [dmarc],
            ("rsa._domainkey.example.com", "TXT"): [dkim_record("rsa")],
            ("example.com", "A"): [GOOD_IP],
        }
    )


def run(
    message: bytes,
    ip: str = BAD_IP,
    resolver: StaticResolver | None = None,
    mail_from: str = "bounce@example.com",
    **sections: Any,
) -> tuple[Transaction, AuthResults, Decision]:
    engine = make_engine(resolver or zone(), **sections)
    env = Envelope(
        client_ip=ipaddress.ip_address(ip),
        helo="client.example",
        mail_from=mail_from,
        rcpt_to=("bob@Example.ORG",),
    )
    tx = parse_message(message, env)
    results, decision = engine.evaluate(tx)
    return tx, results, decision


def test_a_dmarc_fail_rejected_records_its_row() -> None:
    tx, results, decision = run(simple_message())
    assert decision.action is Action.REJECT
    row = history_row(tx, results, decision, reports=REPORTS, host="mx.test", now=NOW)
    assert row is not None
    assert (row.time, row.source_ip, row.host) == (1_780_000_123, BAD_IP, "mx.test")
    assert (row.envelope_from, row.header_from, row.envelope_to) == (
        "example.com",
        "example.com",
        "example.org",
    )
    assert (row.disposition, row.dmarc_dkim, row.dmarc_spf, row.override) == (
        "reject",
        "fail",
        "fail",
        "",
    )
    assert row.spf == SpfAuth("example.com", "mfrom", "fail")
    assert row.dkim == ()
    policy = row.policy
    assert (policy.domain, policy.p, policy.rua, policy.discovery_method) == (
        "example.com",
        "reject",
        ("mailto:agg@example.com",),
        "treewalk",
    )
    assert (policy.sp, policy.np, policy.testing, policy.psd) == ("", "", "n", "u")


def test_a_pass_is_disposition_pass_with_every_dkim() -> None:
    message = sign(simple_message(), "example.com", "rsa")
    message = sign(message, "other.example", "nokey")
    tx, results, decision = run(message, ip=GOOD_IP)
    row = history_row(tx, results, decision, reports=REPORTS, host="mx.test", now=NOW)
    assert row is not None
    assert (row.disposition, row.dmarc_dkim, row.dmarc_spf) == ("pass", "pass", "pass")
    assert sorted(row.dkim, key=lambda d: d.domain) == [
        DkimAuth("example.com", "rsa", "pass"),
        DkimAuth("other.example", "nokey", "permerror"),
    ]


def test_testing_mode_overrides_with_policy_test_mode() -> None:
    tx, results, decision = run(simple_message(), resolver=zone("v=DMARC1; p=reject; t=y"))
    assert decision.action is Action.ACCEPT
    assert decision.dmarc_override == "policy_test_mode"
    row = history_row(tx, results, decision, reports=REPORTS, host="mx.test", now=NOW)
    assert row is not None
    assert (row.disposition, row.override, row.policy.testing) == ("none", "policy_test_mode", "y")


@pytest.mark.parametrize(
    ("dmarc", "applied"),
    [
        ({"reject": False, "quarantine": "header"}, "quarantine"),
        ({"reject": False, "quarantine": "none"}, "none"),
    ],
)
def test_local_policy_when_less_than_p_was_applied(dmarc: dict[str, Any], applied: str) -> None:
    tx, results, decision = run(simple_message(), dmarc=dmarc)
    assert decision.dmarc_override == "local_policy"
    row = history_row(tx, results, decision, reports=REPORTS, host="mx.test", now=NOW)
    assert row is not None
    assert (row.disposition, row.override) == (applied, "local_policy")


def test_no_override_when_the_policy_was_applied_or_none_asked() -> None:
    assert run(simple_message())[2].dmarc_override == ""
    none = zone("v=DMARC1; p=none; rua=mailto:a@example.com")
    assert run(simple_message(), resolver=none)[2].dmarc_override == ""


def test_the_record_and_discovery_method_are_filled_in() -> None:
    _, results, _ = run(simple_message(), resolver=zone("v=DMARC1; p=quarantine; sp=none; fo=1"))
    assert results.dmarc is not None and results.dmarc.record is not None
    assert results.dmarc.discovery_method == "treewalk"
    assert results.dmarc.record.fo == "1"


def test_not_recorded() -> None:
    # no policy record
    tx, results, decision = run(simple_message("a@nodmarc.example"))
    assert history_row(tx, results, decision, reports=REPORTS, host="h", now=NOW) is None
    # our own users' mail
    tx, results, decision = run(simple_message())
    trusted = AuthResults(trusted=Trust.AUTHENTICATED, dmarc=results.dmarc)
    assert history_row(tx, trusted, decision, reports=REPORTS, host="h", now=NOW) is None
    # a tempfail comes back
    tempfail = Decision(Action.TEMPFAIL)
    assert history_row(tx, results, tempfail, reports=REPORTS, host="h", now=NOW) is None
    # excluded policy domains and their subdomains
    skip = ReportsConfig(exclude_domains=("Example.COM.",))
    assert history_row(tx, results, decision, reports=skip, host="h", now=NOW) is None
    # the reports we send ourselves (From: reports.email, default postmaster@authserv-id)
    ours = ReportsConfig(email="dmarc-reports@example.com")
    tx2, r2, d2 = run(simple_message("DMARC <Dmarc-Reports@example.com>"))
    assert history_row(tx2, r2, d2, reports=ours, host="h", now=NOW) is None
    assert history_row(tx2, r2, d2, reports=REPORTS, host="h", now=NOW) is not None
    tx3, r3, d3 = run(simple_message("postmaster@example.com"))
    assert history_row(tx3, r3, d3, reports=REPORTS, host="example.com", now=NOW) is None


def test_excluded() -> None:
    assert excluded("mail.example.com", ("example.com",))
    assert excluded("example.com", (" example.com ",))
    assert not excluded("badexample.com", ("example.com",))
    assert not excluded("example.com", ("",))
