"""Header assembly: which fields a decision adds and removes (the A-R renderer is in
:mod:`authmilter.headers`).

Forged Authentication-Results fields that carry our authserv-id are removed from every
message; inbound mail gets one A-R at the top (with ``dis=`` saying what local policy did),
optionally Received-SPF, a quarantine mark and the From warning (whose name is also removed
from the message, so that it is always ours); outbound mail gets its signatures, and an A-R
only when ``trust.auth_results`` asks for one.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable

from authmilter import headers
from authmilter.config import Config
from authmilter.decision import Action, Decision, HeaderEdit
from authmilter.model import Transaction
from authmilter.results import AuthResults, Disposition, Result


def forged_removals(tx: Transaction, authserv_id: str) -> tuple[HeaderEdit, ...]:
    """Removals of the A-R fields with our authserv-id, highest index first."""
    return _removals(headers.AR_NAME, headers.find_forged(tx.headers, authserv_id))


def _removals(name: str, found: Iterable[int]) -> tuple[HeaderEdit, ...]:
    return tuple(HeaderEdit(name, None, i) for i in sorted(found, reverse=True))


def from_warning(results: AuthResults) -> str:
    """The flag header's value: fixed words for each kind found, one line each."""
    return ";\n\t".join(f"{w.kind.value}: the From {w.kind.text}" for w in results.from_warnings)


def disposition(decision: Decision, results: AuthResults) -> Disposition | None:
    """What local policy did, for ``dis=`` (None when DMARC had nothing to say)."""
    if results.dmarc is None or results.dmarc.result == Result.NONE:
        return None
    if decision.action == Action.REJECT:
        return Disposition.REJECT
    if decision.action == Action.QUARANTINE or decision.mark_quarantine:
        return Disposition.QUARANTINE
    return Disposition.NONE


def override_note(decision: Decision, results: AuthResults) -> str:
    """Why DMARC's policy was not applied, for the A-R's dmarc comment ("" when it was)."""
    if decision.dmarc_override != "trusted_forwarder" or results.arc is None:
        return ""
    sealer = results.arc.sealers[0].domain if results.arc.sealers else ""
    return f"trusted ARC sealer {sealer}"


def inbound(
    decision: Decision, tx: Transaction, results: AuthResults, authserv_id: str, cfg: Config
) -> Decision:
    """The policy's decision with the inbound header edits (none when it is refused)."""
    if not decision.edits_applied:
        return decision
    ar = headers.render_authentication_results(
        authserv_id,
        results,
        tx.envelope,
        disposition=disposition(decision, results),
        dmarc_override=override_note(decision, results),
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
    removals = forged_removals(tx, authserv_id)
    if cfg.from_.display_name_check != "off":  # the flag header, when present, is ours
        flag = cfg.from_.flag_header
        removals += _removals(flag, range(1, len(tx.get_all(flag)) + 1))
        if decision.flag_from:
            adds.append(HeaderEdit(flag, from_warning(results), 0))
    return dataclasses.replace(
        decision, add_headers=(*decision.add_headers, *adds), remove_headers=removals
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
