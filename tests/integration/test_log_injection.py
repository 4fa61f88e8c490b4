"""The real daemon's log: one clean line per message, whatever the message and envelope say.

Every case of :data:`tests.support.loglines.INJECTIONS` goes to one daemon over the milter
protocol (header folds as Postfix sends them, LF); its stderr log must then hold exactly one
line per message, printable, with one ``action=`` (its own) and none of the planted pairs.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from tests.support.daemon import AuthmilterDaemon
from tests.support.dnsserver import DnsServer
from tests.support.loglines import INJECTIONS, check_line
from tests.support.mail import zone
from tests.support.milterclient import MilterClient

pytestmark = pytest.mark.integration

DOMAIN = "example.org"
BAD_IP = "198.51.100.7"  # not in example.org's SPF


def test_daemon_logs_one_clean_line_per_message(
    dns_server: DnsServer, authmilter_daemon: Callable[..., AuthmilterDaemon]
) -> None:
    dns_server.add_zone(
        zone(DOMAIN, '@ TXT "v=spf1 ip4:192.0.2.10 -all"', '_dmarc TXT "v=DMARC1; p=reject"')
    )
    daemon = authmilter_daemon(
        {
            "milter": {"authserv_id": "mx.test.example", "log_level": "info"},
            "dns": {"nameservers": [dns_server.address], "timeout": 1.5},
            "trust": {"internal_hosts": []},
        }
    )
    qids = [f"INJ{i:02d}" for i in range(len(INJECTIONS))]
    for qid, case in zip(qids, INJECTIONS, strict=True):
        with MilterClient(daemon.socket) as client:
            reply = client.send_message(
                case.message(DOMAIN),
                client_ip=BAD_IP,
                client_name=case.client_name,
                helo=case.helo,
                mail_from=case.text(case.mail_from, DOMAIN),
                rcpts=["bob@example.net"],
                queue_id=qid + case.queue_id,
                header_eol=b"\n",
            )
        assert reply.smtp_class == "reject", (case.name, reply, daemon.log())
    log = daemon.wait_for_log(f"qid={qids[-1]}")
    assert all(c == "\n" or c.isprintable() for c in log), repr(log)
    lines = log.splitlines()
    for qid, case in zip(qids, INJECTIONS, strict=True):
        mine = [line for line in lines if f" qid={qid}" in line]
        assert len(mine) == 1, (case.name, mine)
        check_line(mine[0].partition(" INFO ")[2])
    assert sum(" action=" in line for line in lines) == len(INJECTIONS), log
