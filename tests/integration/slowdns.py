"""A slow DNS server for fault tests: a UDP front that answers each query after a delay.

The answers come from a :class:`~tests.support.dnsserver.DnsServer` (its ``answer()``);
only the timing is ours. ``answer_only_first``: answer the first copy of each query (by
query id) and ignore retransmissions, as a server that is slow rather than lossy does.
Every datagram received is counted; everything runs on loopback in daemon threads and is
bounded (the timers die with ``stop()``)::

    with DnsServer(zone) as dns, SlowDns(dns, delay=2.5) as slow:
        DnspythonResolver([slow.address], timeout=6).query("example.org", "TXT")
"""

from __future__ import annotations

import socket
import threading

from tests.support.dnsserver import DnsServer
from tests.support.service import Service


class SlowDns(Service):
    """UDP on 127.0.0.1, every answer ``delay`` seconds late (or never, for dropped ones)."""

    def __init__(
        self, upstream: DnsServer, delay: float, *, answer_only_first: bool = False
    ) -> None:
        self.upstream = upstream
        self.delay = delay
        self.answer_only_first = answer_only_first
        self.received = 0
        self.answered = 0
        self._seen: set[bytes] = set()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._timers: list[threading.Timer] = []
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._sock.bind(("127.0.0.1", 0))
        self._sock.settimeout(0.2)
        self.port = self._sock.getsockname()[1]
        self._thread = threading.Thread(target=self._serve, daemon=True)

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> SlowDns:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)
        with self._lock:
            for timer in self._timers:
                timer.cancel()
        self._sock.close()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                wire, client = self._sock.recvfrom(65535)
            except TimeoutError:
                continue
            except OSError:
                return
            with self._lock:
                self.received += 1
                first = wire[:2] not in self._seen
                self._seen.add(wire[:2])
                if self.answer_only_first and not first:
                    continue
                timer = threading.Timer(self.delay, self._answer, args=(wire, client))
                timer.daemon = True
                self._timers = [t for t in self._timers if t.is_alive()]
                self._timers.append(timer)
            timer.start()

    def _answer(self, wire: bytes, client: tuple[str, int]) -> None:
        reply = self.upstream.answer(wire, "udp")
        if reply is None or self._stop.is_set():
            return
        try:
            self._sock.sendto(reply, client)
        except OSError:
            return
        with self._lock:
            self.answered += 1
