"""The libmilter adapter: the only module that imports ``Milter``.

It collects what the MTA's callbacks deliver (raw header bytes with their leading space,
body chunks, macros, client address) into an :class:`Envelope` and a :class:`Transaction`,
hands them to the engine and executes the returned :class:`Decision`. Per-message state is
reset at MAIL FROM and on abort. Per-connection state lives on the instance (libmilter runs
one connection's callbacks on different threads). No exception leaves a callback: errors
are recorded and answered at end of message with the configured action (default tempfail).
"""

from __future__ import annotations

import dataclasses
import ipaddress
import logging
import socket
import time
from collections.abc import Callable
from typing import Any

import Milter

from authmilter.checks.dkim_body import BodyHasher
from authmilter.engine import Engine
from authmilter.model import Envelope, HeaderField, Transaction, to_crlf
from authmilter.results import Action, Decision, SpfResult

log = logging.getLogger("authmilter")

_ACTIONS = {
    Action.ACCEPT: Milter.ACCEPT,
    Action.QUARANTINE: Milter.ACCEPT,
    Action.REJECT: Milter.REJECT,
    Action.TEMPFAIL: Milter.TEMPFAIL,
    Action.DISCARD: Milter.DISCARD,
}

FLAGS = Milter.ADDHDRS | Milter.CHGHDRS | Milter.QUARANTINE


