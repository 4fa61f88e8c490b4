"""One ``authmilter report`` run: per policy domain claim, build, verify, send, mark.

For each policy domain with ``rua=`` and rows in the period (``store.report_domains``),
except ``reports.exclude_domains`` (and their subdomains): the report is claimed in the
store (another run holding it, or a mark, makes it ``skipped``), built from the store's
aggregate, its destinations verified (:mod:`~authmilter.reports.destinations`), sent through
the relay while the claim is held, and marked ``sent`` in the claim's own transaction. A
DNS temperror on a destination or a relay that cannot take the message now leaves the
report unmarked (``retry``): the next run sends it, under the same report id. A dry run
claims and marks nothing. The outcome of each domain is an :class:`Outcome`.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from email.message import EmailMessage
from pathlib import Path
from typing import Any

from authmilter.config import Config
from authmilter.dnsresolver import Resolver
from authmilter.psl import PublicSuffixList
from authmilter.reports.aggregate import ReportMeta, file_name, render_gzipped, report_id
from authmilter.reports.destinations import must_retry, usable, verify_destinations
from authmilter.reports.message import build_message
from authmilter.reports.relay import Relay, RelayPermError, RelayTempError
from authmilter.reports.store import Aggregate, HistoryStore

log = logging.getLogger("authmilter")

DAY = 86400
EX_TEMPFAIL = 75

SENT = "sent"
WRITTEN = "written"
SKIPPED = "skipped"
RETRY = "retry"


@dataclass(slots=True)
class Outcome:
    """What happened to one policy domain's report (one entry of ``--json``)."""

    domain: str
    report_id: str
    records: int = 0
    messages: int = 0
    rua: list[str] = field(default_factory=list)  # the URIs as published
    sent_to: list[str] = field(default_factory=list)  # the addresses used (or that would be)
    status: str = SKIPPED
    reason: str = ""
    file: str = ""  # NAME (RFC 9990 file name without .xml.gz)

    def to_json(self) -> dict[str, Any]:
        """The ``--json`` entry."""
        return {
            "domain": self.domain,
            "report_id": self.report_id,
            "records": self.records,
            "messages": self.messages,
            "rua": self.rua,
            "sent_to": self.sent_to,
            "status": self.status,
            "reason": self.reason,
            "file": self.file,
        }


def previous_day(now: float) -> tuple[int, int]:
    """The previous full UTC day before ``now``: [begin, end) in epoch seconds."""
    end = int(now) // DAY * DAY
    return end - DAY, end


def exit_code(outcomes: Sequence[Outcome]) -> int:
    """0 when done, 75 (EX_TEMPFAIL) when some report must be retried."""
    return EX_TEMPFAIL if any(o.status == RETRY for o in outcomes) else 0


def report_meta(cfg: Config, domain: str, begin: int, end: int) -> ReportMeta:
    """``report_metadata`` from ``[reports]`` (defaults: the authserv-id, postmaster@ it)."""
    authserv_id = cfg.milter.effective_authserv_id()
    org = cfg.reports.org_name or authserv_id
    email = cfg.reports.email or f"postmaster@{authserv_id}"
    return ReportMeta(
        org_name=org,
        email=email,
        report_id=report_id(org, domain, begin, end),
        extra_contact_info=cfg.reports.extra_contact_info,
    )


def excluded(domain: str, exclude: Sequence[str]) -> bool:
    """Whether ``domain`` is listed in ``exclude`` or is below a listed domain."""
    domain = domain.lower().rstrip(".")
    for listed in exclude:
        name = listed.lower().strip(".")
        if domain == name or domain.endswith("." + name):
            return True
    return False


@dataclass(frozen=True, slots=True)
class Built:
    """One report ready to go."""

    meta: ReportMeta
    aggregate: Aggregate
    name: str
    gz: bytes
    message: EmailMessage


