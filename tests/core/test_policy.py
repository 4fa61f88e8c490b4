"""The policy table: one row per case."""

from __future__ import annotations

import dataclasses

import pytest

from authmilter.config import from_dict
from authmilter.decision import Action
from authmilter.policy import decide, iprev_decision, rcpt_decision
from authmilter.results import (
    AuthResults,
    Deception,
    Disposition,
    DkimResult,
    DmarcResult,
    FromField,
    FromStatus,
    FromWarning,
    IprevResult,
    Result,
    SpfResult,
)
from authmilter.trust import Trust

OK_FROM = FromField(FromStatus.OK, ("example.com",))


def dmarc(
    result: Result,
    policy: Disposition = Disposition.REJECT,
    testing: bool = False,
    dkim_aligned: bool = False,
    policy_domain: str = "example.com",
) -> AuthResults:
    return AuthResults(
        dmarc=DmarcResult(
            result,
            "example.com",
            policy,
            "example.com",
            policy_domain,
            testing=testing,
            dkim_aligned=dkim_aligned,
        ),
        from_field=OK_FROM,
    )


WARNING = FromWarning(Deception.DISPLAY_NAME, "example.com", "victim.example")
OFF = {"from": {"display_name_check": "off"}}
REJECT = {"from": {"display_name_check": "reject"}}


def warned(results: AuthResults, *kinds: Deception) -> AuthResults:
    warnings = tuple(FromWarning(k, "example.com") for k in kinds) or (WARNING,)
    return dataclasses.replace(results, from_warnings=warnings)


CASES = [
    ("pass", dmarc(Result.PASS), {}, Action.ACCEPT, None),
    ("reject", dmarc(Result.FAIL), {}, Action.REJECT, (550, "5.7.26")),
    (
        "reject-not-honoured",
        dmarc(Result.FAIL),
        {"dmarc": {"reject": False}},
        Action.QUARANTINE,
        None,
    ),
    (
        "reject-not-honoured-no-quarantine",
        dmarc(Result.FAIL),
        {"dmarc": {"reject": False, "quarantine": "none"}},
        Action.ACCEPT,
        None,
    ),
    ("testing-never-enforced", dmarc(Result.FAIL, testing=True), {}, Action.ACCEPT, None),
    ("quarantine-hold", dmarc(Result.FAIL, Disposition.QUARANTINE), {}, Action.QUARANTINE, None),
    (
        "quarantine-header",
        dmarc(Result.FAIL, Disposition.QUARANTINE),
        {"dmarc": {"quarantine": "header"}},
        Action.ACCEPT,
        None,
    ),
    ("p-none", dmarc(Result.FAIL, Disposition.NONE), {}, Action.ACCEPT, None),
    ("temperror-tempfails", dmarc(Result.TEMPERROR), {}, Action.TEMPFAIL, (451, "4.7.5")),
    (
        "temperror-record-unknown",
        dmarc(Result.TEMPERROR, Disposition.NONE, policy_domain=""),
        {},
        Action.TEMPFAIL,
        (451, "4.7.5"),
    ),
    (
        "temperror-p-none-accepts",
        dmarc(Result.TEMPERROR, Disposition.NONE),
        {},
        Action.ACCEPT,
        None,
    ),
    (
        "temperror-off",
        dmarc(Result.TEMPERROR),
        {"dmarc": {"tempfail_on_temperror": False}},
        Action.ACCEPT,
        None,
    ),
    ("permerror-accepts", dmarc(Result.PERMERROR), {}, Action.ACCEPT, None),
    ("none-accepts", dmarc(Result.NONE, Disposition.NONE), {}, Action.ACCEPT, None),
    (
        "trusted-never-judged",
        AuthResults(trusted=Trust.AUTHENTICATED, from_field=OK_FROM),
        {},
        Action.ACCEPT,
        None,
    ),
    ("dmarc-disabled", dmarc(Result.FAIL), {"dmarc": {"enabled": False}}, Action.ACCEPT, None),
    ("from-warning-flag", warned(dmarc(Result.PASS)), {}, Action.ACCEPT, None),
    ("from-warning-off", warned(dmarc(Result.PASS)), OFF, Action.ACCEPT, None),
    ("from-warning-reject", warned(dmarc(Result.PASS)), REJECT, Action.REJECT, (550, "5.7.1")),
    ("from-warning-no-dmarc", warned(AuthResults()), REJECT, Action.REJECT, (550, "5.7.1")),
    (
        "from-warning-before-dmarc",
        warned(dmarc(Result.FAIL)),
        REJECT,
        Action.REJECT,
        (550, "5.7.1"),
    ),
    (
        "from-warning-temperror",
        warned(dmarc(Result.TEMPERROR)),
        {},
        Action.TEMPFAIL,
        (451, "4.7.5"),
    ),
    (
        "from-warning-quarantine",
        warned(dmarc(Result.FAIL, Disposition.QUARANTINE)),
        {},
        Action.QUARANTINE,
        None,
    ),
    (
        "from-warning-trusted",
        warned(AuthResults(trusted=Trust.AUTHENTICATED, from_field=OK_FROM)),
        REJECT,
        Action.ACCEPT,
        None,
    ),
]


