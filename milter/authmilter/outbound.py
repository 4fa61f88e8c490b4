"""Mail from our own users and hosts: the sender login map, then the signatures."""

from __future__ import annotations

from authmilter import replies
from authmilter.checks.fromfield import FromSyntaxError, parse_mailboxes
from authmilter.decision import Action, Decision, HeaderEdit, Reply
from authmilter.logline import safe
from authmilter.model import Transaction
from authmilter.results import AuthResults, FromStatus
from authmilter.signing.loginmap import LoginMap
from authmilter.signing.publication import KeyPublication
from authmilter.signing.signer import Signer


def login_refusal(
    tx: Transaction, results: AuthResults, login_map: LoginMap | None
) -> Reply | None:
    """553 when the envelope sender or a From address is not the trusted sender's.

    A SASL user must own each address in the login map; mail trusted without a SASL login
    (internal hosts, daemon names, local submission) may only use addresses the map lists.
    """
    env = tx.envelope
    if login_map is None:
        return None
    ff = results.from_field
    if ff is not None and ff.status != FromStatus.OK:
        return replies.from_not_single()
    user = env.auth_user or None
    addresses = [env.mail_from] if env.mail_from else []
    for addr in addresses + _from_addresses(tx):
        if not login_map.allowed(user, addr):
            return replies.sender_not_owned(addr, user)
    return None


def decide_outbound(
    tx: Transaction,
    results: AuthResults,
    login_map: LoginMap | None,
    signer: Signer | None,
    publication: KeyPublication | None = None,
) -> tuple[Decision, tuple[HeaderEdit, ...]]:
    """Refuse a sender the login map does not allow, or accept with the signatures to add.

    ``login_map`` is None when it does not bind this message (none configured, or local
    submission with ``trust.local_submission = "sign"``). ``publication``: only keys whose
    DNS record is published sign (``signing.require_published_key``); None: every key.
    """
    refusal = login_refusal(tx, results, login_map)
    if refusal is not None:
        return Decision(Action.REJECT, refusal, why="sender-login-mismatch"), ()
    if signer is None:
        return Decision(log=(("signed", "0"),)), ()
    allowed = None
    log: tuple[tuple[str, str], ...] = ()
    if publication is not None:
        allowed, withheld = publication.allowed(signer.select(tx))
        if withheld:
            names = ",".join(f"{s.key.selector}._domainkey.{s.domain}" for s in withheld)
            log = (("unpublished", safe(names)),)
    signatures = signer.sign(tx, allowed=allowed)
    return Decision(log=(("signed", str(len(signatures))), *log)), signatures


def _from_addresses(tx: Transaction) -> list[str]:
    """Every address in the From fields (the caller made sure they parse)."""
    out: list[str] = []
    for field in tx.get_all("From"):
        try:
            out.extend(f"{box.local_part}@{box.domain}" for box in parse_mailboxes(field.value))
        except FromSyntaxError:
            continue
    return out