class ReportRun:
    """Everything a run needs, injected (the CLI builds it from the config)."""

    def __init__(
        self,
        cfg: Config,
        store: HistoryStore,
        resolver: Resolver,
        relay: Relay | None,
        *,
        psl: PublicSuffixList | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.cfg = cfg
        self.store = store
        self.resolver = resolver
        self.relay = relay
        self.psl = psl
        self.clock = clock

    def run(
        self, begin: int, end: int, *, dry_run: bool = False, output: Path | None = None
    ) -> list[Outcome]:
        """Report every policy domain of [begin, end); prune old rows after a real run."""
        outcomes = []
        for domain in sorted(self.store.report_domains(begin, end)):
            meta = report_meta(self.cfg, domain, begin, end)
            outcome = Outcome(domain, meta.report_id)
            if excluded(domain, self.cfg.reports.exclude_domains):
                outcome.reason = "listed in reports.exclude_domains"
            elif dry_run:
                self._dry(outcome, meta, begin, end, output)
            else:
                self._send(outcome, meta, begin, end, output)
            log.info(
                "report %s %s: %s%s",
                domain,
                meta.report_id,
                outcome.status,
                f" ({outcome.reason})" if outcome.reason else "",
            )
            outcomes.append(outcome)
        if not dry_run:
            pruned = self.store.prune(int(self.clock()) - self.cfg.reports.keep_days * DAY)
            if pruned:
                log.info(
                    "report: pruned %d history rows older than %d days",
                    pruned,
                    self.cfg.reports.keep_days,
                )
        return outcomes

    def _dry(
        self, outcome: Outcome, meta: ReportMeta, begin: int, end: int, output: Path | None
    ) -> None:
        built = self._build(outcome, meta, begin, end)
        if built is None:
            return
        if output is not None:
            _write(output, built)
        outcome.status = WRITTEN if output is not None else SKIPPED
        outcome.reason = outcome.reason or ("" if output is not None else "dry run")

    def _send(
        self, outcome: Outcome, meta: ReportMeta, begin: int, end: int, output: Path | None
    ) -> None:
        with self.store.claim(outcome.domain, begin, end, meta.report_id) as claim:
            if claim is None:
                outcome.reason = "already marked, or being sent by another run"
                return
            built = self._build(outcome, meta, begin, end)
            if built is None:  # nothing to report, or no usable destination
                if outcome.status == SKIPPED:
                    claim.mark("skipped", outcome.reason)
                return
            if output is not None:
                _write(output, built)
            assert self.relay is not None
            try:
                refused = self.relay.send(built.message, meta.email, outcome.sent_to)
            except RelayTempError as exc:
                outcome.status, outcome.reason = RETRY, str(exc)
                return
            except RelayPermError as exc:
                outcome.status, outcome.reason = SKIPPED, f"relay refused the report: {exc}"
                claim.mark("skipped", outcome.reason)
                return
            outcome.status = SENT
            if refused:
                outcome.reason = "refused: " + ", ".join(
                    f"{rcpt} ({code})" for rcpt, (code, _) in sorted(refused.items())
                )
            claim.mark("sent", outcome.reason)

    def _build(self, outcome: Outcome, meta: ReportMeta, begin: int, end: int) -> Built | None:
        """The report and its message; None (outcome says why) when it is not to be sent."""
        try:
            agg = self.store.aggregate(outcome.domain, begin, end)
        except LookupError:
            outcome.reason = "no records in the period"
            return None
        outcome.records, outcome.messages = len(agg.records), agg.messages
        outcome.rua = list(agg.policy.rua)
        if not agg.records:
            outcome.reason = "no records in the period"
            return None
        dests = verify_destinations(outcome.domain, agg.policy.rua, self.resolver, self.psl)
        skipped = [f"{d.uri}: {d.reason}" for d in dests if d.status != "ok"]
        outcome.sent_to = usable(dests)
        outcome.reason = "; ".join(skipped)
        if must_retry(dests):
            outcome.status = RETRY
            return None
        if not outcome.sent_to:
            outcome.reason = outcome.reason or "no rua= destination"
            return None
        name = file_name(meta, agg)
        gz = render_gzipped(agg, meta)
        message = build_message(agg, meta, outcome.sent_to, gz, name=name, now=self.clock())
        outcome.file = name
        return Built(meta, agg, name, gz, message)


def _write(output: Path, built: Built) -> None:
    output.mkdir(parents=True, exist_ok=True)
    _atomic(output / f"{built.name}.xml.gz", built.gz)
    _atomic(output / f"{built.name}.eml", built.message.as_bytes())


def _atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_bytes(data)
    tmp.replace(path)
