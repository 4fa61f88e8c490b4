"""The history store, one suite over SQLite and PostgreSQL: schema, grouping, claims, prune."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from authmilter.errors import ConfigError
from authmilter.reports.history import DkimAuth, HistoryRow, PublishedPolicy, SpfAuth
from authmilter.reports.store import HistoryStore, open_store

DAY = 86400
T0 = 1_780_000_000 - 1_780_000_000 % DAY  # a UTC midnight

POLICY = PublishedPolicy(domain="example.com", p="reject", rua=("mailto:d@example.com",))


def row(  # noqa: PLR0917
    t: int = T0 + 10,
    ip: str = "192.0.2.1",
    domain: str = "example.com",
    disposition: str = "reject",
    dkim: tuple[DkimAuth, ...] = (DkimAuth("example.com", "s1", "fail"),),
    policy: PublishedPolicy = POLICY,
) -> HistoryRow:
    return HistoryRow(
        time=t,
        source_ip=ip,
        envelope_from=domain,
        header_from=domain,
        policy=policy if policy.domain == domain else PublishedPolicy(domain=domain, p="none"),
        disposition=disposition,
        dmarc_dkim="fail",
        dmarc_spf="fail",
        dkim=dkim,
        spf=SpfAuth(domain, "mfrom", "fail"),
        envelope_to="example.net",
        host="mx1.example",
    )


def test_migrate_is_idempotent(history_dsn: str) -> None:
    first = open_store(history_dsn)
    assert first.migrate() == 1
    assert first.migrate() == 1
    first.close()
    second = open_store(history_dsn)
    assert second.migrate() == 1
    second.close()


def test_aggregate_groups_identical_rows(store: HistoryStore) -> None:
    a, b = DkimAuth("example.com", "s1", "pass"), DkimAuth("other.example", "s2", "fail")
    rows = (
        [row(T0 + i) for i in range(5)]
        + [row(T0 + 100 + i, ip="192.0.2.2") for i in range(3)]
        + [row(T0 + 200, dkim=(a, b)), row(T0 + 201, dkim=(b, a))]  # order does not split
        + [row(T0 + 300, disposition="none")]
        + [row(T0 - 1), row(T0 + DAY)]  # outside the period
        + [row(T0 + 5, domain="other.example")]
    )
    store.insert(rows)
    agg = store.aggregate("example.com", T0, T0 + DAY)
    assert agg.messages == 11
    counts = sorted((g.count, g.source_ip, g.disposition, len(g.dkim)) for g in agg.records)
    assert counts == [
        (1, "192.0.2.1", "none", 1),
        (2, "192.0.2.1", "reject", 2),
        (3, "192.0.2.2", "reject", 1),
        (5, "192.0.2.1", "reject", 1),
    ]
    first = agg.records[0]
    assert first.count == 5
    assert first.spf == SpfAuth("example.com", "mfrom", "fail")
    assert first.dkim == (DkimAuth("example.com", "s1", "fail"),)
    assert (first.envelope_to, first.envelope_from, first.header_from) == (
        "example.net",
        "example.com",
        "example.com",
    )
    assert agg.policy == POLICY


def test_aggregate_returns_the_policy_last_seen(store: HistoryStore) -> None:
    rua = ("mailto:a@x.example", "mailto:b@y.example")
    later = PublishedPolicy("example.com", "quarantine", "none", "reject", testing="y", rua=rua)
    store.insert([row(T0 + 50, policy=later), row(T0 + 10)])
    assert store.aggregate("example.com", T0, T0 + DAY).policy == later


def test_aggregate_without_rows_is_a_lookup_error(store: HistoryStore) -> None:
    with pytest.raises(LookupError):
        store.aggregate("example.com", T0, T0 + DAY)


def test_report_domains_only_with_rua(store: HistoryStore) -> None:
    store.insert([row(), row(domain="norua.example"), row(T0 - 5, domain="example.org")])
    assert store.report_domains(T0, T0 + DAY) == ["example.com"]


def test_empty_batch_and_no_spf(store: HistoryStore) -> None:
    store.insert([])
    plain = HistoryRow(T0 + 1, "2001:db8::1", "", "example.com", POLICY, "pass", "pass", "fail")
    store.insert([plain])
    (group,) = store.aggregate("example.com", T0, T0 + DAY).records
    assert (group.spf, group.dkim, group.envelope_from) == (None, (), "")


def test_claim_mark_sent_then_none(store: HistoryStore) -> None:
    with store.claim("example.com", T0, T0 + DAY, "id-1") as claim:
        assert claim is not None and claim.report_id == "id-1"
        claim.mark("sent")
    with store.claim("example.com", T0, T0 + DAY, "id-2") as again:
        assert again is None
    # another period of the same domain is its own report
    with store.claim("example.com", T0 + DAY, T0 + 2 * DAY, "id-3") as other:
        assert other is not None


def test_claim_skipped_is_final(store: HistoryStore) -> None:
    with store.claim("example.com", T0, T0 + DAY, "id-1") as claim:
        assert claim is not None
        claim.mark("skipped", "no verified destination")
    with store.claim("example.com", T0, T0 + DAY, "id-1") as again:
        assert again is None


def test_claim_without_mark_stays_claimable(store: HistoryStore) -> None:
    with store.claim("example.com", T0, T0 + DAY, "id-1") as claim:
        assert claim is not None
    with store.claim("example.com", T0, T0 + DAY, "id-1") as again:
        assert again is not None


def test_claim_exception_rolls_back(store: HistoryStore) -> None:
    with pytest.raises(RuntimeError), store.claim("example.com", T0, T0 + DAY, "id-1") as c:
        assert c is not None
        c.mark("sent")
        raise RuntimeError("relay died")
    with store.claim("example.com", T0, T0 + DAY, "id-1") as again:
        assert again is not None and again.report_id == "id-1"


def test_bad_status_refused(store: HistoryStore) -> None:
    with store.claim("example.com", T0, T0 + DAY, "id-1") as claim:
        assert claim is not None
        with pytest.raises(ValueError):
            claim.mark("maybe")


def test_second_claimer_gets_none_while_held(history_dsn: str) -> None:
    first, second = open_store(history_dsn), open_store(history_dsn)
    first.migrate()
    with first.claim("example.com", T0, T0 + DAY, "id-1") as held:
        assert held is not None
        with second.claim("example.com", T0, T0 + DAY, "id-1") as other:
            assert other is None
        with second.claim("example.org", T0, T0 + DAY, "id-2") as different:
            assert different is not None
        # the daemon keeps writing while a report is being sent
        second.insert([row()])
        held.mark("sent")
    with second.claim("example.com", T0, T0 + DAY, "id-1") as after:
        assert after is None
    first.close()
    second.close()


def test_concurrent_claimers_exactly_one_sends(history_dsn: str) -> None:
    open_store(history_dsn).migrate()
    sent: list[str] = []
    barrier = threading.Barrier(4)
    lock = threading.Lock()

    def run(name: str) -> None:
        store = open_store(history_dsn, host=name)
        barrier.wait()
        for _ in range(20):
            with store.claim("example.com", T0, T0 + DAY, "id-1") as claim:
                if claim is not None:
                    with lock:
                        sent.append(name)
                    claim.mark("sent")
        store.close()

    threads = [threading.Thread(target=run, args=(f"host{i}",)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert len(sent) == 1
    status = open_store(history_dsn).report_status("example.com", T0, T0 + DAY)
    assert status == ("sent", "id-1", "")


def test_prune(store: HistoryStore) -> None:
    store.insert([row(T0 - DAY), row(T0 - 1), row(T0), row(T0 + 5)])
    assert store.prune(T0) == 2
    assert store.aggregate("example.com", T0 - DAY, T0 + DAY).messages == 2


def test_sqlite_directory_must_exist(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"reports\.history.*does not exist"):
        open_store(f"sqlite:///{tmp_path}/missing/history.db")
    with pytest.raises(ConfigError, match=r"reports\.history"):
        open_store("mysql://x")


def test_sqlite_file_created_in_wal_mode(tmp_path: Path) -> None:
    import sqlite3

    store = open_store(f"sqlite:///{tmp_path}/h.db")
    store.migrate()
    store.close()
    conn = sqlite3.connect(tmp_path / "h.db")
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    conn.close()


def test_concurrent_migrations_apply_once(history_dsn: str) -> None:
    versions: list[int] = []
    barrier = threading.Barrier(4)

    def migrate() -> None:
        store = open_store(history_dsn)
        barrier.wait()
        versions.append(store.migrate())
        store.close()

    threads = [threading.Thread(target=migrate) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert versions == [1, 1, 1, 1]
    store = open_store(history_dsn)
    store.insert([row()])
    assert store.count() == 1
    store.close()
