"""Connection floods against the real daemon: the session cap, idle reaping, the fd limit.

libmilter (Debian's build, with its worker pool) closes a session idle longer than
``milter.timeout`` only when its pool controller checks, every 600 s, and its accept loop
retries EMFILE without sleeping (a process at its descriptor limit spins and serves no one).
The daemon caps live sessions (``milter.max_sessions``: the next connection is answered 451
at once and closed), closes idle sessions itself, and sheds connections that never said
anything when descriptors run short. Counts (replies, closed sockets, CPU seconds) carry
the assertions; the time bounds only separate "at once" from "after a timeout".
"""

from __future__ import annotations

import contextlib
import os
import socket
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.integration.test_daemon import GOOD_IP, config, example_zone, our_ar, send, signed
from tests.support.daemon import AuthmilterDaemon
from tests.support.dnsserver import DnsServer
from tests.support.keys import DkimKey, new_rsa_key
from tests.support.milterclient import MilterClient

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def key() -> DkimKey:
    return new_rsa_key(2048)


def hold_session(address: str) -> MilterClient:
    """A connection that negotiated and said CONNECT, then waits (an idle MTA session)."""
    client = MilterClient(address, timeout=10).open()
    reply = client.connect("idle.example", "4", "192.0.2.77", 25)
    assert reply is None or reply.action == "continue", reply  # (None: no reply asked for)
    return client


def closed_by_peer(client: MilterClient, timeout: float) -> bool:
    """True when the milter closed this connection within ``timeout`` seconds."""
    sock = client._sock
    assert sock is not None
    sock.settimeout(timeout)
    try:
        return sock.recv(1) == b""
    except TimeoutError:
        return False
    except OSError:
        return True


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@contextlib.contextmanager
def closing_all(items: list[MilterClient] | list[socket.socket]) -> Iterator[None]:
    try:
        yield
    finally:
        for item in items:
            with contextlib.suppress(OSError):
                item.close()


def test_sessions_beyond_the_cap_get_451_at_once_and_idle_ones_are_closed(
    dns_server: DnsServer, key: DkimKey, authmilter_daemon: Callable[..., AuthmilterDaemon]
) -> None:
    dns_server.add_zone(example_zone(key))
    daemon = authmilter_daemon(config(dns_server, milter={"max_sessions": 4, "timeout": 3}))
    held: list[MilterClient] = []
    with closing_all(held):
        held.extend(hold_session(daemon.socket) for _ in range(4))
        # the cap is reached: the next connections are answered 451 at CONNECT, at once
        refused = []
        for _ in range(6):
            client = MilterClient(daemon.socket, timeout=10).open()
            held.append(client)
            started = time.monotonic()
            reply = client.connect("extra.example", "4", "192.0.2.78", 25)
            assert reply is not None and reply.text.startswith("451 4.3.2"), reply
            assert time.monotonic() - started < 2.0
            refused.append(client)
        # ... and closed by the milter (not left open for the MTA to time out)
        assert all(closed_by_peer(c, 3.0) for c in refused)
        # a whole message while the cap is full: a 451 at once, never a hang
        reply = send(daemon, signed(key))
        assert reply.smtp_class == "tempfail" and reply.text.startswith("451 4.3.2"), reply
        # the idle sessions are closed after milter.timeout (3 s); libmilter alone: 600 s
        assert all(closed_by_peer(c, 8.0) for c in held[:4]), daemon.log()
        daemon.wait_for_log("idle for")  # (written just after the socket is shut down)
        # and a normal message is served again
        assert "dkim=pass" in our_ar(send(daemon, signed(key), client_ip=GOOD_IP))
        daemon.wait_for_log("refused")


def test_connections_that_send_nothing_are_closed_after_the_timeout(
    dns_server: DnsServer, key: DkimKey, authmilter_daemon: Callable[..., AuthmilterDaemon]
) -> None:
    dns_server.add_zone(example_zone(key))
    daemon = authmilter_daemon(config(dns_server, milter={"timeout": 2}))
    assert daemon.socket_path is not None
    silent: list[socket.socket] = []
    with closing_all(silent):
        for _ in range(20):
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.connect(str(daemon.socket_path))
            silent.append(s)
        session = hold_session(daemon.socket)  # a real session in the middle stays open
        silent_closed = 0
        deadline = time.monotonic() + 8.0  # 2 s and the reaper's round; libmilter: 600 s
        for s in silent:
            s.settimeout(max(0.01, deadline - time.monotonic()))
            with contextlib.suppress(TimeoutError, OSError):
                silent_closed += s.recv(1) == b""
        assert silent_closed == 20, daemon.log()
        daemon.wait_for_log("sent nothing")
        session.close()
        assert "dkim=pass" in our_ar(send(daemon, signed(key), client_ip=GOOD_IP))


def test_a_flood_at_the_descriptor_limit_neither_spins_nor_stops_the_daemon(
    dns_server: DnsServer, key: DkimKey, authmilter_daemon: Callable[..., AuthmilterDaemon]
) -> None:
    dns_server.add_zone(example_zone(key))
    # 200 descriptors for the daemon; 300 connections that send nothing. libmilter's accept
    # loop retries EMFILE without sleeping: the old daemon spun at 100 % of a core and
    # answered nothing until its pool controller's 600-second check.
    limit = 200
    command = [
        "prlimit",
        f"--nofile={limit}:{limit}",
        sys.executable,
        "-m",
        "authmilter",
        "run",
        "-c",
        "{config}",
    ]
    daemon = authmilter_daemon(config(dns_server, milter={"timeout": 60}), command=command)
    assert daemon.socket_path is not None
    assert "capping sessions at 68" in daemon.log()
    silent: list[socket.socket] = []
    with closing_all(silent):
        for _ in range(300):
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.setblocking(False)
            try:
                s.connect(str(daemon.socket_path))
            except BlockingIOError:  # the listen queue is full: that is the kernel's limit
                s.close()
                continue
            silent.append(s)
        assert len(silent) > limit
        time.sleep(2.0)  # the flood has been shed by now
        before = cpu_seconds(daemon.pid)
        time.sleep(2.0)
        spent = cpu_seconds(daemon.pid) - before
        assert spent < 1.0, (spent, daemon.log()[-2000:])  # spinning costs 2 s in 2 s
        daemon.wait_for_log("connection(s) that sent nothing")
        # a normal message is served at once, the silent ones notwithstanding
        started = time.monotonic()
        assert "dkim=pass" in our_ar(send(daemon, signed(key), client_ip=GOOD_IP))
        assert time.monotonic() - started < 5.0
    assert daemon.running()
