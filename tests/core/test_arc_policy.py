"""The trusted-sealer override in the policy table (policy.py) and what the AAR must say
for it (checks/arc_aar.py): every condition is needed, and DMARC stays ``fail``."""

from __future__ import annotations

from dataclasses import replace

import pytest

from authmilter import policy
from authmilter.checks.arc_aar import vouches_for_dmarc
from authmilter.config import from_dict
from authmilter.decision import Action, Decision
from authmilter.model import HeaderField
from authmilter.results import (
    ArcResult,
    ArcSealer,
    AuthResults,
    Disposition,
    DmarcResult,
    Result,
)

SEALER = "lists.example.org"
ARC = ArcResult(
    Result.PASS,
    chain=2,
    oldest_pass=0,
    sealers=(
        ArcSealer(2, SEALER, "arc", Result.PASS),
        ArcSealer(1, "fwd.example.net", "s", Result.PASS),
    ),
    newest_vouches_dmarc=True,
)
FAIL = DmarcResult(Result.FAIL, "example.com", Disposition.REJECT, "example.com", "example.com")


def decide(arc: ArcResult | None = ARC, dmarc: DmarcResult = FAIL) -> Decision:
    config = from_dict({"arc": {"trusted_sealers": [SEALER]}})
    return policy.decide(AuthResults(dmarc=dmarc, arc=arc), config)


def test_trusted_vouching_sealer_lifts_a_reject() -> None:
    d = decide()
    assert (d.action, d.dmarc_override) == (Action.ACCEPT, "trusted_forwarder")
    assert d.log == (("arc_override", SEALER),)
    assert d.why == "dmarc:reject:overridden"


def test_quarantine_by_hold_and_by_header_are_lifted() -> None:
    q = replace(FAIL, policy=Disposition.QUARANTINE)
    for mode in ("hold", "header"):
        config = from_dict({"arc": {"trusted_sealers": [SEALER]}, "dmarc": {"quarantine": mode}})
        d = policy.decide(AuthResults(dmarc=q, arc=ARC), config)
        assert (d.action, d.mark_quarantine, d.dmarc_override) == (
            Action.ACCEPT,
            False,
            "trusted_forwarder",
        )


@pytest.mark.parametrize(
    "arc",
    [
        None,
        replace(ARC, result=Result.FAIL),
        replace(ARC, result=Result.TEMPERROR),
        replace(ARC, newest_vouches_dmarc=False),
        replace(ARC, sealers=(ArcSealer(2, "other.example", "arc", Result.PASS), *ARC.sealers[1:])),
        replace(ARC, sealers=ARC.sealers[::-1]),  # trusted, but not the newest
        replace(ARC, sealers=()),
    ],
    ids=["no-arc", "fail", "temperror", "no-vouch", "other-sealer", "not-newest", "no-sealers"],
)
def test_every_condition_is_needed(arc: ArcResult | None) -> None:
    d = decide(arc)
    assert (d.action, d.dmarc_override) == (Action.REJECT, "")


def test_without_configured_sealers_nothing_changes() -> None:
    d = policy.decide(AuthResults(dmarc=FAIL, arc=ARC), from_dict({}))
    assert d.action is Action.REJECT


def test_a_dmarc_temperror_is_not_overridden() -> None:
    d = decide(dmarc=replace(FAIL, result=Result.TEMPERROR))
    assert (d.action, d.dmarc_override) == (Action.TEMPFAIL, "")


def test_nothing_to_override_when_dmarc_passes_or_asks_nothing() -> None:
    for dmarc in (replace(FAIL, result=Result.PASS), replace(FAIL, policy=Disposition.NONE)):
        d = decide(dmarc=dmarc)
        assert (d.action, d.dmarc_override) == (Action.ACCEPT, "")


def aar(text: str) -> HeaderField:
    return HeaderField("ARC-Authentication-Results", text.encode())


@pytest.mark.parametrize(
    ("value", "vouches"),
    [
        (" i=1; lists.example.org; dmarc=pass header.from=example.com", True),
        (" i=1; lists.example.org; dmarc=pass (p=reject) header.from=EXAMPLE.com", True),
        (" i=1; lists.example.org; dmarc=pass", False),  # for which From?
        (" i=1; lists.example.org; dmarc=pass header.from=example.net", False),
        (" i=1; lists.example.org; dmarc=fail header.from=example.com", False),
        (" i=1; lists.example.org; dkim=pass header.d=example.com", True),
        (" i=1; lists.example.org; dkim=pass header.d=mail.example.com", True),  # relaxed
        (" i=1; lists.example.org; dkim=pass header.d=notexample.com", False),
        (" i=1; lists.example.org; dkim=fail header.d=example.com", False),
        (" i=1; lists.example.org; spf=pass smtp.mailfrom=a@example.com", True),
        (" i=1; lists.example.org; spf=pass smtp.mailfrom=a@example.org", False),
        (" i=1; lists.example.org; spf=fail smtp.mailfrom=a@example.com", False),
        (" i=1;\r\n lists.example.org;\r\n spf=none; dmarc=pass header.from=example.com", True),
        (" lists.example.org; dmarc=pass header.from=example.com", False),  # no i=
        (" i=1; lists.example.org; dmarc=pass header.from=(", False),  # unparseable
        (" i=1; lists.example.org; dmarc=pass header.from=" + "a" * 20000, False),
        # a result inside a comment is not a result
        (" i=1; x; dmarc=fail (dmarc=pass header.from=example.com) header.from=example.com", False),
        (" i=1; x (dmarc=pass header.from=example.com;); spf=none", False),
        (' i=1; x; dmarc=fail reason="dmarc=pass header.from=example.com"', False),
        (" i=1; x; dmarc/1=pass header.from=example.com", True),
        (' i=1; x; dkim=pass header.d="example.com"', True),
    ],
)
def test_what_the_aar_must_say(value: str, vouches: bool) -> None:
    assert vouches_for_dmarc(aar(value), "example.com", "example.com") is vouches
