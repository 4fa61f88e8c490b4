"""``milter.workers = "auto"``: the daemon starts one worker per CPU its affinity allows."""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Callable

import pytest

from tests.integration.test_daemon import config, example_zone, our_ar, send, signed
from tests.support.daemon import AuthmilterDaemon
from tests.support.dnsserver import DnsServer
from tests.support.keys import new_rsa_key
from tests.support.procs import children, wait_for

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(shutil.which("taskset") is None, reason="needs taskset (util-linux)"),
]

COMMAND = [sys.executable, "-m", "authmilter", "run", "-c", "{config}"]


def _cpus(count: int) -> str:
    return ",".join(str(c) for c in sorted(os.sched_getaffinity(0))[:count])


def test_one_usable_cpu_is_one_process(
    dns_server: DnsServer, authmilter_daemon: Callable[..., AuthmilterDaemon]
) -> None:
    key = new_rsa_key(2048)
    dns_server.add_zone(example_zone(key))
    daemon = authmilter_daemon(
        config(dns_server, milter={"workers": "auto"}),
        command=["taskset", "-c", _cpus(1), *COMMAND],
    )
    assert "with 1 worker (auto)" in daemon.log()
    assert "dkim=pass" in our_ar(send(daemon, signed(key)))
    assert children(daemon.pid) == set()


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="needs two usable CPUs")
def test_two_usable_cpus_are_two_workers(
    dns_server: DnsServer, authmilter_daemon: Callable[..., AuthmilterDaemon]
) -> None:
    key = new_rsa_key(2048)
    dns_server.add_zone(example_zone(key))
    daemon = authmilter_daemon(
        config(dns_server, milter={"workers": "auto"}),
        command=["taskset", "-c", _cpus(2), *COMMAND],
    )
    assert "with 2 workers (auto)" in daemon.wait_for_log("with 2 workers (auto)")
    assert wait_for(lambda: len(children(daemon.pid)) == 2), daemon.log()
    assert "dkim=pass" in our_ar(send(daemon, signed(key)))
