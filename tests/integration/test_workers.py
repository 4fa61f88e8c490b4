"""``milter.workers = 2``: one socket, two processes, reload forwarded, dead workers replaced."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.integration.test_daemon import BAD_IP, config, example_zone, our_ar, send, signed
from tests.support.daemon import AuthmilterDaemon
from tests.support.dnsserver import DnsServer
from tests.support.keys import new_rsa_key

pytestmark = pytest.mark.integration


def children(pid: int) -> set[int]:
    out = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                out.add(int(entry.name))
    return out


def wait_for(predicate: Callable[[], bool], timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return predicate()


def test_two_workers_share_the_socket(
    dns_server: DnsServer, authmilter_daemon: Callable[..., AuthmilterDaemon], tmp_path: Path
) -> None:
    key = new_rsa_key(2048)
    dns_server.add_zone(example_zone(key))
    daemon = authmilter_daemon(config(dns_server, milter={"workers": 2}))
    assert wait_for(lambda: len(children(daemon.pid)) == 2), daemon.log()
    workers = children(daemon.pid)

    for _ in range(6):
        assert "dkim=pass" in our_ar(send(daemon, signed(key)))
    assert send(daemon, signed(key), client_ip=BAD_IP).action == "accept"  # DKIM aligns
    assert wait_for(lambda: daemon.log().count("qid=") >= 7)
    served_by = {
        line.split("conn=")[1].split(".")[0]
        for line in daemon.log().splitlines()
        if "conn=" in line
    }
    assert served_by <= {"1", "2"} and served_by

    # a worker that dies is replaced, and the socket keeps answering
    victim = sorted(workers)[0]
    os.kill(victim, signal.SIGKILL)
    assert wait_for(lambda: len(children(daemon.pid)) == 2 and victim not in children(daemon.pid))
    assert "dkim=pass" in our_ar(send(daemon, signed(key)))

    # reload goes to every worker
    daemon.reload()
    assert wait_for(lambda: daemon.log().count("reloaded") >= 2), daemon.log()

    # a clean stop takes the workers with it and removes the socket
    remaining = children(daemon.pid)
    assert daemon.stop() == 0
    assert not Path(daemon.socket_path).exists()
    assert all(not Path(f"/proc/{pid}").exists() for pid in remaining)
