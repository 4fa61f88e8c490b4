"""A stand-in Dovecot auth server, so a test Postfix can do SMTP AUTH without Dovecot.

Postfix speaks the Dovecot auth protocol (``smtpd_sasl_type = dovecot``) over a unix
socket: we answer the handshake, offer PLAIN, check the username and password against a
dict and reply ``OK <id> user=NAME``. Postfix then passes ``{auth_authen}`` = NAME to the
milter, exactly as with a real Dovecot.
"""

from __future__ import annotations

import base64
import binascii
import os
import secrets
import socketserver
import threading
from collections.abc import Mapping
from pathlib import Path

from tests.support.service import Service, serve_in_thread, stop_serving


class FakeDovecotAuth(Service):
    """Serve the Dovecot auth protocol (version 1.x, mechanism PLAIN) on a unix socket."""

    def __init__(self, path: str | Path, users: Mapping[str, str]) -> None:
        self.path = Path(path)
        self.users = dict(users)
        self.attempts: list[tuple[str, bool]] = []  # (user, succeeded)
        self._lock = threading.Lock()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    def check(self, resp_b64: str) -> tuple[str, bool]:
        """Decode a PLAIN response and check it."""
        try:
            _authzid, user, password = base64.b64decode(resp_b64).decode().split("\0")
        except (binascii.Error, UnicodeDecodeError, ValueError):
            return "", False
        ok = self.users.get(user) == password
        with self._lock:
            self.attempts.append((user, ok))
        return user, ok

    def start(self) -> FakeDovecotAuth:
        """Listen (socket mode 0666, so Postfix's unprivileged smtpd can connect)."""
        if self.path.exists():
            self.path.unlink()
        self._server = _Server(str(self.path), _Handler)
        self._server.auth = self
        os.chmod(self.path, 0o666)  # noqa: S103 (smtpd runs as "postfix")
        self._thread = serve_in_thread(self._server)
        return self

    def stop(self) -> None:
        """Stop serving and remove the socket."""
        stop_serving(self._server, self._thread)
        self._server = self._thread = None
        if self.path.exists():
            self.path.unlink()


class _Server(socketserver.ThreadingUnixStreamServer):
    daemon_threads = True
    auth: FakeDovecotAuth


class _Handler(socketserver.StreamRequestHandler):
    def _send(self, line: str) -> None:
        self.wfile.write(line.encode() + b"\n")
        self.wfile.flush()

    def handle(self) -> None:
        auth = self.server.auth  # type: ignore[attr-defined]
        self._send(
            f"VERSION\t1\t2\nMECH\tPLAIN\tplaintext\nSPID\t{os.getpid()}\nCUID\t1\n"
            f"COOKIE\t{secrets.token_hex(16)}\nDONE"
        )
        pending: dict[str, str] = {}
        while True:
            raw = self.rfile.readline(65536)
            if not raw:
                return
            parts = raw.decode("utf-8", "replace").rstrip("\n").split("\t")
            if parts[0] == "AUTH" and len(parts) >= 3:
                req_id, mech = parts[1], parts[2].upper()
                args = dict(p.split("=", 1) for p in parts[3:] if "=" in p)
                if mech != "PLAIN":
                    self._send(f"FAIL\t{req_id}\treason=unsupported mechanism")
                elif "resp" in args:
                    self._finish(auth, req_id, args["resp"])
                else:
                    pending[req_id] = mech
                    self._send(f"CONT\t{req_id}\t")
            elif parts[0] == "CONT" and len(parts) >= 3 and parts[1] in pending:
                del pending[parts[1]]
                self._finish(auth, parts[1], parts[2])

    def _finish(self, auth: FakeDovecotAuth, req_id: str, resp: str) -> None:
        user, ok = auth.check(resp)
        if ok:
            self._send(f"OK\t{req_id}\tuser={user}")
        else:
            self._send(f"FAIL\t{req_id}\tuser={user}\treason=bad credentials")