@pytest.mark.parametrize(
    ("name", "results", "conf", "action", "reply"), CASES, ids=[c[0] for c in CASES]
)
def test_dmarc_table(
    name: str,
    results: AuthResults,
    conf: dict[str, dict[str, object]],
    action: Action,
    reply: tuple[int, str] | None,
) -> None:
    verdict = decide(results, from_dict(conf))
    assert verdict.action == action
    got = (verdict.reply.code, verdict.reply.status) if verdict.reply else None
    assert got == reply


@pytest.mark.parametrize(
    ("name", "results", "conf", "flagged"),
    [
        ("default-flag", warned(dmarc(Result.PASS)), {}, True),
        ("off", warned(dmarc(Result.PASS)), OFF, False),
        ("nothing-found", dmarc(Result.PASS), {}, False),
        ("with-quarantine", warned(dmarc(Result.FAIL, Disposition.QUARANTINE)), {}, True),
        ("trusted", warned(AuthResults(trusted=Trust.INTERNAL)), {}, False),
    ],
)
def test_from_warning_flag(
    name: str, results: AuthResults, conf: dict[str, dict[str, object]], flagged: bool
) -> None:
    assert decide(results, from_dict(conf)).flag_from is flagged


@pytest.mark.parametrize("kind", list(Deception))
def test_from_warning_reject_says_what_was_found(kind: Deception) -> None:
    verdict = decide(warned(dmarc(Result.PASS), kind), from_dict(REJECT))
    assert verdict.reply is not None and verdict.reply.text == f"the From field's {kind.text}"
    assert verdict.why == f"from:{kind.value}"


def test_bad_from_rule_comes_before_the_warning() -> None:
    results = warned(AuthResults(from_field=FromField(FromStatus.MISSING)))
    verdict = decide(results, from_dict(REJECT))
    assert verdict.why == "from:missing"


def test_reject_text_names_the_domain() -> None:
    verdict = decide(dmarc(Result.FAIL), from_dict({}))
    assert verdict.reply is not None and "example.com" in verdict.reply.text


def test_quarantine_header_flag() -> None:
    verdict = decide(
        dmarc(Result.FAIL, Disposition.QUARANTINE), from_dict({"dmarc": {"quarantine": "header"}})
    )
    assert verdict.mark_quarantine


@pytest.mark.parametrize(
    "status",
    [
        FromStatus.MISSING,
        FromStatus.MULTIPLE_FIELDS,
        FromStatus.MULTIPLE_ADDRESSES,
        FromStatus.UNPARSEABLE,
    ],
)
def test_bad_from_rejected_by_default(status: FromStatus) -> None:
    results = AuthResults(
        from_field=FromField(status, ("a.example", "b.example")),
        dmarc=DmarcResult(Result.PASS, "a.example"),
    )
    verdict = decide(results, from_dict({}))
    assert verdict.action == Action.REJECT
    assert verdict.reply is not None and (verdict.reply.code, verdict.reply.status) == (
        550,
        "5.7.1",
    )


