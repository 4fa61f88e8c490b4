"""``/metrics`` of the real daemon, scraped before and after messages: one worker and two.

With two workers the one endpoint (served by the supervisor) must sum both: the messages
are sent until each worker has served some, and the counters must equal what was sent.
"""

from __future__ import annotations

import os
import signal
import socket
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.integration.test_daemon import BAD_IP, config, example_zone, our_ar, send, signed
from tests.support.daemon import AuthmilterDaemon
from tests.support.dnsserver import DnsServer
from tests.support.keys import DkimKey, new_rsa_key
from tests.support.procs import children, wait_for

pytestmark = pytest.mark.integration

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def scrape(port: int) -> Samples:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        assert response.status == 200
        assert response.headers["Content-Type"].startswith("text/plain")
        text = response.read().decode()
    out: Samples = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, frozenset(s.labels.items()))] = s.value
    return out


def total(samples: Samples, name: str, **labels: str) -> float:
    want = set(labels.items())
    return sum(v for (n, lab), v in samples.items() if n == name and want <= lab)


def wait_scrape(port: int, daemon: AuthmilterDaemon) -> Samples:
    deadline = time.monotonic() + 10
    while True:
        try:
            return scrape(port)
        except (urllib.error.URLError, ConnectionError):
            if time.monotonic() > deadline:
                raise AssertionError(f"no metrics on {port}:\n{daemon.log()}") from None
            time.sleep(0.05)


def served_by(daemon: AuthmilterDaemon) -> set[str]:
    """The workers (conn=W.N) that logged a message."""
    return {
        line.split("conn=")[1].split(".")[0]
        for line in daemon.log().splitlines()
        if "qid=" in line and "conn=" in line
    }


def start(
    dns_server: DnsServer,
    authmilter_daemon: Callable[..., AuthmilterDaemon],
    workers: int,
    tmp_path: Path,
) -> tuple[AuthmilterDaemon, int, DkimKey]:
    key = new_rsa_key(2048)
    dns_server.add_zone(example_zone(key))
    port = free_port()
    runtime = tmp_path / "run"
    runtime.mkdir()
    stale = runtime / "authmilter-metrics-stale"  # left by a run that was killed
    stale.mkdir()
    (stale / "counter_1.db").write_bytes(b"\0" * 8)
    cfg = config(dns_server, milter={"workers": workers}, metrics={"listen": f"127.0.0.1:{port}"})
    cfg["dns"]["cache_size"] = 1000  # cache hits are counted too
    daemon = authmilter_daemon(cfg, env={"RUNTIME_DIRECTORY": str(runtime)})
    return daemon, port, key


