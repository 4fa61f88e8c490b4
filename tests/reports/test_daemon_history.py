"""The real daemon records DMARC history: SQLite, workers, reloads, PostgreSQL, a stopped database.

Each test starts its own ``authmilter run`` (tests/support/daemon.py) with DNS from a
loopback server and sends messages over the milter protocol; rows are counted after a
clean stop (TERM), which writes out what is queued.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from authmilter.reports.store import open_store
from tests.support.daemon import AuthmilterDaemon
from tests.support.dnsserver import DnsServer
from tests.support.keys import DkimKey, new_rsa_key
from tests.support.mail import dkim_sign, make_message, quoted, zone
from tests.support.milterclient import MilterClient, Reply
from tests.support.postgres import PostgresCluster
from tests.support.procs import wait_for

pytestmark = pytest.mark.integration

GOOD_IP = "192.0.2.10"  # permitted by example.org's SPF
BAD_IP = "198.51.100.7"
FOREVER = (0, 2**40)


@pytest.fixture(scope="module")
def key() -> DkimKey:
    return new_rsa_key(2048)


@pytest.fixture
def dns(dns_server: DnsServer, key: DkimKey) -> DnsServer:
    dns_server.add_zone(
        zone(
            "example.org",
            f'@ TXT "v=spf1 ip4:{GOOD_IP} -all"',
            '_dmarc TXT "v=DMARC1; p=reject; rua=mailto:dmarc@example.org"',
            f"sel._domainkey TXT {quoted(key.txt)}",
            "$ORIGIN nodmarc.example.",
            f'@ TXT "v=spf1 ip4:{GOOD_IP} -all"',
        )
    )
    return dns_server


def config(dns: DnsServer, history: str, **sections: dict[str, Any]) -> dict[str, Any]:
    base: dict[str, Any] = {
        "milter": {"authserv_id": "mx1.test.example", "log_level": "info"},
        "dns": {"nameservers": [dns.address], "timeout": 5.0},
        "trust": {"internal_hosts": []},
        "reports": {"history": history},
    }
    for name, values in sections.items():
        base.setdefault(name, {}).update(values)
    return base


def send_all(daemon: AuthmilterDaemon, key: DkimKey, rounds: int = 1) -> list[tuple[str, str]]:
    """Per round: a DMARC pass, a DMARC fail (rejected), a domain without DMARC (not
    recorded); each on its own connection. What the MTA was told, per message."""
    out = []
    for _ in range(rounds):
        good = dkim_sign(make_message(from_addr="alice@example.org"), "example.org", "sel", key)
        cases = [
            (good, GOOD_IP, "alice@example.org"),
            (make_message(from_addr="mallory@example.org"), BAD_IP, "mallory@example.org"),
            (make_message(from_addr="bob@nodmarc.example"), BAD_IP, "bob@nodmarc.example"),
        ]
        for raw, ip, sender in cases:
            with MilterClient(daemon.socket) as client:
                reply = client.send_message(raw, client_ip=ip, mail_from=sender)
            out.append(verdict(reply))
    return out


def verdict(reply: Reply) -> tuple[str, str]:
    """What a reply did to the message (headers included, dates aside)."""
    return reply.smtp_class, " ".join(sorted(m.name for m in reply.added_headers()))


def count(dsn: str) -> int:
    store = open_store(dsn)
    try:
        return store.count()
    finally:
        store.close()


def test_sqlite_rows_are_written_by_a_clean_stop(
    dns: DnsServer,
    key: DkimKey,
    tmp_path: Path,
    authmilter_daemon: Callable[..., AuthmilterDaemon],
) -> None:
    dsn = f"sqlite:///{tmp_path}/history.db"
    daemon = authmilter_daemon(config(dns, dsn))
    verdicts = send_all(daemon, key, rounds=3)
    assert [v[0] for v in verdicts[:3]] == ["accept", "reject", "accept"]
    assert daemon.stop() == 0
    store = open_store(dsn)
    agg = store.aggregate("example.org", *FOREVER)
    assert agg.messages == 6
    assert sorted((g.count, g.disposition, g.source_ip) for g in agg.records) == [
        (3, "pass", GOOD_IP),
        (3, "reject", BAD_IP),
    ]
    assert agg.policy.rua == ("mailto:dmarc@example.org",)
    assert store.report_domains(*FOREVER) == ["example.org"]
    store.close()
    assert "history: recording DMARC evaluations" in daemon.log()


def test_two_workers_both_record(
    dns: DnsServer,
    key: DkimKey,
    tmp_path: Path,
    authmilter_daemon: Callable[..., AuthmilterDaemon],
) -> None:
    dsn = f"sqlite:///{tmp_path}/history.db"
    daemon = authmilter_daemon(config(dns, dsn, milter={"workers": 2}))
    daemon.wait_for_log("history: recording")
    verdicts = send_all(daemon, key, rounds=10)
    assert [v[0] for v in verdicts] == ["accept", "reject", "accept"] * 10
    assert daemon.stop() == 0
    log = daemon.log()
    assert log.count("history: recording DMARC evaluations") == 2, log  # one per worker
    assert count(dsn) == 20, log


def test_reload_keeps_or_replaces_the_recorder(
    dns: DnsServer,
    key: DkimKey,
    tmp_path: Path,
    authmilter_daemon: Callable[..., AuthmilterDaemon],
) -> None:
    first, second = f"sqlite:///{tmp_path}/one.db", f"sqlite:///{tmp_path}/two.db"
    daemon = authmilter_daemon(config(dns, first))
    send_all(daemon, key)
    daemon.write_config({"milter": {"log_level": "debug"}})
    daemon.reload()
    assert wait_for(lambda: daemon.log().count("reloaded") == 1)
    assert daemon.log().count("history: recording DMARC evaluations") == 1  # same DSN: kept
    send_all(daemon, key)
    daemon.write_config({"reports": {"history": second}})
    daemon.reload()
    assert wait_for(lambda: daemon.log().count("reloaded") == 2)
    assert daemon.log().count("history: recording DMARC evaluations") == 2  # a new one
    assert count(first) == 4  # the old one was written out at the swap
    send_all(daemon, key)
    assert daemon.stop() == 0
    assert (count(first), count(second)) == (4, 2)


def test_two_daemons_write_to_one_postgresql(
    dns: DnsServer,
    key: DkimKey,
    pg_cluster: PostgresCluster,
    authmilter_daemon: Callable[..., AuthmilterDaemon],
) -> None:
    dsn = pg_cluster.database()
    one = authmilter_daemon(config(dns, dsn))
    two = authmilter_daemon(config(dns, dsn, milter={"authserv_id": "mx2.test.example"}))
    send_all(one, key, rounds=2)
    send_all(two, key, rounds=3)
    assert one.stop() == 0
    assert two.stop() == 0
    store = open_store(dsn)
    agg = store.aggregate("example.org", *FOREVER)
    assert agg.messages == 10
    store.close()
    import psycopg

    with psycopg.connect(dsn) as conn:
        hosts = conn.execute("SELECT host, COUNT(*) FROM messages GROUP BY host ORDER BY host")
        assert hosts.fetchall() == [("mx1.test.example", 4), ("mx2.test.example", 6)]


def test_a_stopped_database_changes_no_verdict(
    dns: DnsServer,
    key: DkimKey,
    pg_cluster: PostgresCluster,
    authmilter_daemon: Callable[..., AuthmilterDaemon],
) -> None:
    dsn = pg_cluster.database()
    recording = authmilter_daemon(config(dns, dsn))
    recording.wait_for_log("history: recording")
    plain = authmilter_daemon(config(dns, ""))
    expected = send_all(plain, key, rounds=2)
    assert [v[0] for v in expected] == ["accept", "reject", "accept"] * 2
    pg_cluster.halt()
    try:
        assert send_all(recording, key, rounds=2) == expected
        assert recording.stop() == 0
        assert "history: rows not recorded: the store failed" in recording.log()
    finally:
        pg_cluster.start()
    assert "recording is off" not in recording.log()
