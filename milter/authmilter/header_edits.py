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
import time
from collections.abc import Iterable

from authmilter import headers
from authmilter.checks.dkim_body import hash_body
from authmilter.config import Config
from authmilter.decision import Action, Decision, HeaderEdit
from authmilter.model import HeaderField, Transaction
from authmilter.results import AuthResults, Disposition, Result
from authmilter.signing.arcseal import BODY_SPEC, Sealer, chain_status


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


def seal(
    decision: Decision,
    tx: Transaction,
    results: AuthResults,
    sealer: Sealer | None,
    authserv_id: str,
    *,
    now: int | None = None,
) -> Decision:
    """The decision with an ARC set on top, when it is sealed (RFC 8617 5.1).

    Only a message that leaves with our edits (accepted or held) from a session that
    ``arc.seal_daemon_names`` allows. The AAR carries the A-R this decision adds (outbound
    mail without one: the A-R ``trust.auth_results = "anonymous"`` would add); the AMS signs
    the header as it leaves us. The log line says ``arc_seal=CV(i=N)`` or ``arc_seal=no(WHY)``.
    """
    if sealer is None or not decision.edits_applied or not sealer.applies(tx.envelope.daemon_name):
        return decision
    status = chain_status(tx.headers, results.arc)
    digest = tx.digest_for(*BODY_SPEC)
    if digest is None and tx.body_kept:
        digest = hash_body(tx.body, [BODY_SPEC])[0]
    skip = status.skip or ("no-body-hash" if digest is None else "")
    if skip or digest is None:
        return dataclasses.replace(decision, log=(*decision.log, ("arc_seal", f"no({skip})")))
    ours = [e.value for e in decision.add_headers if e.name == headers.AR_NAME and e.value]
    ar = (
        ours[0]
        if ours
        else headers.render_authentication_results(authserv_id, results, tx.envelope)
    )
    timestamp = int(time.time()) if now is None else now
    fields = sealer.seal(leaving_headers(tx, decision), digest.digest, status, ar, timestamp)
    # inserted one by one at the top: the last one (ARC-Seal) ends up first
    edits = tuple(HeaderEdit(n, v.replace("\r\n", "\n"), 0) for n, v in reversed(fields))
    log = ("arc_seal", f"{status.cv}(i={status.instance})")
    return dataclasses.replace(
        decision, add_headers=(*decision.add_headers, *edits), log=(*decision.log, log)
    )


def leaving_headers(tx: Transaction, decision: Decision) -> list[HeaderField]:
    """The header fields as the MTA will pass the message on: removals, then insertions."""
    fields = list(tx.headers)
    for edit in decision.remove_headers:  # highest index of a name first
        at = [i for i, f in enumerate(fields) if f.is_named(edit.name)]
        if 0 < edit.index <= len(at):
            del fields[at[edit.index - 1]]
    for edit in decision.add_headers:
        if edit.value is not None:
            value = b" " + edit.value.replace("\n", "\r\n").encode("utf-8", "surrogateescape")
            fields.insert(min(edit.index, len(fields)), HeaderField(edit.name, value))
    return fields