@pytest.mark.parametrize("workers", [1, 2])
def test_counters_move_with_the_messages(
    workers: int,
    dns_server: DnsServer,
    authmilter_daemon: Callable[..., AuthmilterDaemon],
    tmp_path: Path,
) -> None:
    daemon, port, key = start(dns_server, authmilter_daemon, workers, tmp_path)
    if workers > 1:
        assert wait_for(lambda: len(children(daemon.pid)) == workers), daemon.log()
        # the values directory: made new by the supervisor in $RUNTIME_DIRECTORY
        made = list((tmp_path / "run").iterdir())
        assert len(made) == 1 and made[0].name != "authmilter-metrics-stale", made
        assert made[0].stat().st_mode & 0o777 == 0o700
    before = wait_scrape(port, daemon)
    assert total(before, "authmilter_build_info") == 1

    accepted = rejected = 0
    # until every worker has served messages (with one worker: at once), at most 60
    while accepted < 3 or len(served_by(daemon)) < workers:
        assert accepted < 60, f"workers that served: {served_by(daemon)}"
        assert "dkim=pass" in our_ar(send(daemon, signed(key)))
        accepted += 1
        forged = signed(key).replace(b"This is a test.", b"This is a forgery.")
        reply = send(daemon, forged, client_ip=BAD_IP)
        assert reply.smtp_class == "reject" and reply.code == 550, reply
        rejected += 1
        sent = accepted + rejected
        assert wait_for(lambda n=sent: daemon.log().count("qid=") >= n)

    after = scrape(port)

    def moved(name: str, **labels: str) -> float:
        return total(after, name, **labels) - total(before, name, **labels)

    assert moved("authmilter_messages_total", action="accept", trust="inbound") == accepted
    assert moved("authmilter_messages_total", action="reject", trust="inbound") == rejected
    assert moved("authmilter_replies_total", stage="eom", code="550", status="5.7.26") == rejected
    assert moved("authmilter_dkim_results_total", result="pass", algorithm="rsa-sha256") == (
        accepted
    )
    assert moved("authmilter_dkim_results_total", result="fail") == rejected
    assert moved("authmilter_dmarc_results_total", result="pass", policy="reject") == accepted
    assert moved("authmilter_dmarc_results_total", result="fail", policy="reject") == rejected
    assert moved("authmilter_spf_results_total", identity="mailfrom", result="pass") == accepted
    assert moved("authmilter_spf_results_total", identity="mailfrom", result="fail") == rejected
    assert moved("authmilter_stage_seconds_count", stage="eom") == accepted + rejected
    assert moved("authmilter_sessions_total") == accepted + rejected
    assert wait_for(lambda: total(scrape(port), "authmilter_sessions_in_flight") == 0)
    # DNS: the first lookups were sent, the rest answered from each worker's cache
    assert moved("authmilter_dns_queries_total", type="TXT", outcome="ok") >= 3
    assert moved("authmilter_dns_query_seconds_count") >= 3
    assert moved("authmilter_dns_cache_lookups_total", result="hit") > 0
    assert moved("authmilter_internal_errors_total") == 0

    # a reload is counted once per worker
    daemon.reload()
    assert wait_for(
        lambda: total(scrape(port), "authmilter_reloads_total", result="ok") == workers
    ), daemon.log()


def test_two_workers_a_dead_worker_keeps_its_counts_and_drops_its_sessions(
    dns_server: DnsServer,
    authmilter_daemon: Callable[..., AuthmilterDaemon],
    tmp_path: Path,
) -> None:
    daemon, port, key = start(dns_server, authmilter_daemon, 2, tmp_path)
    assert wait_for(lambda: len(children(daemon.pid)) == 2), daemon.log()
    sent = 0
    while len(served_by(daemon)) < 2:
        assert sent < 60
        assert send(daemon, signed(key)).action == "accept"
        sent += 1
    assert wait_for(lambda: daemon.log().count("qid=") >= sent)
    counted = total(scrape(port), "authmilter_messages_total")
    assert counted == sent

    victim = sorted(children(daemon.pid))[0]
    os.kill(victim, signal.SIGKILL)
    assert wait_for(lambda: len(children(daemon.pid)) == 2 and victim not in children(daemon.pid))
    # the supervisor counts the restart just after the fork: wait for it, by count
    assert wait_for(lambda: total(scrape(port), "authmilter_worker_restarts_total") == 1)
    after = scrape(port)
    assert total(after, "authmilter_messages_total") == sent  # never backwards
    assert total(after, "authmilter_sessions_in_flight") == 0
    assert send(daemon, signed(key)).action == "accept"
    assert wait_for(lambda: total(scrape(port), "authmilter_messages_total") == sent + 1)

    run_dir = tmp_path / "run"
    assert daemon.stop() == 0
    assert list(run_dir.iterdir()) == []  # the values directory goes with the daemon


def test_a_port_in_use_is_logged_and_mail_still_flows(
    dns_server: DnsServer, authmilter_daemon: Callable[..., AuthmilterDaemon]
) -> None:
    key = new_rsa_key(2048)
    dns_server.add_zone(example_zone(key))
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        daemon = authmilter_daemon(config(dns_server, metrics={"listen": f"127.0.0.1:{port}"}))
        assert send(daemon, signed(key)).action == "accept"
        assert "running without metrics" in daemon.log()


def test_off_when_empty(
    dns_server: DnsServer, authmilter_daemon: Callable[..., AuthmilterDaemon]
) -> None:
    key = new_rsa_key(2048)
    dns_server.add_zone(example_zone(key))
    daemon = authmilter_daemon(config(dns_server))  # the test support sets listen = ""
    assert send(daemon, signed(key)).action == "accept"
    assert "metrics on" not in daemon.log()
