"""The policy: a small pure table from check results and config to a :class:`Decision`.

No DNS, no libmilter, no header rendering here: :func:`decide` only answers "what do we do
with this message", so every row of the table is a one-line test. Header edits are added
afterwards (:mod:`authmilter.header_edits`).
"""

from __future__ import annotations

import dataclasses

from authmilter import replies
from authmilter.config import Config
from authmilter.decision import ACCEPT, Action, Decision
from authmilter.results import (
    AuthResults,
    Disposition,
    DmarcResult,
    FromStatus,
    IprevResult,
    Result,
)

_FROM_RULES = {
    FromStatus.MISSING: ("missing_from", "message has no From field"),
    FromStatus.UNPARSEABLE: ("unparseable_from", "the From field cannot be parsed"),
    FromStatus.MULTIPLE_FIELDS: ("multiple_from", "message has more than one From field"),
    FromStatus.MULTIPLE_ADDRESSES: ("multiple_from", "the From field has more than one address"),
}


def decide(results: AuthResults, cfg: Config) -> Decision:
    """Decide what to do with an inbound message (trusted mail is never judged here)."""
    if results.trusted:
        return ACCEPT
    decision = _verdict(results, cfg)
    if results.from_warnings and cfg.from_.display_name_check == "flag":
        decision = dataclasses.replace(decision, flag_from=True)
    override = dmarc_override(results.dmarc, decision)
    if override and not decision.dmarc_override:
        decision = dataclasses.replace(decision, dmarc_override=override)
    return decision


def dmarc_override(dmarc: DmarcResult | None, decision: Decision) -> str:
    """RFC 9990 PolicyOverrideType when less was applied than a failing DMARC asked.

    ``policy_test_mode`` for ``t=y`` (or pct sampling in psl mode), ``local_policy`` when
    the config applied less than p= asked (``dmarc.reject = false``, ``dmarc.quarantine =
    "none"``, DMARC off); "" otherwise.
    """
    if dmarc is None or dmarc.result != Result.FAIL or dmarc.policy == Disposition.NONE:
        return ""
    if dmarc.testing:
        return "policy_test_mode"
    if decision.action == Action.REJECT:
        applied = Disposition.REJECT
    elif decision.action == Action.QUARANTINE or decision.mark_quarantine:
        applied = Disposition.QUARANTINE
    else:
        applied = Disposition.NONE
    order = (Disposition.NONE, Disposition.QUARANTINE, Disposition.REJECT)
    return "local_policy" if order.index(applied) < order.index(dmarc.policy) else ""


def _verdict(results: AuthResults, cfg: Config) -> Decision:
    decision = _from_field_decision(results, cfg) or _from_warning_decision(results, cfg)
    if decision is not None:
        return decision
    dmarc = results.dmarc
    if dmarc is not None and cfg.dmarc.enabled:
        decision = _dmarc_decision(dmarc, cfg)
        if decision is not None:
            return _trusted_forwarder(decision, results, cfg) or decision
    return _spf_decision(results, cfg) or ACCEPT


def _from_field_decision(results: AuthResults, cfg: Config) -> Decision | None:
    ff = results.from_field
    if ff is None or not cfg.dmarc.enabled or ff.status not in _FROM_RULES:
        return None
    setting, text = _FROM_RULES[ff.status]
    if getattr(cfg.dmarc, setting) != "reject":
        return None
    return Decision(Action.REJECT, replies.bad_from(text), why=f"from:{ff.status.value}")


def _from_warning_decision(results: AuthResults, cfg: Config) -> Decision | None:
    if not results.from_warnings or cfg.from_.display_name_check != "reject":
        return None
    kind = results.from_warnings[0].kind
    return Decision(Action.REJECT, replies.deceptive_from(kind.text), why=f"from:{kind.value}")


