"""MTA side of the Sendmail milter protocol, version 6, for tests and the bench harness.

One :class:`MilterClient` is one MTA-to-milter connection (like one Postfix smtpd talking
to a milter). It negotiates options, then honours what the milter asked for: it skips the
steps the milter said ``SMFIP_NO*`` for, does not wait for replies it said ``SMFIP_NR_*``
for, stops sending body chunks after ``SMFIR_SKIP``, and strips the leading space of header
values the way Postfix does unless the milter asked for ``SMFIP_HDR_LEADSPC``::

    with MilterClient("unix:/tmp/x/authmilter.sock") as m:
        result = m.send_message(raw, client_ip="192.0.2.1", helo="mx.example.net",
                                mail_from="a@example.org", rcpts=["b@example.com"])
        assert result.action == "accept" and result.added_headers()

Each call is guarded by a lock, so one client may be shared between threads (calls are
then serialised); for load use one client per thread.
"""

from __future__ import annotations

import contextlib
import functools
import ipaddress
import socket
import struct
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from types import TracebackType

PROTOCOL_VERSION = 6
CHUNK = 65535

# commands (MTA -> milter)
SMFIC_ABORT = b"A"
SMFIC_BODY = b"B"
SMFIC_CONNECT = b"C"
SMFIC_MACRO = b"D"
SMFIC_BODYEOB = b"E"
SMFIC_HELO = b"H"
SMFIC_QUIT_NC = b"K"
SMFIC_HEADER = b"L"
SMFIC_MAIL = b"M"
SMFIC_EOH = b"N"
SMFIC_OPTNEG = b"O"
SMFIC_QUIT = b"Q"
SMFIC_RCPT = b"R"
SMFIC_DATA = b"T"
SMFIC_UNKNOWN = b"U"

# replies (milter -> MTA)
SMFIR_ADDRCPT = b"+"
SMFIR_DELRCPT = b"-"
SMFIR_ADDRCPT_PAR = b"2"
SMFIR_SHUTDOWN = b"4"
SMFIR_ACCEPT = b"a"
SMFIR_REPLBODY = b"b"
SMFIR_CONTINUE = b"c"
SMFIR_DISCARD = b"d"
SMFIR_CHGFROM = b"e"
SMFIR_CONN_FAIL = b"f"
SMFIR_ADDHEADER = b"h"
SMFIR_INSHEADER = b"i"
SMFIR_SETSYMLIST = b"l"
SMFIR_CHGHEADER = b"m"
SMFIR_PROGRESS = b"p"
SMFIR_QUARANTINE = b"q"
SMFIR_REJECT = b"r"
SMFIR_SKIP = b"s"
SMFIR_TEMPFAIL = b"t"
SMFIR_REPLYCODE = b"y"

# protocol flags
SMFIP_NOCONNECT = 1 << 0
SMFIP_NOHELO = 1 << 1
SMFIP_NOMAIL = 1 << 2
SMFIP_NORCPT = 1 << 3
SMFIP_NOBODY = 1 << 4
SMFIP_NOHDRS = 1 << 5
SMFIP_NOEOH = 1 << 6
SMFIP_NR_HDR = 1 << 7
SMFIP_NOUNKNOWN = 1 << 8
SMFIP_NODATA = 1 << 9
SMFIP_SKIP = 1 << 10
SMFIP_RCPT_REJ = 1 << 11
SMFIP_NR_CONN = 1 << 12
SMFIP_NR_HELO = 1 << 13
SMFIP_NR_MAIL = 1 << 14
SMFIP_NR_RCPT = 1 << 15
SMFIP_NR_DATA = 1 << 16
SMFIP_NR_UNKN = 1 << 17
SMFIP_NR_EOH = 1 << 18
SMFIP_NR_BODY = 1 << 19
SMFIP_HDR_LEADSPC = 1 << 20
ALL_PROTOCOL = (1 << 21) - 1  # everything up to HDR_LEADSPC (no MDS_* sizes)

# actions
SMFIF_ADDHDRS = 1 << 0
SMFIF_CHGBODY = 1 << 1
SMFIF_ADDRCPT = 1 << 2
SMFIF_DELRCPT = 1 << 3
SMFIF_CHGHDRS = 1 << 4
SMFIF_QUARANTINE = 1 << 5
SMFIF_CHGFROM = 1 << 6
SMFIF_ADDRCPT_PAR = 1 << 7
SMFIF_SETSYMLIST = 1 << 8
ALL_ACTIONS = (1 << 9) - 1

# macro stages for SMFIR optneg symbol lists
STAGES = {0: "connect", 1: "helo", 2: "mail", 3: "rcpt", 4: "data", 5: "eom", 6: "eoh"}

