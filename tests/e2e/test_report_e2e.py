"""End to end: ``authmilter report`` sends through the real private Postfix, where the real
daemon DKIM-signs the report, to the SMTP sink (RFC 9990 message, signature verified)."""

from __future__ import annotations

import email
import email.policy
import gzip
from collections.abc import Callable
from pathlib import Path
from typing import Any

import dkim
import pytest

from authmilter.dnsresolver import DnspythonResolver
from tests.reports.reportcheck import validate
from tests.reports.reportsetup import PERIOD, by_domain, fill, report, rows, write_config
from tests.support.daemon import AuthmilterDaemon
from tests.support.dnsserver import DnsServer
from tests.support.keys import new_rsa_key
from tests.support.mail import quoted, zone
from tests.support.postfix import PostfixInstance
from tests.support.smtpsink import SmtpSink

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


def test_report_goes_through_postfix_and_is_dkim_signed(  # noqa: PLR0917
    dns_server: DnsServer,
    shared_dir: Path,
    tmp_path: Path,
    smtp_sink: SmtpSink,
    authmilter_daemon: Callable[..., AuthmilterDaemon],
    postfix: Callable[..., PostfixInstance],
) -> None:
    key = new_rsa_key(2048)
    dns_server.add_zone(
        zone(
            "receiver.example",
            '@ TXT "v=spf1 ip4:127.0.0.1 -all"',
            '_dmarc TXT "v=DMARC1; p=reject"',
            f"rep._domainkey TXT {quoted(key.txt)}",
            "$ORIGIN example.com.",
            '_dmarc TXT "v=DMARC1; p=reject; rua=mailto:dmarc@example.com"',
        )
    )
    key_file = key.write(shared_dir / "rep.private")
    daemon_cfg: dict[str, Any] = {
        "milter": {"authserv_id": "mx.receiver.example"},
        "dns": {"nameservers": [dns_server.address], "timeout": 2.0},
        "trust": {"internal_hosts": ["127.0.0.1/32"]},  # the report runs on this host
        "signing": {
            "keys": [{"domain": "receiver.example", "selector": "rep", "key_file": str(key_file)}]
        },
        "reports": {"history": ""},
    }
    daemon = authmilter_daemon(daemon_cfg, shared=True)
    pf = postfix(daemon.socket, smtp_sink.port)
    dsn = f"sqlite:///{tmp_path}/history.db"
    fill(dsn, rows({"example.com": [("192.0.2.1", 3), ("192.0.2.2", 2)]}))
    cfg = write_config(tmp_path, dsn, pf.port)
    code, result = report("-c", str(cfg), *PERIOD, "--nameserver", dns_server.address)
    assert code == 0, result
    entry = by_domain(result)["example.com"]
    assert entry["status"] == "sent"
    (msg,) = smtp_sink.wait_for(1, timeout=60)
    assert msg.rcpt_to == ("dmarc@example.com",)
    resolver = DnspythonResolver([dns_server.address], timeout=2)

    def dnsfunc(name: bytes, timeout: float = 5) -> bytes:
        return b"".join(resolver.query(name.decode(), "TXT").txt())

    text = msg.data.decode(errors="replace")
    assert dkim.verify(msg.data, dnsfunc=dnsfunc), (text, pf.maillog(), daemon.log())
    assert "d=receiver.example" in msg.header_values("DKIM-Signature")[0].replace(" ", "")
    parsed = email.message_from_bytes(msg.data, policy=email.policy.default)
    assert parsed["Subject"].endswith(f"Report-ID: <{entry['report_id']}>")
    attachment = next(p for p in parsed.iter_attachments())
    xml = gzip.decompress(attachment.get_content())
    validate(xml)
    assert b"<count>3</count>" in xml and b"<count>2</count>" in xml
