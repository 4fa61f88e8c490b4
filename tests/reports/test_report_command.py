"""``authmilter report`` against the real store (SQLite and PostgreSQL), real loopback DNS and
an SMTP sink: dry run, sending, destinations, retries, exactly once."""

from __future__ import annotations

import email
import email.policy
import gzip
from collections import Counter
from pathlib import Path

import pytest

from authmilter.cli import main
from tests.reports.reportcheck import needs_parsedmarc, parsedmarc_read, validate
from tests.reports.reportsetup import (
    PERIOD,
    ROWS,
    ZONE,
    by_domain,
    fill,
    free_port,
    report,
    rows,
    write_config,
)
from tests.support.dnsserver import DnsServer
from tests.support.smtpsink import SmtpSink

REPORTED = {"example.com", "example.org"}


def report_ids(sink: SmtpSink) -> Counter[str]:
    """How many messages the sink got per Report-ID."""
    subjects = [
        email.message_from_bytes(m.data, policy=email.policy.default)["Subject"]
        for m in sink.messages
    ]
    return Counter(s.rsplit("Report-ID: ", 1)[1].strip("<>") for s in subjects)


def test_dry_run_writes_valid_reports_and_marks_nothing(history_dsn: str, tmp_path: Path) -> None:
    fill(history_dsn, rows())
    cfg = write_config(tmp_path, history_dsn, free_port())  # nobody listens: nothing is sent
    out = tmp_path / "out"
    with DnsServer(ZONE) as dns:
        code, result = report(
            "-c", str(cfg), *PERIOD, "--dry-run", "--output", str(out), "--nameserver", dns.address
        )
        assert code == 0
        got = by_domain(result)
        assert set(got) == REPORTED | {"excluded.example"}
        assert got["excluded.example"]["status"] == "skipped"
        assert "exclude_domains" in got["excluded.example"]["reason"]
        for domain in REPORTED:
            entry = got[domain]
            assert entry["status"] == "written"
            assert entry["messages"] == sum(n for _, n in ROWS[domain])
            assert entry["records"] == len(ROWS[domain])
            xml = gzip.decompress((out / f"{entry['file']}.xml.gz").read_bytes())
            validate(xml)
            assert xml.count(b"<record>") == entry["records"]
            eml = (out / f"{entry['file']}.eml").read_bytes()
            subject = email.message_from_bytes(eml, policy=email.policy.default)["Subject"]
            assert subject.endswith(f"Report-ID: <{entry['report_id']}>")
        assert got["example.org"]["sent_to"] == ["rua@reports.example.net"]
        assert "x@unauth.example" in got["example.org"]["reason"]
        assert "https" in got["example.org"]["reason"]
        assert len(list(out.iterdir())) == 4
        # nothing was marked: a second dry run reports the same, with the same ids
        code, again = report("-c", str(cfg), *PERIOD, "--dry-run", "--nameserver", dns.address)
    assert code == 0
    assert {d: e["report_id"] for d, e in by_domain(again).items()} == {
        d: e["report_id"] for d, e in got.items()
    }
    needs_parsedmarc()
    for domain in REPORTED:
        xml = gzip.decompress((out / f"{got[domain]['file']}.xml.gz").read_bytes())
        parsed = parsedmarc_read(xml)
        assert parsed is not None
        assert sum(r["count"] for r in parsed["records"]) == got[domain]["messages"]


