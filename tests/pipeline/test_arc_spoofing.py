"""The spoofing corpus with ARC verification on and off: the same verdicts (issue 11, "done
when"), and ARC sets forged by the attacker never rescue a spoof, even with trusted sealers
configured."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from authmilter.decision import Action, Decision
from authmilter.results import AuthResults, Result
from tests.pipeline.test_hostile_input import check_invariants
from tests.pipeline.test_spoofing_corpus import (
    ATTACKER,
    AUTHSERV,
    CASES,
    VICTIM,
    Spoof,
    build,
    zone,
)
from tests.support.arcchains import Hop, seal
from tests.support.engines import make_engine
from tests.support.keys import new_rsa_key

TRUSTED = "lists.example.org"
ATTACKER_HOP = Hop(
    ATTACKER,
    "arc",
    new_rsa_key(1024),
    results=f"dmarc=pass header.from={VICTIM}; dkim=pass header.d={VICTIM}",
)
FORGED_TRUSTED = Hop(TRUSTED, "arc", new_rsa_key(1024), ATTACKER_HOP.results)
LIST_KEY = new_rsa_key(1024)  # the real list's key: the attacker does not have it


def run(
    case: Spoof, arc: dict[str, Any], with_chain: Hop | None = None
) -> tuple[AuthResults, Decision]:
    sections: dict[str, dict[str, object]] = {"arc": arc}
    for section, name, value in case.config:
        sections.setdefault(section, {})[name] = value
    resolver = zone()
    resolver.add(f"arc._domainkey.{ATTACKER}", "TXT", ATTACKER_HOP.dkim_key.txt)
    resolver.add(f"arc._domainkey.{TRUSTED}", "TXT", f"v=DKIM1; k=rsa; p={LIST_KEY.public_b64}")
    engine = make_engine(resolver, AUTHSERV, **sections)
    tx, env = build(case)
    if with_chain is not None:
        from authmilter.model import parse_message

        sealed = seal(tx.raw_message(), with_chain)
        tx = replace(parse_message(sealed, env))
    results, decision = engine.evaluate(tx, engine.check_envelope(env))
    check_invariants(decision)
    return results, decision


def verdict(decision: Decision) -> tuple[object, ...]:
    reply = decision.reply
    return (decision.action, reply.code if reply else None, reply.status if reply else None,
            decision.why, decision.dmarc_override)  # fmt: skip


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_verdicts_are_the_same_with_arc_on_and_off(case: Spoof) -> None:
    on_results, on = run(case, {"verify": True, "trusted_sealers": [TRUSTED, ATTACKER]})
    off_results, off = run(case, {"verify": False})
    assert verdict(on) == verdict(off)
    assert on.dmarc_override == ""
    assert off_results.arc is None
    assert on_results.arc is not None and on_results.arc.result is Result.NONE
    assert on_results.dmarc == off_results.dmarc


REJECTED = [c for c in CASES if c.expect == "reject" and c.raw is None][:12]


@pytest.mark.parametrize("case", REJECTED, ids=[c.id for c in REJECTED])
@pytest.mark.parametrize("hop", [ATTACKER_HOP, FORGED_TRUSTED], ids=["own-seal", "forged-trusted"])
def test_an_attacker_seal_never_rescues_a_spoof(case: Spoof, hop: Hop) -> None:
    """The attacker seals the spoof (a valid seal with its own key, or one claiming to be
    the trusted list): only the attacker's own domain is not trusted, the forged one fails."""
    results, decision = run(case, {"trusted_sealers": [TRUSTED]}, with_chain=hop)
    assert decision.action is Action.REJECT, (results.arc, decision)
    assert decision.dmarc_override == ""
    assert results.arc is not None
    expected = Result.PASS if hop is ATTACKER_HOP else Result.FAIL
    assert results.arc.result is expected, results.arc
