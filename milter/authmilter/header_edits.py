"""Header assembly: which fields a decision adds and removes (the A-R renderer is in
:mod:`authmilter.headers`).

Forged Authentication-Results fields that carry our authserv-id are removed from every
message; inbound mail gets one A-R at the top (with ``dis=`` saying what local policy did),
optionally Received-SPF and a quarantine mark; outbound mail gets its signatures, and an A-R
only when ``trust.auth_results`` asks for one.
"""

from __future__ import annotations

import dataclasses

from authmilter import headers
from authmilter.config import Config
from authmilter.decision import Action, Decision, HeaderEdit
from authmilter.model import Transaction
from authmilter.results import AuthResults, Disposition, Result


def forged_removals(tx: Transaction, authserv_id: str) -> tuple[HeaderEdit, ...]:
    """Removals of the A-R fields with our authserv-id, highest index first."""
    found = headers.find_forged(tx.headers, authserv_id)
    return tuple(HeaderEdit(headers.AR_NAME, None, i) for i in sorted(found, reverse=True))


def disposition(decision: Decision, results: AuthResults) -> Disposition | None:
    """What local policy did, for ``dis=`` (None when DMARC had nothing to say)."""
    if results.dmarc is None or results.dmarc.result == Result.NONE:
        return None
    if decision.action == Action.REJECT:
        return Disposition.REJECT
    if decision.action == Action.QUARANTINE or decision.mark_quarantine:
        return Disposition.QUARANTINE
    return Disposition.NONE


def inbound(
    decision: Decision, tx: Transaction, results: AuthResults, authserv_id: str, cfg: Config
) -> Decision:
    """The policy's decision with the inbound header edits (none when it is refused)."""
    if not decision.edits_applied:
        return decision
    ar = headers.render_authentication_results(
        authserv_id, results, tx.envelope, disposition=disposition(decision, results)
    )
    adds = [HeaderEdit(headers.AR_NAME, ar, 0)]
    if results.spf is not None and cfg.spf.received_spf_header:
        received = headers.render_received_spf(results.spf)
        if received:
            adds.append(HeaderEdit(headers.RECEIVED_SPF_NAME, received, 0))
    if decision.mark_quarantine:
        domain = results.dmarc.from_domain if results.dmarc else ""
        text = f"DMARC policy of {domain} asks for quarantine"
        adds.append(HeaderEdit(cfg.dmarc.quarantine_header, text, 0))
    return dataclasses.replace(
        decision,
        add_headers=(*decision.add_headers, *adds),
        remove_headers=forged_removals(tx, authserv_id),
    )


def outbound(
    decision: Decision,
    tx: Transaction,
    results: AuthResults,
    authserv_id: str,
    signatures: tuple[HeaderEdit, ...],
    *,
    auth_results: str,
) -> Decision:
    """The outbound decision with the DKIM-Signature fields and, unless ``auth_results`` is
    "none", our A-R ("full" names the SASL login, "anonymous" does not)."""
    if not decision.edits_applied:
        return decision
    adds = signatures
    if auth_results != "none":
        login = auth_results == "full"
        ar = headers.render_authentication_results(authserv_id, results, tx.envelope, login=login)
        adds = (HeaderEdit(headers.AR_NAME, ar, 0), *signatures)
    return dataclasses.replace(
        decision, add_headers=adds, remove_headers=forged_removals(tx, authserv_id)
    )