def test_sends_once_to_the_sink(history_dsn: str, tmp_path: Path) -> None:
    fill(history_dsn, rows())
    with DnsServer(ZONE) as dns, SmtpSink() as sink:
        cfg = write_config(tmp_path, history_dsn, sink.port)
        code, result = report(
            "-c", str(cfg), *PERIOD, "--nameserver", dns.address, "--output", str(tmp_path / "sent")
        )
        assert code == 0
        got = by_domain(result)
        assert {d for d, e in got.items() if e["status"] == "sent"} == REPORTED
        assert len(sink.messages) == 2
        by_rcpt = {m.rcpt_to: m for m in sink.messages}
        assert set(by_rcpt) == {("dmarc@example.com",), ("rua@reports.example.net",)}
        msg = by_rcpt[("dmarc@example.com",)]
        assert msg.mail_from == "dmarc-reports@receiver.example"
        parsed = email.message_from_bytes(msg.data, policy=email.policy.default)
        assert parsed["Subject"] == (
            "Report Domain: example.com Submitter: receiver.example "
            f"Report-ID: <{got['example.com']['report_id']}>"
        )
        assert parsed["From"] == "dmarc-reports@receiver.example"
        assert parsed["Message-ID"] and parsed["Date"]
        parts = list(parsed.iter_parts())
        assert [p.get_content_type() for p in parts] == ["text/plain", "application/gzip"]
        assert parts[1].get_filename() == f"{got['example.com']['file']}.xml.gz"
        xml = gzip.decompress(parts[1].get_content())
        validate(xml)
        assert b"<count>7</count>" in xml
        assert (tmp_path / "sent" / f"{got['example.com']['file']}.eml").exists()
        # a second run finds both marked: nothing is sent again
        code, again = report("-c", str(cfg), *PERIOD, "--nameserver", dns.address)
        assert code == 0
        assert {e["status"] for e in by_domain(again).values()} == {"skipped"}
        assert len(sink.messages) == 2
        assert set(report_ids(sink).values()) == {1}


def test_relay_down_is_retried_with_the_same_id(history_dsn: str, tmp_path: Path) -> None:
    fill(history_dsn, rows())
    port = free_port()
    cfg = write_config(tmp_path, history_dsn, port)
    with DnsServer(ZONE) as dns:
        code, first = report("-c", str(cfg), *PERIOD, "--nameserver", dns.address)
        assert code == 75
        assert {by_domain(first)[d]["status"] for d in REPORTED} == {"retry"}
        with SmtpSink(port=port) as sink:
            code, second = report("-c", str(cfg), *PERIOD, "--nameserver", dns.address)
            assert code == 0
            assert {by_domain(second)[d]["status"] for d in REPORTED} == {"sent"}
            ids = report_ids(sink)
    assert ids == Counter({by_domain(first)[d]["report_id"]: 1 for d in REPORTED})


def test_dns_temperror_is_retried_never_sent_anyway(history_dsn: str, tmp_path: Path) -> None:
    fill(history_dsn, rows({"example.org": [("198.51.100.1", 2)]}))
    with DnsServer(ZONE) as dns, SmtpSink() as sink:
        cfg = write_config(tmp_path, history_dsn, sink.port)
        dns.set_fault("example.org._report._dmarc.reports.example.net", "servfail")
        code, first = report("-c", str(cfg), *PERIOD, "--nameserver", dns.address)
        assert code == 75
        entry = by_domain(first)["example.org"]
        assert entry["status"] == "retry" and "temperror" in entry["reason"]
        assert sink.messages == []
        dns.clear_faults()
        code, second = report("-c", str(cfg), *PERIOD, "--nameserver", dns.address)
        assert code == 0
        assert by_domain(second)["example.org"]["status"] == "sent"
        assert report_ids(sink) == Counter({entry["report_id"]: 1})


def test_migrate_and_config_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    dsn = f"sqlite:///{tmp_path}/h.db"
    cfg = write_config(tmp_path, dsn, free_port())
    assert main(["report", "-c", str(cfg), "--migrate"]) == 0
    assert "schema version" in capsys.readouterr().out
    (tmp_path / "off.toml").write_text('[reports]\nhistory = ""\n')
    assert main(["report", "-c", str(tmp_path / "off.toml")]) == 78
    assert "reports.history" in capsys.readouterr().err
    unreachable = write_config(tmp_path, "postgresql:///x?host=/nonexistent/dir", free_port())
    pytest.importorskip("psycopg", reason="psycopg 3 not installed")
    assert main(["report", "-c", str(unreachable), *PERIOD]) == 78
    assert "reports.history" in capsys.readouterr().err
    assert main(["report", "-c", str(cfg), "--begin", "5"]) == 2


def test_nothing_recorded_is_nothing_to_do(tmp_path: Path) -> None:
    cfg = write_config(tmp_path, f"sqlite:///{tmp_path}/h.db", free_port())
    assert report("-c", str(cfg), *PERIOD) == (0, {"reports": []})
