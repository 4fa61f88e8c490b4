"""Helpers for packaging/ci-check, run with Debian's /usr/bin/python3 (stdlib + dnspython).

    cihelper.py dns PORTFILE [ZONEFILE]
                                  serve a tiny authoritative zone on 127.0.0.1 (UDP and TCP)
                                  until SIGTERM; the port is written to PORTFILE; records in
                                  ZONEFILE (RFC 1035, read at each query) are served too, so
                                  a record can be published while it runs
    cihelper.py freeport          print a free TCP port on 127.0.0.1
    cihelper.py send PORT         send one message by SMTP to 127.0.0.1:PORT, print the queue id

Loopback only. The zone makes the CI message pass SPF (ip4:127.0.0.1) and DMARC (p=none).
"""

from __future__ import annotations

import signal
import smtplib
import socket
import socketserver
import struct
import sys
import threading
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
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

SENDER = "sender@example.test"
RECIPIENT = "rcpt@dest.test"
ZONE: dict[tuple[str, str], list[str]] = {
    ("example.test.", "TXT"): ['"v=spf1 ip4:127.0.0.1 -all"'],
    ("_dmarc.example.test.", "TXT"): ['"v=DMARC1; p=none"'],
    ("example.test.", "A"): ["127.0.0.1"],
}


PUBLISHED: list[Path] = []  # the optional ZONEFILE


def records() -> dict[tuple[str, str], list[str]]:
    """ZONE plus the records of the zone file, as it is now (an unreadable file adds none)."""
    out = {key: list(values) for key, values in ZONE.items()}
    for path in PUBLISHED:
        if not path.exists():  # not published yet
            continue
        try:
            zone = dns.zone.from_text(
                path.read_text(encoding="utf-8"),
                origin=dns.name.root,
                relativize=False,
                check_origin=False,
            )
        except (OSError, UnicodeDecodeError, dns.exception.DNSException) as exc:
            print(f"cihelper: {path}: {exc}", file=sys.stderr)
            continue
        for name, node in zone.nodes.items():
            for rdataset in node.rdatasets:
                if rdataset.rdclass == dns.rdataclass.IN:
                    key = (name.to_text().lower(), dns.rdatatype.to_text(rdataset.rdtype))
                    out.setdefault(key, []).extend(rdata.to_text() for rdata in rdataset)
    return out


def answer(wire: bytes) -> bytes | None:
    """The response to one DNS query in wire format (None for garbage)."""
    try:
        query = dns.message.from_wire(wire)
    except Exception:  # noqa: BLE001 (any malformed packet is simply dropped)
        return None
    response = dns.message.make_response(query)
    response.flags |= dns.flags.AA
    if not query.question:
        response.set_rcode(dns.rcode.FORMERR)
        return response.to_wire()
    question = query.question[0]
    qname = question.name.to_text().lower()
    qtype = dns.rdatatype.to_text(question.rdtype)
    zone = records()
    values = zone.get((qname, qtype))
    if values:
        response.answer.append(dns.rrset.from_text_list(question.name, 60, "IN", qtype, values))
    elif not any(name == qname for name, _ in zone):
        response.set_rcode(dns.rcode.NXDOMAIN)
    return response.to_wire()


class _Udp(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        data, sock = self.request
        reply = answer(data)
        if reply is not None:
            sock.sendto(reply, self.client_address)


class _Tcp(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        conn: socket.socket = self.request
        header = conn.recv(2)
        if len(header) < 2:
            return
        (length,) = struct.unpack("!H", header)
        data = b""
        while len(data) < length:
            chunk = conn.recv(length - len(data))
            if not chunk:
                return
            data += chunk
        reply = answer(data)
        if reply is not None:
            conn.sendall(struct.pack("!H", len(reply)) + reply)


def serve_dns(port_file: str) -> int:
    """Serve ZONE on one 127.0.0.1 port over UDP and TCP until SIGTERM."""
    for _attempt in range(20):
        udp = socketserver.ThreadingUDPServer(("127.0.0.1", 0), _Udp)
        port = udp.server_address[1]
        try:
            tcp = socketserver.ThreadingTCPServer(("127.0.0.1", port), _Tcp)
        except OSError:
            udp.server_close()
            continue
        break
    else:
        print("cihelper: no free port for DNS", file=sys.stderr)
        return 1
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    for server in (udp, tcp):
        server.daemon_threads = True
        threading.Thread(target=server.serve_forever, daemon=True).start()
    Path(port_file).write_text(f"{port}\n", encoding="ascii")
    stop.wait()
    for server in (udp, tcp):
        server.shutdown()
        server.server_close()
    return 0


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def send(port: int) -> int:
    """Send the CI message to Postfix on 127.0.0.1:port; print the queue id."""
    msg = EmailMessage()
    msg["From"] = SENDER
    msg["To"] = RECIPIENT
    msg["Subject"] = "authmilter ci-check"
    msg["Date"] = formatdate()
    msg["Message-ID"] = make_msgid(domain="example.test")
    msg.set_content("This message was sent by packaging/ci-check.\n")
    with smtplib.SMTP("127.0.0.1", port, local_hostname="mail.example.test", timeout=60) as smtp:
        smtp.ehlo()
        code, text = smtp.mail(SENDER)
        if code != 250:
            print(f"MAIL FROM: {code} {text.decode()}", file=sys.stderr)
            return 1
        code, text = smtp.rcpt(RECIPIENT)
        if code != 250:
            print(f"RCPT TO: {code} {text.decode()}", file=sys.stderr)
            return 1
        code, text = smtp.data(msg.as_bytes())
    reply = text.decode(errors="replace")
    if code != 250 or "queued as " not in reply:
        print(f"DATA: {code} {reply}", file=sys.stderr)
        return 1
    print(reply.rsplit("queued as ", 1)[1].strip())
    return 0


def main(argv: list[str]) -> int:
    """Dispatch the subcommands described in the module docstring."""
    if argv[:1] == ["dns"] and len(argv) in (2, 3):
        PUBLISHED.extend(Path(a) for a in argv[2:])
        return serve_dns(argv[1])
    if argv == ["freeport"]:
        print(free_port())
        return 0
    if argv[:1] == ["send"] and len(argv) == 2:
        return send(int(argv[1]))
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
