"""The failure report message (RFC 9991 over RFC 6591): fo= table, identity alignment,
redaction, and the structure as Python's email package reads it."""

from __future__ import annotations

import email
import email.policy
import ipaddress
import re
from email.message import EmailMessage

import pytest

from authmilter.checks.dmarc_record import parse_record
from authmilter.decision import Action, Decision, HeaderEdit
from authmilter.model import Envelope, parse_message
from authmilter.reports import afrf
from authmilter.results import AuthResults, DkimResult, DmarcResult, Result, SpfResult

ORIGINAL = (
    b"Received: from mail.attacker.example (mail.attacker.example [203.0.113.9])\r\n"
    b"\tby mx.test with ESMTP id ABC123 for <bob.victim@receiver.example>;\r\n"
    b"\tMon, 7 Dec 2026 05:00:00 +0000\r\n"
    b'From: "Alice Sender" <alice.secret@example.com>\r\n'
    b'To: bob.victim@receiver.example, "Carol" <"carol q"@receiver.example>\r\n'
    b"Cc: dave+tag@receiver.example\r\n"
    b"Reply-To: <eve_reply@elsewhere.example>\r\n"
    b"Subject: hello\r\n"
    b"Message-ID: <unique-id-123@example.com>\r\n"
    b"DKIM-Signature: v=1; a=rsa-sha256; d=example.com; s=sel; i=alice.secret@example.com;\r\n"
    b"\tbh=abc=; b=def=\r\n"
    b"\r\n"
    b"body never reported\r\n"
)
LOCAL_PARTS = ("alice.secret", "bob.victim", "carol q", "dave+tag", "eve_reply", "mallory")


def results(
    fo: str = "1",
    dkim: tuple[DkimResult, ...] = (),
    spf: Result = Result.FAIL,
    spf_domain: str = "example.com",
    record: str = "v=DMARC1; p=reject; ruf=mailto:ruf@example.com",
) -> AuthResults:
    parsed = parse_record(f"{record}; fo={fo}")
    return AuthResults(
        spf=SpfResult(spf, domain=spf_domain),
        dkim=dkim,
        dmarc=DmarcResult(
            Result.FAIL,
            from_domain="example.com",
            org_domain="example.com",
            policy_domain="example.com",
            record=parsed,
        ),
    )


def transaction(redact: str = "headers") -> tuple[bytes, EmailMessage]:
    env = Envelope(
        client_ip=ipaddress.ip_address("203.0.113.9"),
        mail_from="mallory@attacker.example",
        rcpt_to=("bob.victim@receiver.example",),
        queue_id="ABC123",
    )
    tx = parse_message(ORIGINAL, env)
    decision = Decision(
        Action.REJECT,
        add_headers=(HeaderEdit("Authentication-Results", " mx.test;\n\tdmarc=fail"),),
    )
    ctx = afrf.ReportContext("dmarc-reports@mx.test", "mx.test", redact)
    dkim = (DkimResult(Result.FAIL, "example.com", "sel", identity="alice.secret@example.com"),)
    data = afrf.build_report(tx, results(dkim=dkim), decision, ["ruf@example.com"], ctx)
    msg = email.message_from_bytes(data, policy=email.policy.default)
    assert isinstance(msg, EmailMessage)
    return data, msg


DKIM_FAIL = DkimResult(Result.FAIL, "example.com", "sel")
DKIM_OTHER_FAIL = DkimResult(Result.FAIL, "other.example", "x")
DKIM_PERMERROR = DkimResult(Result.PERMERROR, "other.example", "x")
DKIM_PASS_UNALIGNED = DkimResult(Result.PASS, "other.example", "x")


@pytest.mark.parametrize(
    ("fo", "dkim", "spf", "wanted"),
    [
        ("0", (), Result.NONE, True),  # DMARC fail: no aligned pass at all
        ("1", (DKIM_PASS_UNALIGNED,), Result.PASS, True),
        ("d", (), Result.FAIL, False),  # no signature failed
        ("d", (DKIM_PASS_UNALIGNED,), Result.FAIL, False),
        ("d", (DKIM_OTHER_FAIL,), Result.NONE, True),  # regardless of alignment
        ("d", (DKIM_PERMERROR,), Result.NONE, True),
        ("s", (), Result.FAIL, True),
        ("s", (), Result.PERMERROR, True),
        ("s", (), Result.SOFTFAIL, False),
        ("s", (DKIM_FAIL,), Result.NONE, False),
        ("d:s", (), Result.FAIL, True),
        ("d:s", (DKIM_FAIL,), Result.PASS, True),
        ("d:s", (), Result.SOFTFAIL, False),
        ("s : d", (DKIM_FAIL,), Result.PASS, True),  # spaces around values
        ("x:y", (), Result.NONE, True),  # nothing valid: the default, 0
        ("", (), Result.NONE, True),
    ],
)
def test_fo_table(fo: str, dkim: tuple[DkimResult, ...], spf: Result, wanted: bool) -> None:
    r = results(fo=fo, dkim=dkim, spf=spf)
    assert r.dmarc is not None and r.dmarc.record is not None
    assert afrf.wants_report(r.dmarc.record.fo, r) is wanted


