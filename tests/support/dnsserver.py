"""A small authoritative DNS server on loopback for integration tests and benchmarks.

Answers from RFC 1035 zone text over UDP and TCP (length-prefixed) in background threads,
with NXDOMAIN vs NODATA, CNAME chains, TXT strings longer than 255 bytes split into
character-strings, per-name faults (``timeout`` never answers, ``servfail``, ``refused``,
``truncate`` always sets TC over UDP), TC + TCP fallback for UDP answers larger than the
client's limit, and a query counter per (name, type)::

    with DnsServer("example.com. 300 IN TXT \\"v=spf1 -all\\"") as dns:
        DnspythonResolver([dns.address]).query("example.com", "TXT")

Runnable as a process: ``python -m tests.support.dnsserver --zone FILE --port N``.
"""

from __future__ import annotations

import argparse
import collections
import re
import signal
import socket
import socketserver
import struct
import sys
import threading
from collections.abc import Iterable
from pathlib import Path

import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rrset
import dns.zone

from tests.support.service import Service

FAULTS = ("timeout", "servfail", "refused", "truncate")
UDP_LIMIT = 512  # RFC 1035 without EDNS
_QUOTED = re.compile(r'"((?:[^"\\]|\\.)*)"', re.DOTALL)
_ESCAPE = re.compile(r"\\[0-9]{3}|\\.|.", re.DOTALL)


def split_long_strings(zone_text: str) -> str:
    """Rewrite quoted strings longer than 255 bytes as several adjacent strings (for TXT)."""

    def split(match: re.Match[str]) -> str:
        units = _ESCAPE.findall(match.group(1))
        chunks: list[str] = []
        current: list[str] = []
        size = 0
        for unit in units:
            n = 1 if unit.startswith("\\") else len(unit.encode("utf-8"))
            if size + n > 255:
                chunks.append("".join(current))
                current, size = [], 0
            current.append(unit)
            size += n
        chunks.append("".join(current))
        return " ".join(f'"{c}"' for c in chunks)

    return _QUOTED.sub(split, zone_text)


def _norm(name: str | dns.name.Name) -> str:
    text = name.to_text() if isinstance(name, dns.name.Name) else name
    return text.rstrip(".").lower()