@Milter.header_leading_space
class AuthMilter(Milter.Base):  # type: ignore[misc]
    """One instance per SMTP connection."""

    def __init__(self, engine_provider: Callable[[], Engine], conn_id: str = "0") -> None:
        self._engine_provider = engine_provider
        self.engine = engine_provider()  # one engine for the whole connection
        self.conn_id = conn_id
        self.env = Envelope()
        self._reset()

    def _reset(self) -> None:
        self.headers: list[HeaderField] = []
        self.hasher: BodyHasher | None = None  # the body streams through it, never kept
        self.spf: SpfResult | None = None
        self.error: str = ""
        self.started = time.monotonic()

    def _fail(self, where: str) -> None:
        if not self.error:
            self.error = where
            log.exception(
                "conn=%s qid=%s internal error in %s", self.conn_id, self._macro("i") or "-", where
            )

    def _macro(self, name: str) -> str:
        try:
            value = self.getsymval(name)
        except Exception:  # noqa: BLE001  (no context in some test harnesses)
            return ""
        return value if isinstance(value, str) else ""

    # ------------------------------------------------------------------ callbacks

    @Milter.noreply
    def connect(self, hostname: str, family: int, hostaddr: Any) -> int:
        try:
            ip = None
            if family in (socket.AF_INET, socket.AF_INET6) and hostaddr:
                ip = ipaddress.ip_address(str(hostaddr[0]).split("%")[0])
            self.env = Envelope(
                client_ip=ip,
                client_name=hostname or "",
                daemon_name=self._macro("{daemon_name}"),
                mta_name=self._macro("j"),
            )
        except Exception:  # noqa: BLE001
            self._fail("connect")
        return Milter.CONTINUE

    @Milter.noreply
    def hello(self, heloname: str) -> int:
        self.env = dataclasses.replace(self.env, helo=heloname or "")
        return Milter.CONTINUE

    def envfrom(self, mailfrom: str, *esmtp: str) -> int:
        try:
            self._reset()
            auth = self._macro("{auth_authen}") or None
            self.env = dataclasses.replace(
                self.env,
                mail_from=_strip_brackets(mailfrom),
                rcpt_to=(),
                auth_user=auth,
                queue_id=self._macro("i"),
                daemon_name=self._macro("{daemon_name}") or self.env.daemon_name,
            )
            self.spf = self.engine.check_envelope(self.env)
        except Exception:  # noqa: BLE001
            self._fail("envfrom")
        return Milter.CONTINUE

    def envrcpt(self, to: str, *esmtp: str) -> int:
        try:
            self.env = dataclasses.replace(
                self.env, rcpt_to=(*self.env.rcpt_to, _strip_brackets(to))
            )
            decision = self.engine.check_recipient(self.env, self.spf)
            if decision is not None and decision.reply is not None:
                self._log(decision)
                self._reply(decision)
                return _ACTIONS[decision.action]
        except Exception:  # noqa: BLE001
            self._fail("envrcpt")
        return Milter.CONTINUE

    @Milter.noreply
    @Milter.decode("bytes")
    def header(self, name: str, value: bytes) -> int:
        try:
            if isinstance(value, str):  # an MTA that does not honour the bytes strategy
                value = value.encode("utf-8", "surrogateescape")
            if not self._leading_space():
                value = b" " + value  # the MTA stripped it; "Name: value" is the norm
            self.headers.append(HeaderField(name, to_crlf(value)))
        except Exception:  # noqa: BLE001
            self._fail("header")
        return Milter.CONTINUE

    @Milter.noreply
    def eoh(self) -> int:
        # Kept (not negotiated away): some MTA-side tools (miltertest) insist on sending it.
        try:
            self.hasher = BodyHasher(self.engine.body_specs(self.env, self.headers))
        except Exception:  # noqa: BLE001
            self._fail("eoh")
        return Milter.CONTINUE

    @Milter.noreply
    def body(self, chunk: bytes) -> int:
        try:
            if self.hasher is None:  # no EOH seen: the headers are complete once the body starts
                self.hasher = BodyHasher(self.engine.body_specs(self.env, self.headers))
            self.hasher.update(chunk)
        except Exception:  # noqa: BLE001
            self._fail("body")
        return Milter.CONTINUE

    def eom(self) -> int:
        try:
            if self.error:
                return self._internal_error()
            self.env = dataclasses.replace(self.env, queue_id=self._macro("i") or self.env.queue_id)
            hasher = self.hasher or BodyHasher(self.engine.body_specs(self.env, self.headers))
            tx = Transaction(
                envelope=self.env,
                headers=tuple(self.headers),
                body_size=hasher.size,
                body_digests=hasher.digests(),
            )
            decision = self.engine.process(tx, self.spf)
            self._apply(decision)
            self._log(decision)
            return _ACTIONS[decision.action]
        except Exception:  # noqa: BLE001
            self._fail("eom")
            return self._internal_error()
        finally:
            self._reset()

    # abort and close are not overridden: per-message state is reset at MAIL FROM, so
    # pymilter negotiates those callbacks away.

    # ------------------------------------------------------------------ actions

    def _leading_space(self) -> bool:
        """Did the MTA agree to pass header values with their leading space (SMFIP_HDR_LEADSPC)?"""
        return bool(getattr(self, "_protocol", 0) & Milter.P_HDR_LEADSPC)

    def _apply(self, decision: Decision) -> None:
        if decision.reply is not None:
            self._reply(decision)
        if decision.action not in (Action.ACCEPT, Action.QUARANTINE):
            return
        for edit in decision.remove_headers:
            self.chgheader(edit.name, edit.index, None)
        space = " " if self._leading_space() else ""  # with HDR_LEADSPC we supply it
        for edit in decision.add_headers:
            if edit.value is not None:
                self.addheader(edit.name, space + _milter_value(edit.value), edit.index)
        if decision.action == Action.QUARANTINE:
            self.quarantine(decision.quarantine_reason or "authmilter")

    def _reply(self, decision: Decision) -> None:
        reply = decision.reply
        assert reply is not None
        self.setreply(str(reply.code), reply.status, reply.text.replace("%", "%%"))

    def _internal_error(self) -> int:
        on_error = self.engine.config.milter.on_error
        self._log_line("action=" + on_error, f"error={self.error}")
        if on_error == "accept":
            return Milter.ACCEPT
        self.setreply("451", "4.3.0", "temporary local problem; please try again later")
        return Milter.TEMPFAIL

    def _log(self, decision: Decision) -> None:
        parts = [f"{k}={v}" for k, v in decision.log]
        action = decision.action.value
        if decision.reply is not None:
            action += f"({decision.reply.code} {decision.reply.status})"
        self._log_line(*parts, f"action={action}")

    def _log_line(self, *parts: str) -> None:
        env = self.env
        client = env.client_name
        if env.client_ip and not client.startswith("["):
            client = f"{client}[{env.client_ip}]"
        ms = (time.monotonic() - self.started) * 1000
        log.info(
            "qid=%s conn=%s client=%s from=<%s> %s ms=%.1f",
            env.queue_id or "-",
            self.conn_id,
            client or "-",
            _loggable(env.mail_from),
            " ".join(parts),
            ms,
        )


def _strip_brackets(addr: str) -> str:
    addr = addr.strip()
    if addr.startswith("<") and addr.endswith(">"):
        addr = addr[1:-1]
    return addr


def _milter_value(value: str) -> str:
    """Header values go to libmilter with LF folds and no CR."""
    return value.replace("\r\n", "\n").replace("\r", "")


def _loggable(text: str) -> str:
    return "".join(c if c.isprintable() and c not in " =" else "?" for c in text)[:200]