@pytest.mark.parametrize(
    ("dkim", "spf", "spf_domain", "adkim", "methods"),
    [
        ((DKIM_FAIL,), Result.PASS, "other.example", "r", ("dkim",)),
        ((DkimResult(Result.FAIL, "news.example.com", "s"),), Result.NONE, "", "r", ("dkim",)),
        ((DkimResult(Result.FAIL, "news.example.com", "s"),), Result.NONE, "", "s", ()),
        ((DKIM_OTHER_FAIL,), Result.FAIL, "attacker.example", "r", ()),  # a plain spoof
        ((), Result.FAIL, "bounce.example.com", "r", ("spf",)),
        ((DKIM_FAIL,), Result.SOFTFAIL, "example.com", "r", ("dkim", "spf")),
    ],
)
def test_identity_alignment(
    dkim: tuple[DkimResult, ...], spf: Result, spf_domain: str, adkim: str, methods: tuple[str, ...]
) -> None:
    r = results(
        dkim=dkim, spf=spf, spf_domain=spf_domain, record=f"v=DMARC1; p=reject; adkim={adkim}"
    )
    found, signature = afrf.identity_alignment(r)
    assert found == methods
    assert (signature is not None) == ("dkim" in methods)


def test_report_structure_and_required_fields() -> None:
    data, msg = transaction()
    assert b"\r\n" in data and b"\n" not in data.replace(b"\r\n", b"")
    assert msg.get_content_type() == "multipart/report"
    assert msg.get_param("report-type") == "feedback-report"
    assert msg["From"] == "dmarc-reports@mx.test"
    assert msg["To"] == "ruf@example.com"
    assert msg["Auto-Submitted"] == "auto-generated"
    assert msg["Message-ID"].endswith("@mx.test>")
    parts = list(msg.iter_parts())
    assert [p.get_content_type() for p in parts] == [
        "text/plain",
        "message/feedback-report",
        "text/rfc822-headers",
    ]
    # message/feedback-report: the fields as an RFC 5322 header block
    body = data.split(b"Content-Type: message/feedback-report\r\n", 1)[1].split(b"\r\n\r\n")[1]
    report = email.message_from_bytes(body)
    assert report["Feedback-Type"] == "auth-failure"
    assert report["Version"] == "1"
    assert report["User-Agent"].startswith("authmilter/")
    assert report["Auth-Failure"] == "dmarc"
    assert report["Identity-Alignment"] == "dkim, spf"
    assert report["Authentication-Results"] == "mx.test; dmarc=fail"
    assert report["DKIM-Domain"] == "example.com"
    assert report["DKIM-Selector"] == "sel"
    assert report["Reported-Domain"] == "example.com"
    assert report["Source-IP"] == "203.0.113.9"
    assert report["Original-Envelope-Id"] == "ABC123"
    assert report["Delivery-Result"] == "reject"
    assert report["Arrival-Date"]
    assert report["Original-Mail-From"].endswith("@attacker.example>")
    assert report.get_all("Original-Rcpt-To") is None  # never our users, when redacted
    for name in ("Feedback-Type", "Version", "Auth-Failure", "Identity-Alignment"):
        assert len(report.get_all(name)) == 1, name
    # the original's header block, never its body
    original = parts[2].get_content()
    assert "Subject: hello" in original
    assert "Message-ID: <unique-id-123@example.com>" in original  # message ids are kept
    assert b"body never reported" not in data


def test_headers_mode_redacts_every_local_part() -> None:
    data, _ = transaction("headers")
    text = data.decode("ascii")
    for local in LOCAL_PARTS:
        assert local not in text, local
    assert "redacted-" in text
    assert "@receiver.example" in text  # domains stay: the owner sees where mail went
    assert "Alice Sender" in text  # display names are not addresses
    # the same address is redacted to the same text (correlation without disclosure)
    assert len(set(re.findall(r"redacted-[0-9a-f]{12}@receiver\.example", text))) == 3


def test_full_mode_keeps_the_header_block_as_received() -> None:
    data, msg = transaction("full")
    original = list(msg.iter_parts())[2].get_content().encode("ascii")
    expected = ORIGINAL.split(b"\r\n\r\n")[0] + b"\r\n"
    assert original.replace(b"\r\n", b"\n") == expected.replace(b"\r\n", b"\n")
    assert b"Original-Rcpt-To: <bob.victim@receiver.example>" in data
    assert b"Original-Mail-From: <mallory@attacker.example>" in data
    assert b"DKIM-Identity: alice.secret@example.com" in data


def test_eight_bit_headers_are_quoted_printable_and_round_trip() -> None:
    tx = parse_message("From: Jörg <jörg@example.com>\r\nSubject: ü\r\n\r\n".encode(), Envelope())
    ctx = afrf.ReportContext("r@mx.test", "mx.test", "full")
    data = afrf.build_report(tx, results(), Decision(), ["ruf@example.com"], ctx)
    assert data.isascii()
    part = list(afrf.to_email_message(data).iter_parts())[2]
    assert part["Content-Transfer-Encoding"] == "quoted-printable"
    assert (
        part.get_payload(decode=True) == "From: Jörg <jörg@example.com>\r\nSubject: ü\r\n".encode()
    )


def test_report_survives_the_relay_serialisation() -> None:
    data, _ = transaction()
    message = afrf.to_email_message(data)
    out = message.as_bytes(policy=email.policy.SMTP)
    again = email.message_from_bytes(out)
    assert again.get_content_type() == "multipart/report"
    assert b"Identity-Alignment: dkim, spf\r\n" in out
    assert again.is_multipart()
    assert [p.get_content_type() for p in again.get_payload()] == [  # type: ignore[union-attr]
        "text/plain",
        "message/feedback-report",
        "text/rfc822-headers",
    ]