class _Zone:
    """Records keyed by lower-case owner name; thread-safe for add and lookup."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._nodes: dict[str, dict[int, dns.rrset.RRset]] = {}
        self._names: set[str] = set()  # every owner and every ancestor (empty non-terminals)

    def add_text(self, text: str) -> None:
        zone = dns.zone.from_text(
            split_long_strings(text),
            origin=dns.name.root,
            relativize=False,
            check_origin=False,
        )
        with self._lock:
            for owner, node in zone.nodes.items():
                key = _norm(owner)
                slot = self._nodes.setdefault(key, {})
                for rdataset in node.rdatasets:
                    if rdataset.rdclass != dns.rdataclass.IN:
                        continue
                    rrset = slot.get(rdataset.rdtype)
                    if rrset is None:
                        rrset = dns.rrset.RRset(owner, rdataset.rdclass, rdataset.rdtype)
                        slot[rdataset.rdtype] = rrset
                    rrset.update(rdataset)  # type: ignore[no-untyped-call]
                    rrset.ttl = rdataset.ttl
                labels = key.split(".")
                for i in range(len(labels)):
                    self._names.add(".".join(labels[i:]))

    def remove(self, name: str, rdtype: int) -> None:
        """Drop the records of one type at ``name`` (the name itself goes on existing)."""
        with self._lock:
            self._nodes.get(_norm(name), {}).pop(rdtype, None)

    def lookup(self, qname: str, rdtype: int) -> tuple[int, list[dns.rrset.RRset]]:
        """Return (rcode, answer rrsets) following CNAMEs inside the data (at most 8)."""
        answers: list[dns.rrset.RRset] = []
        name = qname
        with self._lock:
            for _ in range(8):
                node = self._nodes.get(name)
                if node is None:
                    node = self._wildcard(name)
                if node is None:
                    exists = name in self._names
                    return (dns.rcode.NOERROR if exists or answers else dns.rcode.NXDOMAIN), answers
                wanted = node.get(rdtype)
                if wanted is not None:
                    answers.append(self._owned(wanted, name))
                    return dns.rcode.NOERROR, answers
                cname = node.get(dns.rdatatype.CNAME)
                if cname is None or rdtype == dns.rdatatype.CNAME:
                    return dns.rcode.NOERROR, answers
                answers.append(self._owned(cname, name))
                name = _norm(next(iter(cname)).target)
        return dns.rcode.SERVFAIL, answers

    def rrsets(self) -> list[dns.rrset.RRset]:
        """Every RRset held, as a list (a snapshot)."""
        with self._lock:
            return [rrset for node in self._nodes.values() for rrset in node.values()]

    def _wildcard(self, name: str) -> dict[int, dns.rrset.RRset] | None:
        if name in self._names:
            return None  # an existing name is never answered by a wildcard
        labels = name.split(".")
        for i in range(1, len(labels)):
            node = self._nodes.get("*." + ".".join(labels[i:]))
            if node is not None:
                return node
        return None

    @staticmethod
    def _owned(rrset: dns.rrset.RRset, name: str) -> dns.rrset.RRset:
        if _norm(rrset.name) == name:
            return rrset
        copy = dns.rrset.RRset(dns.name.from_text(name), rrset.rdclass, rrset.rdtype)
        copy.update(rrset)  # type: ignore[no-untyped-call]
        copy.ttl = rrset.ttl
        return copy


class DnsServer(Service):
    """Authoritative loopback DNS server (UDP + TCP on the same free port) in threads."""

    def __init__(
        self,
        zones: str | Path | Iterable[str | Path] = (),
        host: str = "127.0.0.1",
        port: int = 0,
        udp_limit: int | None = None,
    ) -> None:
        """``zones``: zone text, or paths of zone files (``Path`` objects), or a list of both.

        ``udp_limit``: cap UDP answers at this size whatever EDNS says (None: honour the
        client's EDNS payload size, 512 without EDNS).
        """
        self._zone = _Zone()
        self._faults: dict[str, str] = {}
        self._counts: collections.Counter[tuple[str, str]] = collections.Counter()
        self._transports: collections.Counter[str] = collections.Counter()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self.udp_limit = udp_limit
        items = [zones] if isinstance(zones, str | Path) else list(zones)
        for item in items:
            self.add_zone(item)
        self._host = host
        self._want_port = port
        self._udp: socketserver.UDPServer | None = None
        self._tcp: socketserver.ThreadingTCPServer | None = None
        self._threads: list[threading.Thread] = []
        self.port = 0

    # ------------------------------------------------------------------ data and faults

    def add_zone(self, zone: str | Path) -> None:
        """Add records from zone text or (for a ``Path``) a zone file."""
        text = zone.read_text(encoding="utf-8") if isinstance(zone, Path) else zone
        self._zone.add_text(text)

    def add(self, name: str, rdtype: str, *values: str, ttl: int = 300) -> None:
        """Add records in zone-file presentation form, e.g. ``add("a.example", "A", "192.0.2.1")``.

        TXT values given without quotes are quoted (and split if longer than 255 bytes).
        """
        lines = []
        for value in values:
            text = value
            if rdtype.upper() in ("TXT", "SPF") and not value.startswith('"'):
                text = '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
            lines.append(f"{name.rstrip('.')}. {ttl} IN {rdtype.upper()} {text}")
        self._zone.add_text("\n".join(lines) + "\n")

    def remove(self, name: str, rdtype: str) -> None:
        """Withdraw every record of ``rdtype`` at ``name`` (queries then get NODATA)."""
        self._zone.remove(name, dns.rdatatype.from_text(rdtype))

    def to_zone(self, origin: str = ".") -> dns.zone.Zone:
        """The records at and below ``origin`` as a dnspython zone (``to_text()`` for a file)."""
        apex = dns.name.from_text(origin)
        zone = dns.zone.Zone(apex, relativize=False)
        with zone.writer() as txn:
            for rrset in self._zone.rrsets():
                if rrset.name.is_subdomain(apex):
                    txn.add(rrset)
        return zone

    def set_fault(self, name: str, fault: str) -> None:
        """Make queries for ``name`` (``*.name``: everything below it too) misbehave."""
        if fault not in FAULTS:
            raise ValueError(f"fault must be one of {FAULTS}, not {fault!r}")
        with self._lock:
            self._faults[_norm(name)] = fault

    def clear_faults(self) -> None:
        """Answer every name normally again."""
        with self._lock:
            self._faults.clear()

    def queries(self, name: str, rdtype: str = "TXT") -> int:
        """How many queries for (name, type) arrived (over either transport)."""
        with self._lock:
            return self._counts[(_norm(name), rdtype.upper())]

    def transport_count(self, transport: str) -> int:
        """How many queries arrived over ``"udp"`` or ``"tcp"``."""
        with self._lock:
            return self._transports[transport]

    def reset_counts(self) -> None:
        """Forget every counter."""
        with self._lock:
            self._counts.clear()
            self._transports.clear()

    @property
    def address(self) -> str:
        """``host:port``, as ``[dns] nameservers`` and DnspythonResolver take it."""
        return f"{self._host}:{self.port}"

    # ------------------------------------------------------------------ answering

    def _fault_for(self, qname: str) -> str | None:
        with self._lock:
            if qname in self._faults:
                return self._faults[qname]
            labels = qname.split(".")
            for i in range(1, len(labels)):
                fault = self._faults.get("*." + ".".join(labels[i:]))
                if fault is not None:
                    return fault
        return None

    def answer(self, wire: bytes, transport: str) -> bytes | None:
        """The response to one query in wire format, or None to stay silent."""
        try:
            query = dns.message.from_wire(wire)
        except dns.exception.DNSException:
            return None
        if not query.question:
            response = dns.message.make_response(query)
            response.set_rcode(dns.rcode.FORMERR)
            return response.to_wire()
        question = query.question[0]
        qname = _norm(question.name)
        rdtype_text = dns.rdatatype.to_text(question.rdtype)
        with self._lock:
            self._counts[(qname, rdtype_text)] += 1
            self._transports[transport] += 1
        fault = self._fault_for(qname)
        if fault == "timeout":
            return None
        response = dns.message.make_response(query)
        response.flags |= dns.flags.AA
        response.flags &= ~dns.flags.RA
        if fault in ("servfail", "refused"):
            response.set_rcode(dns.rcode.SERVFAIL if fault == "servfail" else dns.rcode.REFUSED)
            return response.to_wire()
        rcode, rrsets = self._zone.lookup(qname, question.rdtype)
        response.set_rcode(rcode)
        response.answer.extend(rrsets)
        data = response.to_wire()
        if transport == "udp" and (fault == "truncate" or len(data) > self._limit(query)):
            truncated = dns.message.make_response(query)
            truncated.flags |= dns.flags.AA | dns.flags.TC
            truncated.flags &= ~dns.flags.RA
            return truncated.to_wire()
        return data

    def _limit(self, query: dns.message.Message) -> int:
        if self.udp_limit is not None:
            return self.udp_limit
        if query.edns >= 0:
            return max(UDP_LIMIT, int(query.payload))
        return UDP_LIMIT

    # ------------------------------------------------------------------ life cycle

    def start(self) -> DnsServer:
        """Bind UDP and TCP on the same port and serve in daemon threads."""
        server = self

        class Udp(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                data, sock = self.request
                reply = server.answer(data, "udp")
                if reply is not None:
                    sock.sendto(reply, self.client_address)

        class Tcp(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                conn: socket.socket = self.request
                conn.settimeout(1.0)
                while not server._stop.is_set():
                    try:
                        head = _recv_exact(conn, 2)
                        if head is None:
                            return
                        body = _recv_exact(conn, struct.unpack("!H", head)[0])
                    except TimeoutError:
                        continue
                    except OSError:
                        return
                    if body is None:
                        return
                    reply = server.answer(body, "tcp")
                    if reply is None:  # "timeout": keep the connection, never answer
                        server._stop.wait()
                        return
                    conn.sendall(struct.pack("!H", len(reply)) + reply)

        for _ in range(20):  # the UDP port may be taken for TCP by someone else: retry
            udp = socketserver.UDPServer((self._host, self._want_port), Udp)
            port = udp.server_address[1]
            try:
                tcp = _TcpServer((self._host, port), Tcp)
            except OSError:
                udp.server_close()
                if self._want_port:
                    raise
                continue
            break
        else:  # pragma: no cover
            raise OSError("no free port for UDP and TCP")
        self._udp, self._tcp, self.port = udp, tcp, port
        for srv in (udp, tcp):
            thread = threading.Thread(
                target=srv.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True
            )
            thread.start()
            self._threads.append(thread)
        return self

    def stop(self) -> None:
        """Stop both servers and wait for their threads."""
        self._stop.set()
        for srv in (self._udp, self._tcp):
            if srv is not None:
                srv.shutdown()
                srv.server_close()
        for thread in self._threads:
            thread.join(timeout=5)
        self._udp = self._tcp = None
        self._threads.clear()


class _TcpServer(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True


def _recv_exact(conn: socket.socket, n: int) -> bytes | None:
    buf = b""
    while len(buf) < n:
        chunk = conn.recv(n - len(buf))
        if not chunk:
            return None
        buf += chunk
    return buf


def main(argv: list[str] | None = None) -> int:
    """Serve zone files until SIGTERM/SIGINT; print the port once ready."""
    parser = argparse.ArgumentParser(prog="python -m tests.support.dnsserver")
    parser.add_argument("--zone", action="append", default=[], help="zone file (repeatable)")
    parser.add_argument("--port", type=int, default=0, help="port (0 = a free one)")
    parser.add_argument("--host", default="127.0.0.1")
    args = parser.parse_args(argv)
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    signal.signal(signal.SIGINT, lambda *_: done.set())
    with DnsServer([Path(z) for z in args.zone], host=args.host, port=args.port) as server:
        print(server.port, flush=True)
        while not done.wait(0.5):
            pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
