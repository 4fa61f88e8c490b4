"""DNS on the wire for :class:`~authmilter.dnsresolver.DnspythonResolver`: one socket per
lookup, retransmission on it (a late answer to the first copy still counts), TCP after TC,
and names asked for literally. dnspython builds and parses the messages.
"""

from __future__ import annotations

import contextlib
import ipaddress
import logging
import select
import socket
import time
from collections.abc import Callable, Iterable

import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.query
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.resolver
import dns.rrset
import dns.tokenizer
import dns.zone

log = logging.getLogger("authmilter")


RETRANSMIT_FIRST = 1.0  # seconds before the first retransmission (or the next server)
RETRANSMIT_MAX = 4.0  # the interval doubles up to this


def literal_name(name: str) -> dns.name.Name | None:
    """The absolute DNS name whose labels are exactly ``name``'s (None if it cannot be one).

    Names reach us built from what senders control (SPF macros expand local parts), so a
    backslash or a quote is a character of a label, never a zone-file escape, and non-ASCII
    labels are IDNA-encoded (raw UTF-8 when IDNA refuses them). Empty or over-long labels
    and names over 255 octets cannot be asked for.
    """
    labels = []
    for label in name.split("."):
        if label.isascii():
            raw = label.encode("ascii")
        else:
            try:
                raw = label.encode("idna")
            except UnicodeError:
                raw = label.encode("utf-8", "surrogateescape")
        labels.append(raw)
    try:
        return dns.name.Name([*labels, b""])
    except (dns.name.NameTooLong, dns.name.EmptyLabel, dns.name.LabelTooLong):
        return None


class WireResolver:
    """dnspython's ``Resolver.resolve`` as DnspythonResolver uses it, over :class:`_Exchange`.

    Returns a ``dns.resolver.Answer`` and raises dnspython's exceptions (NXDOMAIN,
    NoNameservers, Timeout, YXDOMAIN), so DnspythonResolver reads its results as it read
    dnspython's resolver's. ``heard()`` is called for every answer received.
    """

    cache = None  # no second cache: DnspythonResolver keeps the finished answers

    def __init__(self, servers: Iterable[tuple[str, int]], heard: Callable[[], None]) -> None:
        self.servers = tuple((ipaddress.ip_address(ip).compressed, port) for ip, port in servers)
        self.heard = heard

    def resolve(
        self,
        qname: dns.name.Name,
        rdtype: str,
        *,
        lifetime: float,
        search: bool = False,
        raise_on_no_answer: bool = False,
    ) -> dns.resolver.Answer:
        """One lookup of an absolute name (no search list; NODATA is an empty Answer)."""
        name = qname
        qtype = dns.rdatatype.from_text(rdtype)
        with _Exchange(self.servers, name, qtype, lifetime, self.heard) as exchange:
            response = exchange.run()
        rcode = response.rcode()
        if rcode == dns.rcode.NXDOMAIN:
            raise dns.resolver.NXDOMAIN(qnames=[name], responses={name: response})  # type: ignore[no-untyped-call]
        if rcode == dns.rcode.YXDOMAIN:
            raise dns.resolver.YXDOMAIN
        if not isinstance(response, dns.message.QueryMessage):  # from_wire gives one for QUERY
            raise dns.resolver.NoNameservers("not an answer to a query")  # type: ignore[no-untyped-call]
        answer = dns.resolver.Answer(name, qtype, dns.rdataclass.IN, response)
        if raise_on_no_answer and answer.rrset is None:
            raise dns.resolver.NoAnswer(response=response)  # type: ignore[no-untyped-call]
        return answer