def test_multiple_from_strictest_falls_through_to_dmarc() -> None:
    results = AuthResults(
        from_field=FromField(FromStatus.MULTIPLE_FIELDS, ("a.example", "b.example")),
        dmarc=DmarcResult(Result.FAIL, "b.example", Disposition.REJECT),
    )
    verdict = decide(results, from_dict({"dmarc": {"multiple_from": "strictest"}}))
    assert verdict.action == Action.REJECT
    assert verdict.reply is not None and verdict.reply.status == "5.7.26"


def test_missing_from_accept() -> None:
    results = AuthResults(
        from_field=FromField(FromStatus.MISSING), dmarc=DmarcResult(Result.PERMERROR)
    )
    assert decide(results, from_dict({"dmarc": {"missing_from": "accept"}})).action == Action.ACCEPT


SPF_FAIL = SpfResult(Result.FAIL, "mailfrom", "example.com")


def test_spf_reject_unless_dkim() -> None:
    cfg = from_dict({"spf": {"reject_fail_unless_dkim": True}})
    base = AuthResults(
        spf=SPF_FAIL,
        from_field=OK_FROM,
        dmarc=DmarcResult(Result.FAIL, "example.com", Disposition.NONE),
    )
    verdict = decide(base, cfg)
    assert verdict.action == Action.REJECT and verdict.reply is not None
    assert verdict.reply.status == "5.7.23"
    aligned = AuthResults(
        spf=SPF_FAIL,
        from_field=OK_FROM,
        dkim=(DkimResult(Result.PASS, "example.com"),),
        dmarc=DmarcResult(Result.PASS, "example.com", Disposition.NONE, dkim_aligned=True),
    )
    assert decide(aligned, cfg).action == Action.ACCEPT
    assert decide(base, from_dict({})).action == Action.ACCEPT  # off by default


def test_rcpt_reject_only_when_configured() -> None:
    assert rcpt_decision(Result.FAIL, "example.com", from_dict({})) is None
    cfg = from_dict({"spf": {"reject_fail_at_rcpt": True}})
    verdict = rcpt_decision(Result.FAIL, "example.com", cfg)
    assert verdict is not None and verdict.reply is not None
    assert (verdict.reply.code, verdict.reply.status) == (550, "5.7.23")
    assert rcpt_decision(Result.SOFTFAIL, "example.com", cfg) is None
    assert rcpt_decision(Result.TEMPERROR, "example.com", cfg) is None


IPREV_ON = {"iprev": {"reject_fail": True}}


@pytest.mark.parametrize(
    ("name", "result", "conf", "reply"),
    [
        ("fail-reported-only-by-default", Result.FAIL, {}, None),
        ("fail-rejected-when-asked", Result.FAIL, IPREV_ON, (550, "5.7.25")),
        ("permerror-never-rejected", Result.PERMERROR, IPREV_ON, None),
        ("temperror-never-rejected", Result.TEMPERROR, IPREV_ON, None),
        ("pass", Result.PASS, IPREV_ON, None),
        ("not-evaluated", None, IPREV_ON, None),  # trusted client, no address, iprev off
    ],
)
def test_iprev_table(
    name: str, result: Result | None, conf: dict[str, dict[str, object]], reply: object
) -> None:
    iprev = IprevResult(result, "203.0.113.9") if result is not None else None
    verdict = iprev_decision(iprev, from_dict(conf))
    got = (verdict.reply.code, verdict.reply.status) if verdict and verdict.reply else None
    assert got == reply
    if verdict is not None:
        assert verdict.action == Action.REJECT and verdict.why == "iprev:fail@rcpt"
        assert verdict.reply is not None and "203.0.113.9" in verdict.reply.text


def test_iprev_never_decides_at_end_of_message() -> None:
    """An iprev fail is no reason to refuse a message by itself at end of data."""
    results = dataclasses.replace(dmarc(Result.PASS), iprev=IprevResult(Result.FAIL, "203.0.113.9"))
    assert decide(results, from_dict(IPREV_ON)).action == Action.ACCEPT
