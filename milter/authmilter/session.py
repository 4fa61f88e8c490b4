"""One SMTP connection's messages, independent of libmilter.

The libmilter adapter and ``authmilter test`` both drive a :class:`Session` through the
same stages in SMTP order, so the path every real message takes is the path ``test`` runs:
connect, HELO, MAIL FROM (per-message state is reset here), each RCPT TO, each header
field, end of headers (the body hashes the signatures need are fixed), body chunks (hashed
as they stream, never kept), end of message.

No exception leaves a stage: the first one is logged once with its traceback, the rest of
the message is skipped, and end of message answers with ``milter.on_error`` (default: 451
4.3.0). Each decision is logged as one line (:mod:`authmilter.logline`) and counted
(:mod:`authmilter.metrics`, when on), with each stage's processing time.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable
from typing import TypeVar

from authmilter import logline, logsetup, metrics, replies
from authmilter.checks.dkim_body import BodyHasher
from authmilter.decision import Action, Decision
from authmilter.engine import Engine
from authmilter.model import Envelope, HeaderField, IPAddress, Transaction, strip_brackets, to_crlf
from authmilter.results import AuthResults, IprevResult, SpfResult

log = logging.getLogger("authmilter")

T = TypeVar("T")


class Session:
    """The state of one connection; the engine is fixed for the connection's lifetime."""

    def __init__(self, engine: Engine, conn_id: str = "0") -> None:
        self.engine = engine
        self.conn_id = conn_id
        self.env = Envelope()
        self.last_line = ""  # the last log line, for ``authmilter test``
        self._reset()

    def _reset(self) -> None:
        self.headers: list[HeaderField] = []  # filled at end of headers
        self._fields: list[tuple[str, bytes]] = []  # as the header callbacks gave them
        self.hasher: BodyHasher | None = None
        self.spf: SpfResult | None = None
        self.iprev: IprevResult | None = None
        self.results: AuthResults | None = None  # set at end of message
        self.tx: Transaction | None = None  # set at end of message
        self.error = ""
        self.started = time.monotonic()
        self._summed = {"header": 0.0, "body": 0.0}  # stage seconds, observed at eom

    # ------------------------------------------------------------------ stages

    def connect(self, client_name: str, client_ip: IPAddress | None, daemon_name: str) -> None:
        """A new SMTP client."""
        self.env = Envelope(client_ip=client_ip, client_name=client_name, daemon_name=daemon_name)

    def helo(self, name: str) -> None:
        """HELO/EHLO."""
        self.env = dataclasses.replace(self.env, helo=name)

    def mail_from(
        self, address: str, auth_user: str | None, queue_id: str = "", daemon_name: str = ""
    ) -> None:
        """MAIL FROM starts a message: reset, then SPF and iprev."""
        self._reset()
        self.env = dataclasses.replace(
            self.env,
            mail_from=strip_brackets(address),
            rcpt_to=(),
            auth_user=auth_user or None,
            queue_id=queue_id,
            daemon_name=daemon_name or self.env.daemon_name,
        )
        self._guard("envfrom", self._envelope_checks, None)
        if self.spf is not None:
            metrics.spf(self.spf)

    def recipient(self, address: str) -> Decision | None:
        """RCPT TO: None to go on, or a decision that refuses this recipient (logged)."""
        self.env = dataclasses.replace(
            self.env, rcpt_to=(*self.env.rcpt_to, strip_brackets(address))
        )
        decision = self._guard(
            "envrcpt", lambda: self.engine.check_recipient(self.env, self.spf, self.iprev), None
        )
        if decision is not None:
            self._log(logline.decision_pairs(decision))
            metrics.rcpt_refused(decision)
        return decision

    def header(self, name: str, value: bytes) -> None:
        """One header field; ``value`` is what follows the colon, leading space included.

        Only kept here (one append per callback); made into :class:`HeaderField` values,
        CRLF-normalised, once at end of headers.
        """
        self._fields.append((name, value))

    def end_of_headers(self) -> None:
        """The header block is complete: fix the body hashes to compute."""
        if self._fields:
            fields, self._fields = self._fields, []
            self._guard("header", lambda: self.headers.extend(_header_fields(fields)), None)
        if self.hasher is None:
            self.hasher = self._guard("eoh", self._new_hasher, None)

    def body(self, chunk: bytes) -> None:
        """A body chunk: hashed and dropped (nothing allocated here but the hash's work)."""
        if self.hasher is None:  # an MTA that sends no EOH: the headers end at the body
            self.end_of_headers()
        hasher = self.hasher
        if hasher is None or self.error:
            return
        started = time.perf_counter() if metrics.enabled() else 0.0
        try:
            hasher.update(chunk)
        except Exception:  # noqa: BLE001  (logged with its traceback by _failed)
            self._failed("body")
        if started:
            self._summed["body"] += time.perf_counter() - started

    def end_of_message(self, queue_id: str = "") -> Decision:
        """The decision for the message (logged); per-message state is reset afterwards."""
        try:
            if queue_id:
                self.env = dataclasses.replace(self.env, queue_id=queue_id)
            self.end_of_headers()
            decision = self._guard("eom", self._evaluate, None)
            if decision is None:
                decision = self._internal_error()
            found = logline.result_pairs(self.results) if self.results else ()
            self._log((*found, *logline.decision_pairs(decision)))
            if metrics.enabled():
                self._count(decision)
            self._observe(decision)
            return decision
        finally:  # the results stay for the caller until the next MAIL FROM
            self.headers = []
            self._fields = []
            self.hasher = None

    # ------------------------------------------------------------------ internals

    def _envelope_checks(self) -> None:
        """What MAIL FROM time knows enough for: iprev of the client, SPF."""
        self.iprev = self.engine.check_client(self.env)
        self.spf = self.engine.check_envelope(self.env)

    def _new_hasher(self) -> BodyHasher:
        return BodyHasher(self.engine.body_specs(self.env, self.headers))

    def _evaluate(self) -> Decision | None:
        if self.error or self.hasher is None:
            return None
        tx = Transaction(
            envelope=self.env,
            headers=tuple(self.headers),
            body_size=self.hasher.size,
            body_digests=self.hasher.digests(),
        )
        self.tx = tx
        self.results, decision = self.engine.evaluate(tx, self.spf, self.iprev)
        return decision

    def _guard(self, stage: str, step: Callable[[], T], default: T) -> T:
        """Run one step unless an earlier one failed; record the first failure."""
        if self.error:
            return default
        timed = metrics.enabled()
        started = time.perf_counter() if timed else 0.0
        try:
            return step()
        except Exception:  # noqa: BLE001  (logged with its traceback by _failed)
            self._failed(stage)
            return default
        finally:
            if timed:
                elapsed = time.perf_counter() - started
                if stage in self._summed:
                    self._summed[stage] += elapsed
                else:
                    metrics.stage(stage, elapsed)

    def _failed(self, stage: str) -> None:
        """Record the first failure (call from an ``except`` block: logs the traceback)."""
        self.error = stage
        metrics.internal_error(stage)
        log.exception(
            "conn=%s qid=%s internal error in %s",
            self.conn_id,
            logline.safe(self.env.queue_id) or "-",
            stage,
        )

    def _count(self, decision: Decision) -> None:
        """The message's metrics; a failure here is logged, never the message's problem."""
        try:
            for stage, seconds in self._summed.items():
                metrics.stage(stage, seconds)
            metrics.message(self.results, decision, self._trust_class(), self.spf)
        except Exception:
            log.exception("conn=%s metrics failed", self.conn_id)

    def _observe(self, decision: Decision) -> None:
        """Hand the decided message to the engine's observers; never the message's problem."""
        if self.tx is None or self.results is None:
            return
        for observer in self.engine.observers:
            try:
                observer.observe(self.tx, self.results, decision)
            except Exception:
                log.exception("conn=%s %s failed", self.conn_id, type(observer).__name__)

    def _trust_class(self) -> str:
        """The message's trust class for metrics: inbound, a Trust value, or unknown."""
        if self.results is not None:
            trusted = self.results.trusted
        else:  # an internal error came first
            try:
                trusted = self.engine.classify(self.env)
            except Exception:  # noqa: BLE001  (already logged by the stage that failed)
                return "unknown"
        return trusted.value if trusted else "inbound"

    def _internal_error(self) -> Decision:
        why = f"internal-error:{self.error or 'eom'}"
        if self.engine.config.milter.on_error == "accept":
            return Decision(Action.ACCEPT, why=why)
        return Decision(Action.TEMPFAIL, replies.internal_error(), why=why)

    def _log(self, pairs: tuple[tuple[str, str], ...]) -> None:
        ms = (time.monotonic() - self.started) * 1000
        self.last_line = logline.format_line(self.env, self.conn_id, pairs)
        logsetup.info_line(f"{self.last_line} ms={ms:.1f}")


def _header_fields(fields: list[tuple[str, bytes]]) -> list[HeaderField]:
    """The header callbacks' (name, value) pairs as fields, folds normalised to CRLF."""
    return [
        HeaderField(name, to_crlf(value) if b"\n" in value else value) for name, value in fields
    ]