_FINAL = {
    SMFIR_ACCEPT: "accept",
    SMFIR_CONTINUE: "continue",
    SMFIR_DISCARD: "discard",
    SMFIR_REJECT: "reject",
    SMFIR_TEMPFAIL: "tempfail",
    SMFIR_REPLYCODE: "replycode",
    SMFIR_SKIP: "skip",
    SMFIR_CONN_FAIL: "conn_fail",
    SMFIR_SHUTDOWN: "shutdown",
}


class MilterProtocolError(Exception):
    """The milter said something the protocol does not allow, or hung up."""


@dataclass(frozen=True, slots=True)
class Modification:
    """One end-of-message request: ``kind`` is add_header, insert_header, change_header,
    quarantine, replace_body, add_rcpt, del_rcpt, change_from."""

    kind: str
    name: str = ""
    value: bytes = b""
    index: int = 0  # insert_header: position (0 = top); change_header: 1-based occurrence
    args: tuple[str, ...] = ()

    @property
    def text(self) -> str:
        """The value decoded as UTF-8 (surrogateescape)."""
        return self.value.decode("utf-8", "surrogateescape")


@dataclass(slots=True)
class Reply:
    """A final answer to one command."""

    action: str  # accept continue discard reject tempfail replycode skip conn_fail shutdown
    text: str = ""  # replycode: "550 5.7.26 ..." (multi-line replies keep their CRLFs)
    modifications: list[Modification] = field(default_factory=list)
    stage: str = ""  # the command it answered: connect helo mail rcpt data header eoh body eom

    @property
    def code(self) -> int | None:
        """The SMTP reply code of a ``replycode`` answer."""
        head = self.text[:3]
        return int(head) if self.action == "replycode" and head.isdigit() else None

    @property
    def smtp_class(self) -> str:
        """What the MTA would do: ``accept``, ``reject`` (5xx), ``tempfail`` (4xx), ``discard``."""
        if self.action == "replycode":
            return "reject" if self.text.startswith("5") else "tempfail"
        if self.action in ("continue", "skip"):
            return "accept"
        return self.action

    def added_headers(self) -> list[Modification]:
        """add_header and insert_header requests, in order."""
        return [m for m in self.modifications if m.kind in ("add_header", "insert_header")]

    def header_changes(self) -> list[Modification]:
        """change_header requests (an empty value deletes the occurrence)."""
        return [m for m in self.modifications if m.kind == "change_header"]

    def quarantine(self) -> str | None:
        """The quarantine reason, if the milter asked for one."""
        for m in self.modifications:
            if m.kind == "quarantine":
                return m.text
        return None


def split_headers(raw: bytes) -> tuple[list[tuple[bytes, bytes]], bytes]:
    """Split a message into (name, value-after-colon) fields and the body, bytes kept exactly.

    The value keeps its leading whitespace and its folds (with the file's line endings); the
    final line ending of each field is dropped. The body is returned with CRLF line endings
    (as an MTA sends it); an LF-only file is converted.
    """
    if b"\r\n" not in raw and b"\n" in raw:
        raw = raw.replace(b"\n", b"\r\n")
    lines = raw.split(b"\r\n")
    fields: list[tuple[bytes, bytes]] = []
    i = 0
    while i < len(lines):
        line = lines[i]
        if line == b"":
            i += 1
            break
        if line[:1] in (b" ", b"\t") and fields:
            name, value = fields[-1]
            fields[-1] = (name, value + b"\r\n" + line)
        else:
            name, colon, value = line.partition(b":")
            if not colon:  # not a header: the body starts here (as Postfix would treat it)
                break
            fields.append((name.rstrip(b" \t"), value))
        i += 1
    body = b"\r\n".join(lines[i:])
    return fields, body


def _cstr(value: str | bytes) -> bytes:
    data = value if isinstance(value, bytes) else value.encode("utf-8", "surrogateescape")
    return data + b"\0"


def _macro_data(macros: Mapping[str, str]) -> bytes:
    return b"".join(_cstr(k) + _cstr(v) for k, v in macros.items())


