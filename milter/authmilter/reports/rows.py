"""From one decided message to the :class:`HistoryRow` recorded for DMARC reports (pure).

Recorded: inbound messages whose DMARC evaluation found a policy record (any result), that
were accepted, held or refused for good (a tempfailed message comes back and is counted
then). Not recorded: trusted (our own) mail, policy domains in ``reports.exclude_domains``
(and their subdomains), and messages whose From is the reports sender ``reports.email``
(the reports we send ourselves).
"""

from __future__ import annotations

from authmilter.checks.dmarc_record import DmarcRecord
from authmilter.checks.fromfield import FromSyntaxError, is_from, parse_mailboxes
from authmilter.config import ReportsConfig
from authmilter.decision import Action, Decision
from authmilter.model import Transaction
from authmilter.reports.history import DkimAuth, HistoryRow, PublishedPolicy, SpfAuth
from authmilter.results import AuthResults, Disposition, DkimResult, Result, SpfResult

# RFC 9990 DKIMResultType and SPFResultType words; anything else is reported as below
_DKIM_WORDS = {"none", "pass", "fail", "policy", "neutral", "temperror", "permerror"}
_SPF_WORDS = {"none", "pass", "fail", "softfail", "policy", "neutral", "temperror", "permerror"}


def history_row(
    tx: Transaction,
    results: AuthResults,
    decision: Decision,
    *,
    reports: ReportsConfig,
    host: str,
    now: float,
) -> HistoryRow | None:
    """The row to record for this message, or None when it is not recorded."""
    dmarc = results.dmarc
    if results.trusted or dmarc is None or dmarc.record is None or not dmarc.policy_domain:
        return None
    if decision.action in (Action.TEMPFAIL, Action.DISCARD):
        return None
    if excluded(dmarc.policy_domain, reports.exclude_domains):
        return None
    sender = (reports.email or f"postmaster@{host}").strip().lower()
    if sender.rpartition("@")[2] == dmarc.from_domain and _from_address(tx, sender):
        return None
    env = tx.envelope
    rcpt = env.rcpt_to[0].rpartition("@")[2].rstrip(".").lower() if env.rcpt_to else ""
    return HistoryRow(
        time=int(now),
        source_ip=str(env.client_ip) if env.client_ip is not None else "",
        envelope_from=env.mail_from_domain,
        header_from=dmarc.from_domain,
        policy=published(dmarc.policy_domain, dmarc.record, dmarc.discovery_method),
        disposition="pass" if dmarc.result is Result.PASS else applied(decision),
        dmarc_dkim="pass" if dmarc.dkim_aligned else "fail",
        dmarc_spf="pass" if dmarc.spf_aligned else "fail",
        dkim=tuple(_dkim(d) for d in results.dkim),
        spf=_spf(results.spf, env.mail_from_domain),
        envelope_to=rcpt,
        override=decision.dmarc_override,
        host=host,
    )


def applied(decision: Decision) -> str:
    """The disposition a decision applied: reject, quarantine (held or marked) or none."""
    if decision.action is Action.REJECT:
        return "reject"
    if decision.action is Action.QUARANTINE or decision.mark_quarantine:
        return "quarantine"
    return "none"


def excluded(domain: str, exclude: tuple[str, ...]) -> bool:
    """True when ``domain`` is one of ``exclude`` or a subdomain of one."""
    domain = domain.rstrip(".").lower()
    for raw in exclude:
        entry = raw.strip().rstrip(".").lower()
        if entry and (domain == entry or domain.endswith("." + entry)):
            return True
    return False


def published(domain: str, record: DmarcRecord, method: str) -> PublishedPolicy:
    """The record as found, in RFC 9990 ``policy_published`` words (a bad p= reads none)."""

    def word(d: Disposition | None) -> str:
        return "" if d is None else d.value

    return PublishedPolicy(
        domain=domain,
        p=word(record.p) or "none",
        sp=word(record.sp),
        np=word(record.np),
        adkim=record.adkim,
        aspf=record.aspf,
        testing="y" if record.t else "n",
        psd=record.psd,
        discovery_method=method or "treewalk",
        fo=record.fo,
        rua=record.rua,
        ruf=record.ruf,
    )


def _dkim(d: DkimResult) -> DkimAuth:
    word = d.result.value
    return DkimAuth(
        d.domain.rstrip(".").lower(), d.selector, word if word in _DKIM_WORDS else "none"
    )


def _spf(spf: SpfResult | None, mail_from_domain: str) -> SpfAuth | None:
    if spf is None:
        return None
    word = spf.result.value
    domain = spf.domain or mail_from_domain
    return SpfAuth(domain.rstrip(".").lower(), "mfrom", word if word in _SPF_WORDS else "none")


def _from_address(tx: Transaction, sender: str) -> bool:
    """True when a From field holds the address ``sender`` (lower case)."""
    for field in tx.headers:
        if not is_from(field):
            continue
        try:
            boxes = parse_mailboxes(field.value)
        except FromSyntaxError:
            continue
        if any(f"{b.local_part}@{b.domain}".lower() == sender for b in boxes):
            return True
    return False
