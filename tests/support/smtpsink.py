"""A loopback SMTP server that accepts everything and keeps what it received.

Speaks enough ESMTP for Postfix's smtp client (EHLO/HELO, MAIL, RCPT, DATA, RSET, NOOP,
QUIT; 8BITMIME, SMTPUTF8, PIPELINING, SIZE)::

    with SmtpSink() as sink:
        ...  # relayhost = [127.0.0.1]:{sink.port}
        msg = sink.wait_for(1, timeout=30)[0]
        assert b"dkim=pass" in msg.data
"""

from __future__ import annotations

import re
import socketserver
import threading
import time
from dataclasses import dataclass, field
from email import message_from_bytes
from email.message import Message

from tests.support.service import Service, serve_in_thread, stop_serving


@dataclass(frozen=True, slots=True)
class ReceivedMessage:
    """One message as received: the raw DATA bytes (dot-unstuffed, CRLF) and the envelope."""

    mail_from: str
    rcpt_to: tuple[str, ...]
    data: bytes
    helo: str = ""
    mail_args: tuple[str, ...] = field(default=())

    def message(self) -> Message:
        """Parsed with the stdlib (for convenient header reading only, never for DKIM)."""
        return message_from_bytes(self.data)

    def header_fields(self) -> list[tuple[str, bytes]]:
        """(name, raw value after the colon) for every header field, in order."""
        from tests.support.milterclient import split_headers

        fields, _body = split_headers(self.data)
        return [(n.decode("utf-8", "surrogateescape"), v) for n, v in fields]

    def header_values(self, name: str) -> list[str]:
        """Every value of header ``name`` (case-insensitive), unfolded, UTF-8, in order."""
        return [
            re.sub(r"\r?\n[ \t]", " ", v.decode("utf-8", "replace")).strip()
            for n, v in self.header_fields()
            if n.lower() == name.lower()
        ]


class SmtpSink(Service):
    """Threaded loopback SMTP server; thread-safe list of :class:`ReceivedMessage`."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self._lock = threading.Condition()
        self._messages: list[ReceivedMessage] = []
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._host, self._want_port = host, port
        self.port = 0

    @property
    def messages(self) -> list[ReceivedMessage]:
        """A copy of what has been received so far."""
        with self._lock:
            return list(self._messages)

    def clear(self) -> None:
        """Forget received messages."""
        with self._lock:
            self._messages.clear()

    def wait_for(self, n: int, timeout: float = 30.0) -> list[ReceivedMessage]:
        """Block until at least ``n`` messages arrived; raise TimeoutError otherwise."""
        deadline = time.monotonic() + timeout
        with self._lock:
            while len(self._messages) < n:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(
                        f"SMTP sink got {len(self._messages)} of {n} messages in {timeout}s"
                    )
                self._lock.wait(left)
            return list(self._messages)

    def _store(self, msg: ReceivedMessage) -> None:
        with self._lock:
            self._messages.append(msg)
            self._lock.notify_all()

    def start(self) -> SmtpSink:
        """Listen and serve in a daemon thread."""
        self._server = _Server((self._host, self._want_port), _Handler)
        self._server.sink = self
        self.port = self._server.server_address[1]
        self._thread = serve_in_thread(self._server)
        return self

    def stop(self) -> None:
        """Stop listening and wait for the server thread."""
        stop_serving(self._server, self._thread)
        self._server = self._thread = None


class _Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True
    sink: SmtpSink


class _Handler(socketserver.StreamRequestHandler):
    timeout = 120

    def _reply(self, text: str) -> None:
        self.wfile.write(text.encode() + b"\r\n")
        self.wfile.flush()

    def handle(self) -> None:
        server: _Server = self.server  # type: ignore[assignment]
        self._reply("220 sink.test ESMTP authmilter test sink")
        helo, mail_from = "", None
        mail_args: tuple[str, ...] = ()
        rcpts: list[str] = []
        while True:
            line = self.rfile.readline(65536)
            if not line:
                return
            cmd = line.rstrip(b"\r\n").decode("utf-8", "surrogateescape")
            verb = cmd[:4].upper()
            arg = cmd[5:] if len(cmd) > 4 else ""
            if verb == "EHLO":
                helo = arg.strip()
                self._reply(
                    "250-sink.test\r\n250-PIPELINING\r\n250-SIZE 104857600\r\n"
                    "250-8BITMIME\r\n250-SMTPUTF8\r\n250 ENHANCEDSTATUSCODES"
                )
            elif verb == "HELO":
                helo = arg.strip()
                self._reply("250 sink.test")
            elif verb == "MAIL":
                addr, args = _path(arg, "FROM:")
                mail_from, mail_args, rcpts = addr, args, []
                self._reply("250 2.1.0 Ok")
            elif verb == "RCPT":
                if mail_from is None:
                    self._reply("503 5.5.1 Error: need MAIL command")
                    continue
                rcpts.append(_path(arg, "TO:")[0])
                self._reply("250 2.1.5 Ok")
            elif verb == "DATA":
                if mail_from is None or not rcpts:
                    self._reply("503 5.5.1 Error: need RCPT command")
                    continue
                self._reply("354 End data with <CR><LF>.<CR><LF>")
                data = self._read_data()
                if data is None:
                    return
                server.sink._store(
                    ReceivedMessage(mail_from, tuple(rcpts), data, helo, tuple(mail_args))
                )
                self._reply("250 2.0.0 Ok: queued")
                mail_from, rcpts = None, []
            elif verb == "RSET":
                mail_from, rcpts = None, []
                self._reply("250 2.0.0 Ok")
            elif verb == "NOOP":
                self._reply("250 2.0.0 Ok")
            elif verb == "QUIT":
                self._reply("221 2.0.0 Bye")
                return
            else:
                self._reply("502 5.5.2 Error: command not recognized")

    def _read_data(self) -> bytes | None:
        lines: list[bytes] = []
        while True:
            line = self.rfile.readline(1 << 20)
            if not line:
                return None
            if line in (b".\r\n", b".\n"):
                return b"".join(lines)
            if line.startswith(b"."):
                line = line[1:]
            lines.append(line)


def _path(arg: str, prefix: str) -> tuple[str, tuple[str, ...]]:
    rest = arg.strip()
    if rest.upper().startswith(prefix):
        rest = rest[len(prefix) :].strip()
    if rest.startswith("<"):
        addr, _, params = rest[1:].partition(">")
    else:
        addr, _, params = rest.partition(" ")
    return addr, tuple(params.split())
