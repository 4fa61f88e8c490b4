"""The policy: a small pure table from check results and config to an action and reply.

No DNS, no libmilter, no header rendering here: :func:`decide` only answers "what do we do
with this message", so every row of the table is a one-line test.
"""

from __future__ import annotations

from dataclasses import dataclass

from authmilter.config import Config
from authmilter.results import (
    Action,
    AuthResults,
    Disposition,
    DmarcResult,
    FromStatus,
    Reply,
    Result,
)


@dataclass(frozen=True, slots=True)
class Verdict:
    """The policy's answer; the engine adds headers and turns it into a Decision."""

    action: Action = Action.ACCEPT
    reply: Reply | None = None
    quarantine_header: bool = False  # mark with cfg.dmarc.quarantine_header instead of holding
    why: str = ""  # short reason for the log line


ACCEPT = Verdict()


def decide(results: AuthResults, cfg: Config) -> Verdict:
    """Decide what to do with an inbound message (trusted mail is never judged here)."""
    if results.trusted:
        return ACCEPT
    verdict = _from_field_verdict(results, cfg)
    if verdict is not None:
        return verdict
    dmarc = results.dmarc
    if dmarc is not None and cfg.dmarc.enabled:
        verdict = _dmarc_verdict(dmarc, cfg)
        if verdict is not None:
            return verdict
    return _spf_verdict(results, cfg) or ACCEPT


def _from_field_verdict(results: AuthResults, cfg: Config) -> Verdict | None:
    ff = results.from_field
    if ff is None or not cfg.dmarc.enabled:
        return None
    rule = {
        FromStatus.MISSING: (cfg.dmarc.missing_from, "message has no From field"),
        FromStatus.UNPARSEABLE: (cfg.dmarc.unparseable_from, "the From field cannot be parsed"),
        FromStatus.MULTIPLE_FIELDS: (
            cfg.dmarc.multiple_from,
            "message has more than one From field",
        ),
        FromStatus.MULTIPLE_ADDRESSES: (
            cfg.dmarc.multiple_from,
            "the From field has more than one address",
        ),
    }.get(ff.status)
    if rule is None or rule[0] != "reject":
        return None
    text = rule[1]
    return Verdict(Action.REJECT, Reply(550, "5.7.1", text), why=f"from:{ff.status.value}")


def _dmarc_verdict(dmarc: DmarcResult, cfg: Config) -> Verdict | None:
    domain = dmarc.from_domain or "the sender domain"
    if dmarc.result == Result.TEMPERROR:
        # Only worth a retry when the answer could have been reject or quarantine.
        if cfg.dmarc.tempfail_on_temperror and _could_enforce(dmarc, cfg):
            text = f"temporary DNS failure checking DMARC for {domain}; try again later"
            return Verdict(Action.TEMPFAIL, Reply(451, "4.7.5", text), why="dmarc:temperror")
        return None
    if dmarc.result != Result.FAIL or dmarc.testing:
        return None
    if dmarc.policy == Disposition.REJECT and cfg.dmarc.reject:
        text = cfg.dmarc.reject_text.replace("{domain}", domain)
        return Verdict(Action.REJECT, Reply(550, "5.7.26", text), why="dmarc:reject")
    if dmarc.policy == Disposition.QUARANTINE or (
        dmarc.policy == Disposition.REJECT and not cfg.dmarc.reject
    ):
        return _quarantine(cfg, domain)
    return None


def _could_enforce(dmarc: DmarcResult, cfg: Config) -> bool:
    if dmarc.testing:
        return False
    if dmarc.policy == Disposition.NONE and dmarc.policy_domain:
        return False  # the record was found and asks for nothing: no reason to retry
    return cfg.dmarc.reject or cfg.dmarc.quarantine != "none"


def _quarantine(cfg: Config, domain: str) -> Verdict | None:
    mode = cfg.dmarc.quarantine
    if mode == "hold":
        return Verdict(Action.QUARANTINE, why=f"dmarc:quarantine {domain}")
    if mode == "header":
        return Verdict(Action.ACCEPT, quarantine_header=True, why=f"dmarc:quarantine {domain}")
    return None


def _spf_verdict(results: AuthResults, cfg: Config) -> Verdict | None:
    spf = results.spf
    if not cfg.spf.reject_fail_unless_dkim or spf is None or spf.result != Result.FAIL:
        return None
    if results.dmarc is not None and results.dmarc.dkim_aligned:
        return None
    if results.dmarc is None and any(d.result == Result.PASS for d in results.dkim):
        return None
    return Verdict(Action.REJECT, spf_reject_reply(spf.domain), why="spf:fail")


def spf_reject_reply(domain: str) -> Reply:
    """550 5.7.23 (RFC 7372) for an SPF fail."""
    return Reply(550, "5.7.23", f"SPF check failed: {domain or 'sender'} does not permit this host")


def rcpt_verdict(spf_result: Result | None, domain: str, cfg: Config) -> Verdict | None:
    """Reject at RCPT TO on SPF fail when so configured (policyd-spf style)."""
    if cfg.spf.reject_fail_at_rcpt and spf_result == Result.FAIL:
        return Verdict(Action.REJECT, spf_reject_reply(domain), why="spf:fail@rcpt")
    return None
