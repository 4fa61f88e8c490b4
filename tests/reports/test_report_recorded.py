"""Done when: after mail has flowed through the real daemon (recording into SQLite, as by
default), ``authmilter report --dry-run --output DIR`` writes reports that validate against
the RFC 9990 XSD and whose counts add up to the messages recorded per domain."""

from __future__ import annotations

import gzip
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.reports.reportcheck import needs_parsedmarc, parsedmarc_read, validate
from tests.reports.reportsetup import by_domain, free_port, report, write_config
from tests.reports.test_daemon_history import GOOD_IP, config, send_all
from tests.support.daemon import AuthmilterDaemon
from tests.support.dnsserver import DnsServer
from tests.support.keys import DkimKey, new_rsa_key
from tests.support.mail import quoted, zone

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def key() -> DkimKey:
    return new_rsa_key(2048)


@pytest.fixture
def dns(dns_server: DnsServer, key: DkimKey) -> DnsServer:
    dns_server.add_zone(
        zone(
            "example.org",
            f'@ TXT "v=spf1 ip4:{GOOD_IP} -all"',
            '_dmarc TXT "v=DMARC1; p=reject; rua=mailto:dmarc@example.org,'
            'mailto:agg@reports.example.net!10m"',
            f"sel._domainkey TXT {quoted(key.txt)}",
            "$ORIGIN nodmarc.example.",
            f'@ TXT "v=spf1 ip4:{GOOD_IP} -all"',
            "$ORIGIN example.net.",
            '_dmarc TXT "v=DMARC1; p=none"',
            'example.org._report._dmarc.reports TXT "v=DMARC1"',
        )
    )
    return dns_server


def test_recorded_mail_makes_valid_reports_that_add_up(
    dns: DnsServer,
    key: DkimKey,
    tmp_path: Path,
    authmilter_daemon: Callable[..., AuthmilterDaemon],
) -> None:
    dsn = f"sqlite:///{tmp_path}/history.db"
    begin = int(time.time()) - 60
    daemon = authmilter_daemon(config(dns, dsn))
    verdicts = send_all(daemon, key, rounds=4)  # per round: 1 pass, 1 reject, 1 not recorded
    assert daemon.stop() == 0
    assert [v[0] for v in verdicts].count("reject") == 4
    cfg = write_config(tmp_path, dsn, free_port())
    out = tmp_path / "out"
    period = ["--begin", str(begin), "--end", str(int(time.time()) + 60)]
    code, result = report(
        "-c", str(cfg), *period, "--dry-run", "--output", str(out), "--nameserver", dns.address
    )
    assert code == 0, result
    got = by_domain(result)
    assert set(got) == {"example.org"}
    entry = got["example.org"]
    assert entry["status"] == "written"
    assert entry["messages"] == 8
    assert entry["sent_to"] == ["dmarc@example.org", "agg@reports.example.net"]
    xml = gzip.decompress((out / f"{entry['file']}.xml.gz").read_bytes())
    validate(xml)
    assert xml.count(b"<record>") == entry["records"] == 2
    assert b"<disposition>reject</disposition>" in xml
    assert b"<selector>sel</selector>" in xml
    assert (out / f"{entry['file']}.eml").exists()
    needs_parsedmarc()
    parsed = parsedmarc_read(xml)
    assert parsed is not None
    assert sum(r["count"] for r in parsed["records"]) == 8
    assert {r["policy_evaluated"]["disposition"] for r in parsed["records"]} == {"pass", "reject"}
