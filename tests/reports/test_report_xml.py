"""reports/aggregate.py and reports/message.py: RFC 9990 XML, file name, report id, message."""

from __future__ import annotations

import email
import email.policy
import gzip

import pytest

from authmilter.reports.aggregate import (
    GENERATOR,
    ReportMeta,
    file_name,
    gzipped,
    render_gzipped,
    render_xml,
    report_id,
)
from authmilter.reports.history import DkimAuth, PublishedPolicy, SpfAuth
from authmilter.reports.message import build_message
from tests.reports.reportcheck import aggregate, group, needs_parsedmarc, parsedmarc_read, validate

META = ReportMeta("Example Receiver", "dmarc-reports@receiver.example", "20261206.abc123")


def test_full_report_validates_and_reads_back() -> None:
    agg = aggregate(
        group(5),
        group(
            2,
            "2001:db8::1",
            disposition="reject",
            dmarc_dkim="fail",
            dmarc_spf="fail",
            dkim=(
                DkimAuth("example.com", "s1", "fail"),
                DkimAuth("thirdparty.example", "sel<&>", "pass"),
            ),
            spf=SpfAuth("bounce.example.org", "mfrom", "softfail"),
        ),
        group(
            1,
            "192.0.2.9",
            disposition="none",
            dmarc_dkim="fail",
            dmarc_spf="fail",
            override="trusted_forwarder",
            override_comment="ARC from lists.example, trusted sealer",
        ),
        group(3, "198.51.100.7", envelope_from="", dkim=(), spf=None),  # null sender, unsigned
        group(1, "198.51.100.8", override="policy_test_mode", override_comment=""),
        group(1, "198.51.100.9", override="made_up", header_from="a\x00b\x1fc.example"),
    )
    meta = ReportMeta(
        'Example "Receiver" & Co', "dmarc@receiver.example", "r1", "https://x/?a=1&b=2"
    )
    xml = render_xml(agg, meta)
    validate(xml)
    text = xml.decode()
    assert "urn:ietf:params:xml:ns:dmarc-2.0" in text and "<version>1.0</version>" in text
    assert f"<generator>{GENERATOR}</generator>" in text
    assert "<pct>" not in text and "<np>reject</np>" in text and "<testing>n</testing>" in text
    assert "<discovery_method>treewalk</discovery_method>" in text
    assert "<type>other</type>" in text  # an override outside RFC 9990's list
    assert "sel&lt;&amp;&gt;" in text
    needs_parsedmarc()
    report = parsedmarc_read(xml)
    assert report is not None
    assert report["report_metadata"]["report_id"] == "r1"
    assert report["policy_published"]["domain"] == "example.com"
    assert len(report["records"]) == 6
    assert sum(r["count"] for r in report["records"]) == 13
    assert {r["source"]["ip_address"] for r in report["records"]} >= {"2001:db8::1", "192.0.2.9"}


def test_minimal_policy_and_no_extra_contact() -> None:
    policy = PublishedPolicy(domain="example.org", p="none", rua=("mailto:d@example.org",))
    xml = render_xml(aggregate(group(1, header_from="example.org"), policy=policy), META)
    validate(xml)
    assert b"<sp>" not in xml and b"<extra_contact_info>" not in xml


def test_no_records_is_refused() -> None:
    with pytest.raises(ValueError, match="no records"):
        render_xml(aggregate(), META)


def test_report_id_is_deterministic_and_unique_per_period() -> None:
    a = report_id("org", "example.com", 100, 200)
    assert a == report_id("org", "Example.com", 100, 200)
    assert (
        len(
            {
                a,
                report_id("org", "example.com", 200, 300),
                report_id("o2", "example.com", 100, 200),
                report_id("org", "example.net", 100, 200),
            }
        )
        == 4
    )
    assert a.startswith("19700101.")


def test_file_name_follows_rfc9990() -> None:
    agg = aggregate(group(1))
    meta = ReportMeta("org", "dmarc@Receiver.Example", "20261206.00ff")
    assert file_name(meta, agg) == "receiver.example!example.com!1796515200!1796601600!2026120600ff"


def test_gzip_is_deterministic() -> None:
    xml = render_xml(aggregate(group(2)), META)
    assert gzipped(xml) == gzipped(xml)
    assert gzip.decompress(gzipped(xml)) == xml
    assert render_gzipped(aggregate(group(2)), META) == gzipped(xml)
    many = aggregate(*(group(n + 1, f"10.0.{n // 256}.{n % 256}") for n in range(3000)))
    assert render_gzipped(many, META) == gzipped(render_xml(many, META))


def test_message_structure() -> None:
    agg = aggregate(group(4))
    gz = gzipped(render_xml(agg, META))
    name = file_name(META, agg)
    msg = build_message(
        agg, META, ["a@example.com", "b@example.net"], gz, name=name, now=1796601700
    )
    parsed = email.message_from_bytes(msg.as_bytes(), policy=email.policy.default)
    assert parsed["From"] == "dmarc-reports@receiver.example"
    assert parsed["To"] == "a@example.com, b@example.net"
    assert parsed["Subject"] == (
        "Report Domain: example.com Submitter: receiver.example Report-ID: <20261206.abc123>"
    )
    assert parsed["Message-ID"] == "<20261206.abc123.example.com@receiver.example>"
    assert parsed["Date"]
    parts = list(parsed.iter_parts())
    assert [p.get_content_type() for p in parts] == ["text/plain", "application/gzip"]
    assert "4 message(s)" in parts[0].get_content()
    assert parts[1].get_filename() == f"{name}.xml.gz"
    assert parts[1].get_content_disposition() == "attachment"
    validate(gzip.decompress(parts[1].get_content()))