class _Exchange:
    """One lookup on the wire: UDP from one socket per address family, retransmitted on it.

    The query (no EDNS, as dnspython's resolver sends it: answers over 512 bytes come with
    TC and are asked again over TCP) goes to the servers in turn at 0, 1, 3, 7... seconds;
    an answer to any copy counts, so a late answer to the first is never lost. NOERROR,
    NXDOMAIN and YXDOMAIN end the lookup; any other rcode (SERVFAIL, REFUSED...) rules that
    server out, and all of them out is NoNameservers at once; nothing usable by the
    deadline: dns.exception.Timeout.
    """

    def __init__(
        self,
        servers: tuple[tuple[str, int], ...],
        qname: dns.name.Name,
        rdtype: dns.rdatatype.RdataType,
        lifetime: float,
        heard: Callable[[], None],
    ) -> None:
        self.servers = servers
        self.deadline = time.monotonic() + lifetime
        self.query = dns.message.make_query(qname, rdtype)
        self.wire = self.query.to_wire()
        self.heard = heard
        self.socks: dict[int, socket.socket] = {}
        self.failed: dict[tuple[str, int], str] = {}
        self.asked: set[tuple[str, int]] = set()
        self.turn = 0
        self.interval = min(RETRANSMIT_FIRST, lifetime / 2)
        self.next_send = time.monotonic()

    def __enter__(self) -> _Exchange:
        return self

    def __exit__(self, *exc: object) -> None:
        for sock in self.socks.values():
            sock.close()

    def run(self) -> dns.message.Message:
        while True:
            now = time.monotonic()
            if now >= self.deadline:
                raise dns.exception.Timeout(timeout=0.0)  # type: ignore[no-untyped-call]
            if now >= self.next_send:
                self._send_next(now)
            wait = min(self.next_send, self.deadline) - now
            for sock in _wait_readable(list(self.socks.values()), wait):
                got = _receive(sock, self.query, self.asked)
                if got is None:
                    continue
                self.heard()
                response = self._usable(*got)
                if response is not None:
                    return response

    def _send_next(self, now: float) -> None:
        pending = [s for s in self.servers if s not in self.failed]
        server = pending[self.turn % len(pending)]
        self.turn += 1
        family = socket.AF_INET6 if ":" in server[0] else socket.AF_INET
        sock = self.socks.get(family)
        if sock is None:
            sock = self.socks[family] = socket.socket(family, socket.SOCK_DGRAM)
            sock.setblocking(False)
        with contextlib.suppress(OSError):  # unreachable now: the others, or the deadline
            sock.sendto(self.wire, server)
        self.asked.add(server)
        self.next_send = now + self.interval
        self.interval = min(self.interval * 2, RETRANSMIT_MAX)

    def _usable(
        self, server: tuple[str, int], response: dns.message.Message
    ) -> dns.message.Message | None:
        """The response if it ends the lookup; None to go on waiting (or asking)."""
        if response.flags & dns.flags.TC:
            over_tcp = self._tcp(server)
            if over_tcp is None:
                return None
            response = over_tcp
        rcode = response.rcode()
        if rcode in (dns.rcode.NOERROR, dns.rcode.NXDOMAIN, dns.rcode.YXDOMAIN):
            return response
        self._fail(server, dns.rcode.to_text(rcode))
        self.next_send = time.monotonic()  # ask the next server now
        return None

    def _tcp(self, server: tuple[str, int]) -> dns.message.Message | None:
        """A truncated UDP answer: the same question over TCP to the same server."""
        remaining = self.deadline - time.monotonic()
        if remaining <= 0:
            raise dns.exception.Timeout(timeout=0.0)  # type: ignore[no-untyped-call]
        try:
            return dns.query.tcp(self.query, server[0], timeout=remaining, port=server[1])
        except dns.exception.Timeout:
            raise dns.exception.Timeout from None
        except (OSError, dns.exception.DNSException) as exc:
            self._fail(server, f"TCP: {short_error(exc)}")
            return None

    def _fail(self, server: tuple[str, int], why: str) -> None:
        self.failed[server] = why
        if len(self.failed) == len(self.servers):
            servers = ", ".join(f"{ip}:{port} {text}" for (ip, port), text in self.failed.items())
            raise dns.resolver.NoNameservers(servers)  # type: ignore[no-untyped-call]


def system_nameservers() -> list[tuple[str, int]]:
    """The name servers of /etc/resolv.conf (dnspython reads it)."""
    conf = dns.resolver.Resolver(configure=True)
    out = []
    for ns in conf.nameservers:
        if isinstance(ns, str):
            out.append((ns, conf.port))
        else:  # dnspython >= 2.4 may hold Nameserver objects
            out.append((str(ns.address), int(getattr(ns, "port", conf.port))))  # type: ignore[attr-defined]
    return out


def _wait_readable(socks: list[socket.socket], timeout: float) -> list[socket.socket]:
    if timeout <= 0:
        return []
    poller = select.poll()
    by_fd = {}
    for sock in socks:
        poller.register(sock.fileno(), select.POLLIN)
        by_fd[sock.fileno()] = sock
    return [by_fd[fd] for fd, _ in poller.poll(timeout * 1000)]


def _receive(
    sock: socket.socket, query: dns.message.Message, asked: set[tuple[str, int]]
) -> tuple[tuple[str, int], dns.message.Message] | None:
    """One datagram: an answer to ``query`` from a server it was sent to, or None."""
    try:
        wire, source = sock.recvfrom(65535)
    except OSError:  # nothing after all, or an ICMP error reported on the socket
        return None
    server = (ipaddress.ip_address(source[0]).compressed, int(source[1]))
    if server not in asked:
        return None
    try:
        response = dns.message.from_wire(wire, ignore_trailing=True)
    except dns.exception.DNSException:
        return None
    if not query.is_response(response):
        return None
    return server, response


def short_error(exc: Exception) -> str:
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return text[:200]