class MilterClient:
    """One connection to a milter, speaking protocol version 6 as the MTA."""

    def __init__(
        self,
        address: str,
        *,
        timeout: float = 30.0,
        actions: int = ALL_ACTIONS,
        protocol: int = ALL_PROTOCOL,
    ) -> None:
        """``address``: ``unix:/path``, ``local:/path``, ``inet:PORT@HOST``, ``inet6:PORT@HOST``."""
        self.address = address
        self.timeout = timeout
        self.offered_actions = actions
        self.offered_protocol = protocol
        self.version = 0
        self.actions = 0  # what the milter asked to be allowed
        self.protocol = 0  # the milter's SMFIP_* flags
        self.symlists: dict[str, list[str]] = {}
        self._lock = threading.RLock()
        self._sock: socket.socket | None = None
        self._buf = bytearray()
        self._skip_body = False

    # ------------------------------------------------------------------ transport

    def open(self) -> MilterClient:
        """Connect and negotiate options."""
        with self._lock:
            self._sock = _connect(self.address, self.timeout)
            self._negotiate()
        return self

    def close(self) -> None:
        """Close the socket without saying QUIT."""
        with self._lock:
            if self._sock is not None:
                self._sock.close()
                self._sock = None

    def __enter__(self) -> MilterClient:
        return self.open() if self._sock is None else self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            if self._sock is not None and exc_type is None:
                self.quit()
        finally:
            self.close()

    def _send(self, cmd: bytes, data: bytes = b"") -> None:
        if self._sock is None:
            raise MilterProtocolError("not connected")
        self._sock.sendall(struct.pack("!I", len(data) + 1) + cmd + data)

    def _read_packet(self) -> tuple[bytes, bytes]:
        head = self._read_exact(4)
        (length,) = struct.unpack("!I", head)
        if length < 1 or length > 1 << 24:
            raise MilterProtocolError(f"bad packet length {length}")
        packet = self._read_exact(length)
        return packet[:1], packet[1:]

    def _read_exact(self, n: int) -> bytes:
        assert self._sock is not None
        while len(self._buf) < n:
            chunk = self._sock.recv(max(65536, n - len(self._buf)))
            if not chunk:
                raise MilterProtocolError("milter closed the connection")
            self._buf += chunk
        data = bytes(self._buf[:n])
        del self._buf[:n]
        return data

    # ------------------------------------------------------------------ protocol

    def _negotiate(self) -> None:
        self._send(
            SMFIC_OPTNEG,
            struct.pack("!III", PROTOCOL_VERSION, self.offered_actions, self.offered_protocol),
        )
        cmd, data = self._read_packet()
        if cmd != SMFIC_OPTNEG or len(data) < 12:
            raise MilterProtocolError(f"bad option negotiation reply {cmd!r}")
        self.version, self.actions, self.protocol = struct.unpack("!III", data[:12])
        rest = data[12:]
        while len(rest) >= 4:
            (stage,) = struct.unpack("!I", rest[:4])
            names, _, rest = rest[4:].partition(b"\0")
            self.symlists[STAGES.get(stage, str(stage))] = names.decode().split()

    def _wants(self, no_flag: int) -> bool:
        return not self.protocol & no_flag

    def _command(
        self,
        stage: str,
        cmd: bytes,
        data: bytes,
        no_flag: int,
        nr_flag: int,
        *,
        macros: Mapping[str, str] | None = None,
    ) -> Reply | None:
        """Send macros then a command; None when skipped or the milter sends no reply."""
        if macros:
            self._send(SMFIC_MACRO, cmd + _macro_data(macros))
        if no_flag and not self._wants(no_flag):
            return None
        self._send(cmd, data)
        if nr_flag and self.protocol & nr_flag:
            return None
        return self._read_reply(stage)

    def _read_reply(self, stage: str) -> Reply:
        mods: list[Modification] = []
        while True:
            cmd, data = self._read_packet()
            if cmd == SMFIR_PROGRESS:
                continue
            if cmd in _FINAL:
                text = data.rstrip(b"\0").decode("utf-8", "surrogateescape")
                return Reply(_FINAL[cmd], text, mods, stage)
            if stage != "eom":
                raise MilterProtocolError(f"modification {cmd!r} outside end of message")
            mods.append(_modification(cmd, data))

    # ------------------------------------------------------------------ SMTP events

    def connect(
        self,
        hostname: str,
        family: str = "4",
        address: str = "",
        port: int = 0,
        macros: Mapping[str, str] | None = None,
    ) -> Reply | None:
        """SMFIC_CONNECT; ``family`` is ``4``, ``6``, ``L`` (unix) or ``U`` (unknown)."""
        with self._lock:
            if family == "U":
                data = _cstr(hostname) + b"U"
            else:
                data = _cstr(hostname) + family.encode() + struct.pack("!H", port) + _cstr(address)
            return self._command(
                "connect", SMFIC_CONNECT, data, SMFIP_NOCONNECT, SMFIP_NR_CONN, macros=macros
            )

    def helo(self, name: str, macros: Mapping[str, str] | None = None) -> Reply | None:
        """SMFIC_HELO."""
        with self._lock:
            return self._command(
                "helo", SMFIC_HELO, _cstr(name), SMFIP_NOHELO, SMFIP_NR_HELO, macros=macros
            )

    def mail(
        self, sender: str, *esmtp: str, macros: Mapping[str, str] | None = None
    ) -> Reply | None:
        """SMFIC_MAIL; ``sender`` without brackets ("" = null sender)."""
        with self._lock:
            data = _cstr(f"<{sender}>") + b"".join(_cstr(a) for a in esmtp)
            return self._command(
                "mail", SMFIC_MAIL, data, SMFIP_NOMAIL, SMFIP_NR_MAIL, macros=macros
            )

    def rcpt(
        self, recipient: str, *esmtp: str, macros: Mapping[str, str] | None = None
    ) -> Reply | None:
        """SMFIC_RCPT."""
        with self._lock:
            data = _cstr(f"<{recipient}>") + b"".join(_cstr(a) for a in esmtp)
            return self._command(
                "rcpt", SMFIC_RCPT, data, SMFIP_NORCPT, SMFIP_NR_RCPT, macros=macros
            )

    def data(self, macros: Mapping[str, str] | None = None) -> Reply | None:
        """SMFIC_DATA."""
        with self._lock:
            return self._command(
                "data", SMFIC_DATA, b"", SMFIP_NODATA, SMFIP_NR_DATA, macros=macros
            )

    def header(
        self, name: str | bytes, value: str | bytes, macros: Mapping[str, str] | None = None
    ) -> Reply | None:
        """SMFIC_HEADER with the value sent exactly as given."""
        with self._lock:
            return self._command(
                "header",
                SMFIC_HEADER,
                _cstr(name) + _cstr(value),
                SMFIP_NOHDRS,
                SMFIP_NR_HDR,
                macros=macros,
            )

    def eoh(self, macros: Mapping[str, str] | None = None) -> Reply | None:
        """SMFIC_EOH."""
        with self._lock:
            self._skip_body = False
            return self._command("eoh", SMFIC_EOH, b"", SMFIP_NOEOH, SMFIP_NR_EOH, macros=macros)

    def body(self, chunk: bytes) -> Reply | None:
        """SMFIC_BODY for one chunk (split into 65535-byte pieces); skipped after SMFIR_SKIP."""
        with self._lock:
            reply = None
            for start in range(0, len(chunk), CHUNK):
                if self._skip_body or not self._wants(SMFIP_NOBODY):
                    return None
                reply = self._command(
                    "body", SMFIC_BODY, chunk[start : start + CHUNK], 0, SMFIP_NR_BODY
                )
                if reply is not None and reply.action == "skip":
                    self._skip_body = True
                    return reply
                if reply is not None and reply.action != "continue":
                    return reply
            return reply

    def eom(self, macros: Mapping[str, str] | None = None) -> Reply:
        """SMFIC_BODYEOB: the final action and every modification request."""
        with self._lock:
            reply = self._command("eom", SMFIC_BODYEOB, b"", 0, 0, macros=macros)
            assert reply is not None
            return reply

    def abort(self) -> None:
        """SMFIC_ABORT: forget the current message (no reply)."""
        with self._lock:
            self._send(SMFIC_ABORT)

    def quit(self) -> None:
        """SMFIC_QUIT and close."""
        with self._lock:
            if self._sock is not None:
                with contextlib.suppress(OSError):
                    self._send(SMFIC_QUIT)
            self.close()

    # ------------------------------------------------------------------ convenience

    def send_message(
        self,
        raw: bytes,
        *,
        client_ip: str | None = "192.0.2.1",
        helo: str = "mail.example.net",
        mail_from: str = "sender@example.net",
        rcpts: Sequence[str] = ("rcpt@example.com",),
        macros: Mapping[str, str] | None = None,
        client_name: str | None = None,
        client_port: int = 40000,
        queue_id: str = "4ABCDEF123",
        header_eol: bytes | None = None,
    ) -> Reply:
        """One whole transaction on this connection, like Postfix's smtpd would send it.

        ``macros`` are extra macros sent with MAIL (e.g. ``{"{auth_authen}": "alice"}``);
        ``j`` and ``{daemon_name}`` go with CONNECT (override them via ``macros``). The reply
        returned is the first non-continue one (the transaction stops there, as an MTA
        would) or the end-of-message one. ``header_eol``: replace CRLF inside folded header
        values (Postfix sends b"\\n"); None keeps the file's bytes.
        """
        with self._lock:
            extra = dict(macros or {})
            conn_macros = {
                "j": extra.pop("j", "mx.test.example"),
                "{daemon_name}": extra.pop("{daemon_name}", "mx.test.example"),
                "v": "Postfix 3.7 test",
            }
            mail_macros = {"i": queue_id, **extra}
            name = client_name if client_name is not None else f"[{client_ip}]"
            steps: list[Callable[[], Reply | None]]
            if client_ip is None:
                steps = [lambda: self.connect(name or "unknown", "U", macros=conn_macros)]
            else:
                family = "6" if ipaddress.ip_address(client_ip).version == 6 else "4"
                steps = [
                    lambda: self.connect(name, family, client_ip, client_port, macros=conn_macros)
                ]
            steps.append(lambda: self.helo(helo))
            steps.append(lambda: self.mail(mail_from, macros=mail_macros))
            final = _first_final(steps)
            if final is not None:
                if final.stage != "connect":
                    self.abort()
                return final
            accepted = 0
            last: Reply | None = None
            for rcpt in rcpts:
                reply = self.rcpt(rcpt, macros={"i": queue_id, "{rcpt_addr}": rcpt})
                if reply is None or reply.action == "continue":
                    accepted += 1
                elif reply.action == "accept":
                    return reply
                else:
                    last = reply
            if not accepted:
                assert last is not None
                self.abort()
                return last
            fields, body = split_headers(raw)
            steps = [lambda: self.data(macros={"i": queue_id})]
            lead = bool(self.protocol & SMFIP_HDR_LEADSPC)
            for hname, raw_value in fields:
                value = raw_value[1:] if not lead and raw_value.startswith(b" ") else raw_value
                # (Postfix eats one space after the colon, never a tab)
                if header_eol is not None:
                    value = value.replace(b"\r\n", header_eol)
                steps.append(functools.partial(self.header, hname, value, macros={"i": queue_id}))
            steps.append(lambda: self.eoh(macros={"i": queue_id}))
            steps.append(lambda: self.body(body) if body else None)
            final = _first_final(steps)
            if final is not None:
                if final.action != "accept":
                    self.abort()
                return final
            return self.eom(macros={"i": queue_id})


