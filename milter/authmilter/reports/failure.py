"""DMARC failure reports (RFC 9991), sent by the daemon in the background, best effort.

A :class:`FailureReporter` is an engine observer
(:class:`~authmilter.engine.MessageObserver`). At end of message, on the session's thread,
it only decides, cheaply and without DNS, whether the message is one to report
(:meth:`FailureReporter.wanted`), takes a token from the per-domain rate limit and puts the
message on a bounded queue; a sender thread then checks each ``ruf=`` destination with
:mod:`authmilter.reports.destinations` (an external one needs its ``_report._dmarc``
authorisation record, as for aggregate reports), builds the report
(:mod:`authmilter.reports.afrf`) and hands it to the relay.

A message is reported when ``reports.failure_reports`` is on and: it is inbound (never our
own users' mail, nor internal hosts'); it was not tempfailed (it will come again); DMARC
failed; the policy record has ``ruf=`` ``mailto:`` URIs, is not a ``psd=y`` record (RFC 9991
section 3) and its ``fo=`` asks (:func:`~authmilter.reports.afrf.wants_report`); neither the
author domain nor the policy domain is in ``reports.exclude_domains`` (or below one); and the
message is not itself a feedback report (no report loops).

Trouble is never the message's: a full queue, the rate limit, an unauthorised or unverifiable
destination (a DNS temperror drops the report: it is not kept for later), a relay that is down
or refuses: each is counted (:attr:`FailureReporter.counts`, and the
``authmilter_failure_reports_total{outcome}`` metric), logged, and the report is dropped.

Limits: :data:`QUEUE_SIZE` reports waiting; ``reports.failure_rate`` reports per policy
domain per hour (a token is taken when a report is queued, before its destinations are
checked, so that the limit also bounds the DNS work; counted per policy domain, so that
random subdomains of one victim share one budget), at most :data:`MAX_DOMAINS` domains
tracked (beyond that, reports for new domains are dropped until an hour has passed);
:meth:`FailureReporter.close` waits at most its ``timeout`` for the queue to drain.
"""

from __future__ import annotations

import collections
import contextlib
import logging
import os
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from authmilter import metrics
from authmilter.config import Config
from authmilter.decision import Action, Decision
from authmilter.dnsresolver import Resolver
from authmilter.errors import DnsTempError
from authmilter.model import Transaction
from authmilter.psl import PublicSuffixList
from authmilter.reports import afrf, destinations
from authmilter.reports.relay import Relay, RelayPermError, RelayTempError
from authmilter.results import AuthResults, Result

log = logging.getLogger("authmilter")

QUEUE_SIZE = 100  # reports waiting for the sender thread
MAX_DOMAINS = 10000  # policy domains whose hourly count is tracked
WINDOW = 3600.0  # seconds of one rate-limit window
LOG_INTERVAL = 60.0  # a full queue is logged at most this often (the metric counts each)