def _dmarc_decision(dmarc: DmarcResult, cfg: Config) -> Decision | None:
    domain = dmarc.from_domain or "the sender domain"
    if dmarc.result == Result.TEMPERROR:
        # Only worth a retry when the answer could have been reject or quarantine.
        if cfg.dmarc.tempfail_on_temperror and _could_enforce(dmarc, cfg):
            return Decision(Action.TEMPFAIL, replies.dmarc_temperror(domain), why="dmarc:temperror")
        return None
    if dmarc.result != Result.FAIL or dmarc.testing:
        return None
    if dmarc.policy == Disposition.REJECT and cfg.dmarc.reject:
        reply = replies.dmarc_reject(cfg.dmarc.reject_text, domain)
        return Decision(Action.REJECT, reply, why="dmarc:reject")
    if dmarc.policy == Disposition.QUARANTINE or (
        dmarc.policy == Disposition.REJECT and not cfg.dmarc.reject
    ):
        return _quarantine(cfg, domain)
    return None


def _trusted_forwarder(decision: Decision, results: AuthResults, cfg: Config) -> Decision | None:
    """Accept a DMARC reject/quarantine that a trusted ARC sealer vouches for, else None.

    Only when the chain passes, the newest set's sealer is in ``arc.trusted_sealers`` and
    its ARC-Authentication-Results says DMARC (or aligned SPF/DKIM) passed at that hop
    (``ArcResult.newest_vouches_dmarc``, read by the engine for trusted sealers only). The
    DMARC result stays ``fail``: only what is done about it changes.
    """
    enforced = decision.action in (Action.REJECT, Action.QUARANTINE) or decision.mark_quarantine
    arc = results.arc
    if not enforced or arc is None or arc.result != Result.PASS or not arc.sealers:
        return None
    sealer = arc.sealers[0].domain
    if not arc.newest_vouches_dmarc or sealer not in cfg.arc.trusted_sealer_names():
        return None
    return Decision(
        Action.ACCEPT,
        why=f"{decision.why}:overridden",
        log=(("arc_override", sealer),),
        dmarc_override="trusted_forwarder",
    )


def _could_enforce(dmarc: DmarcResult, cfg: Config) -> bool:
    if dmarc.testing:
        return False
    if dmarc.policy == Disposition.NONE and dmarc.policy_domain:
        return False  # the record was found and asks for nothing: no reason to retry
    return cfg.dmarc.reject or cfg.dmarc.quarantine != "none"


def _quarantine(cfg: Config, domain: str) -> Decision | None:
    mode = cfg.dmarc.quarantine
    if mode == "hold":
        return Decision(Action.QUARANTINE, why=f"dmarc:quarantine:{domain}")
    if mode == "header":
        return Decision(Action.ACCEPT, mark_quarantine=True, why=f"dmarc:quarantine:{domain}")
    return None


def _spf_decision(results: AuthResults, cfg: Config) -> Decision | None:
    spf = results.spf
    if not cfg.spf.reject_fail_unless_dkim or spf is None or spf.result != Result.FAIL:
        return None
    if results.dmarc is not None and results.dmarc.dkim_aligned:
        return None
    if results.dmarc is None and any(d.result == Result.PASS for d in results.dkim):
        return None
    return Decision(Action.REJECT, replies.spf_fail(spf.domain), why="spf:fail")


def rcpt_decision(spf_result: Result | None, domain: str, cfg: Config) -> Decision | None:
    """Reject at RCPT TO on SPF fail when so configured (policyd-spf style)."""
    if cfg.spf.reject_fail_at_rcpt and spf_result == Result.FAIL:
        return Decision(Action.REJECT, replies.spf_fail(domain), why="spf:fail@rcpt")
    return None


def iprev_decision(iprev: IprevResult | None, cfg: Config) -> Decision | None:
    """Reject iprev ``fail`` at RCPT TO when so configured (never permerror or temperror).

    Trusted clients are never checked (``iprev`` is None for them), so this cannot refuse
    our own users, wherever they connect from.
    """
    if cfg.iprev.reject_fail and iprev is not None and iprev.result == Result.FAIL:
        return Decision(Action.REJECT, replies.iprev_fail(iprev.ip), why="iprev:fail@rcpt")
    return None