def _first_final(steps: Iterable[Callable[[], Reply | None]]) -> Reply | None:
    """Run steps in order; return the first reply that ends the transaction."""
    for step in steps:
        reply = step()
        if reply is not None and reply.action not in ("continue", "skip"):
            return reply
    return None


def _modification(cmd: bytes, data: bytes) -> Modification:
    if cmd == SMFIR_ADDHEADER:
        name, value = _two(data)
        return Modification("add_header", name, value)
    if cmd in (SMFIR_INSHEADER, SMFIR_CHGHEADER):
        (index,) = struct.unpack("!I", data[:4])
        name, value = _two(data[4:])
        kind = "insert_header" if cmd == SMFIR_INSHEADER else "change_header"
        return Modification(kind, name, value, index)
    if cmd == SMFIR_QUARANTINE:
        return Modification("quarantine", value=data.rstrip(b"\0"))
    if cmd == SMFIR_REPLBODY:
        return Modification("replace_body", value=data)
    if cmd in (SMFIR_ADDRCPT, SMFIR_DELRCPT, SMFIR_ADDRCPT_PAR, SMFIR_CHGFROM):
        parts = tuple(p.decode("utf-8", "surrogateescape") for p in data.split(b"\0") if p)
        kind = {
            SMFIR_ADDRCPT: "add_rcpt",
            SMFIR_DELRCPT: "del_rcpt",
            SMFIR_ADDRCPT_PAR: "add_rcpt",
            SMFIR_CHGFROM: "change_from",
        }[cmd]
        return Modification(kind, parts[0] if parts else "", args=parts[1:])
    raise MilterProtocolError(f"unknown reply {cmd!r}")


def _two(data: bytes) -> tuple[str, bytes]:
    name, _, rest = data.partition(b"\0")
    value = rest[:-1] if rest.endswith(b"\0") else rest
    return name.decode("utf-8", "surrogateescape"), value


def _connect(address: str, timeout: float) -> socket.socket:
    kind, _, rest = address.partition(":")
    if kind in ("unix", "local"):
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        target: object = rest
    elif kind in ("inet", "inet6"):
        port, _, host = rest.partition("@")
        host = host.strip("[]") or ("127.0.0.1" if kind == "inet" else "::1")
        family = socket.AF_INET6 if kind == "inet6" else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        target = (host, int(port))
    else:
        raise ValueError(f"bad milter address {address!r}")
    sock.settimeout(timeout)
    try:
        sock.connect(target)  # type: ignore[arg-type]
    except OSError:
        sock.close()
        raise
    return sock