class RateLimit:
    """At most ``per_hour`` tokens per key in each window, for at most ``max_keys`` keys."""

    def __init__(
        self,
        per_hour: int,
        max_keys: int = MAX_DOMAINS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.per_hour = per_hour
        self.max_keys = max_keys
        self.clock = clock
        self._windows: collections.OrderedDict[str, tuple[float, int]] = (
            collections.OrderedDict()
        )  # key -> (window start, tokens taken); oldest window first
        self._lock = threading.Lock()

    def take(self, key: str) -> bool:
        """Take one token for ``key``; False when its window is used up (or too many keys)."""
        now = self.clock()
        with self._lock:
            while self._windows:  # forget windows that are over, oldest first
                oldest, (start, _) = next(iter(self._windows.items()))
                if now - start < WINDOW:
                    break
                del self._windows[oldest]
            start, taken = self._windows.get(key, (now, 0))
            if taken >= self.per_hour:
                return False
            if key not in self._windows and len(self._windows) >= self.max_keys:
                return False
            self._windows[key] = (start, taken + 1)
            return True


@dataclass(frozen=True, slots=True)
class _Job:
    tx: Transaction
    results: AuthResults
    decision: Decision
    policy_domain: str
    ruf: tuple[str, ...]
    at: datetime


class FailureReporter:
    """The engine observer that sends failure reports (see the module docstring)."""

    def __init__(
        self,
        cfg: Config,
        relay: Relay,
        resolver: Resolver,
        psl: PublicSuffixList | None = None,
        *,
        queue_size: int = QUEUE_SIZE,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.reports = cfg.reports
        self.relay = relay
        self.resolver = resolver
        self.psl = psl
        self.ctx = afrf.ReportContext(
            sender=cfg.reports.email or f"postmaster@{cfg.milter.effective_authserv_id()}",
            authserv_id=cfg.milter.effective_authserv_id(),
            redact=cfg.reports.failure_redact,
        )
        self.excluded = tuple(d.lower().rstrip(".") for d in cfg.reports.exclude_domains)
        self.limit = RateLimit(cfg.reports.failure_rate, clock=clock)
        self.counts: collections.Counter[str] = collections.Counter()
        self._queue_size = queue_size
        self._lock = threading.Lock()
        self._pid = 0  # the process whose sender thread runs (a forked worker starts its own)
        self._queue: queue.Queue[_Job | None] = queue.Queue(queue_size)
        self._thread: threading.Thread | None = None
        self._closed = False
        self._dropped = 0  # queue-full drops not yet logged
        self._logged = -LOG_INTERVAL  # when they were last logged

    # ------------------------------------------------------------------ the session's side

    def observe(self, tx: Transaction, results: AuthResults, decision: Decision) -> None:
        """Queue a report for this message when one is wanted; never blocks."""
        job = self.wanted(tx, results, decision)
        if job is None:
            return
        if not self.limit.take(job.policy_domain):
            self._count("rate_limited")
            return
        if not self._ensure_thread():
            return
        try:
            self._queue.put_nowait(job)
        except queue.Full:
            self._count("queue_full")
            self._warn_full()

    def wanted(self, tx: Transaction, results: AuthResults, decision: Decision) -> _Job | None:
        """The job for this message, or None when no report is to be sent (no DNS here)."""
        if not self.reports.failure_reports or self._closed:
            return None
        dmarc = results.dmarc
        if results.trusted is not None or dmarc is None or dmarc.result is not Result.FAIL:
            return None
        if decision.action is Action.TEMPFAIL:
            return None  # the message will come again; report it then
        record = dmarc.record
        if record is None or not record.ruf or record.psd == "y":
            return None
        if not any(u.lower().startswith("mailto:") for u in record.ruf):
            return None
        if self._excluded(dmarc.from_domain) or self._excluded(dmarc.policy_domain):
            return None
        if not afrf.wants_report(record.fo, results) or _is_feedback_report(tx):
            return None
        domain = (dmarc.policy_domain or dmarc.from_domain).lower()
        return _Job(tx, results, decision, domain, record.ruf, datetime.now(UTC))

    # ------------------------------------------------------------------ the sender thread

    def _ensure_thread(self) -> bool:
        """Start the sender thread in this process (once; again in a forked worker)."""
        pid = os.getpid()
        if self._pid == pid and self._thread is not None:
            return True
        with self._lock:
            if self._closed:
                return False
            if self._pid != pid or self._thread is None:
                self._queue = queue.Queue(self._queue_size)  # an inherited one is not ours
                self._thread = threading.Thread(
                    target=self._run, name="failure-reports", daemon=True
                )
                self._pid = pid
                self._thread.start()
        return True

    def _run(self) -> None:
        q = self._queue
        while True:
            job = q.get()
            if job is None:
                return
            try:
                self.send(job)
            except Exception:
                self._count("error")
                log.exception("failure report for %s failed", job.policy_domain)

    def send(self, job: _Job) -> str:
        """Check the destinations, build and send one report; the outcome (also counted)."""
        checked = destinations.verify_destinations(
            job.policy_domain, job.ruf, self.resolver, self.psl
        )
        to = destinations.usable(checked)
        if not to:
            retry = destinations.must_retry(checked)
            outcome = "dns_error" if retry else "unauthorized"
            self._count(outcome)
            reasons = "; ".join(d.reason for d in checked if d.reason)[:300]
            log.info("failure report for %s not sent (dropped): %s", job.policy_domain, reasons)
            return outcome
        ctx = self.ctx
        methods, _ = afrf.identity_alignment(job.results)
        if "spf" in methods and job.results.spf is not None:
            ctx = _with_spf_dns(ctx, self.resolver, job.results.spf.domain)
        data = afrf.build_report(job.tx, job.results, job.decision, to, ctx, now=job.at)
        try:
            refused = self.relay.send(afrf.to_email_message(data), ctx.sender, to)
        except (RelayTempError, RelayPermError) as exc:
            self._count("relay_error")
            log.warning("failure report for %s dropped: %s", job.policy_domain, exc)
            return "relay_error"
        self._count("sent")
        log.info(
            "failure report for %s sent to %d address(es)%s",
            job.policy_domain,
            len(to) - len(refused),
            f", {len(refused)} refused" if refused else "",
        )
        return "sent"

    def close(self, timeout: float = 5.0) -> None:
        """Stop taking reports; let the sender drain the queue for at most ``timeout`` s."""
        with self._lock:
            self._closed = True
            thread = self._thread if self._pid == os.getpid() else None
        if thread is None:
            return
        deadline = time.monotonic() + timeout
        with contextlib.suppress(queue.Full):  # the end marker needs a free slot: wait for one
            self._queue.put(None, timeout=timeout)
        thread.join(max(0.0, deadline - time.monotonic()))
        left = self._queue.qsize()
        if thread.is_alive() and left:
            with self._lock:
                self.counts["queue_full"] += left
            log.warning("failure reports: %d not sent at stop", left)

    # ------------------------------------------------------------------ helpers

    def _warn_full(self) -> None:
        """Log a full queue at most once per LOG_INTERVAL, with the count since the last."""
        now = time.monotonic()
        with self._lock:
            self._dropped += 1
            if now - self._logged < LOG_INTERVAL:
                return
            dropped, self._dropped, self._logged = self._dropped, 0, now
        log.warning("failure reports: %d dropped, queue full", dropped)

    def _excluded(self, domain: str) -> bool:
        domain = domain.lower().rstrip(".")
        return any(domain == d or domain.endswith("." + d) for d in self.excluded if domain)

    def _count(self, outcome: str) -> None:
        with self._lock:
            self.counts[outcome] += 1
        metrics.failure_report(outcome)


def _is_feedback_report(tx: Transaction) -> bool:
    """A report about a report would loop: never report on a feedback report."""
    for h in tx.get_all("Content-Type"):
        text = h.text().lower()
        if "multipart/report" in text and "feedback-report" in text:
            return True
    return False


def _with_spf_dns(ctx: afrf.ReportContext, resolver: Resolver, domain: str) -> afrf.ReportContext:
    """The context with ``SPF-DNS`` (the domain's SPF record), when DNS gives it now."""
    if not domain:
        return ctx
    try:
        records = [t for t in resolver.query(domain, "TXT").txt() if t.startswith(b"v=spf1")]
    except DnsTempError:
        return ctx
    if len(records) != 1:
        return ctx
    text = records[0].decode("ascii", "replace")
    return afrf.ReportContext(ctx.sender, ctx.authserv_id, ctx.redact, f"txt : {domain} : {text}")
