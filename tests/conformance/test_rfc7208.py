"""The RFC 7208 test suite (pyspf's sdist, fetched at test time) through ``check_spf``.

A case passes when our result is one of the results the suite lists; where the suite gives
an explanation other than pyspf's driver's ``DEFAULT`` and we return ``fail``, the reason
must be that explanation too. Every deviation is listed, with its reason, in
``KNOWN_DEVIATIONS`` and runs as a strict xfail.
"""

from __future__ import annotations

import os

import pytest

from authmilter.checks.spf import check_spf
from authmilter.config import SpfConfig
from authmilter.results import Result
from tests.conformance.rfc7208_suite import Case, SuiteUnavailableError, load_cases, suite_path

KNOWN_DEVIATIONS: dict[str, str] = {
    "ptr-cname-loop": (
        "a CNAME loop in a ptr name's A lookup: our Resolver follows CNAMEs itself and reports "
        "a loop as DnsTempError (as a recursive resolver answers SERVFAIL), so we return "
        "temperror; the suite wants the name skipped (RFC 7208 5.5/7) and neutral. We do not "
        "skip names on DNS errors: a DNS failure must never drift towards fail."
    ),
}

EXPECTED_CASES = 203  # rfc7208-tests.yml of the 2014.04 release, as shipped in pyspf 2.0.14


def _load() -> tuple[list[Case], str]:
    try:
        return load_cases(suite_path()), ""
    except SuiteUnavailableError as exc:
        return [], str(exc)


CASES, UNAVAILABLE = _load()


def _require_suite() -> None:
    if not UNAVAILABLE:
        return
    if os.environ.get("CI") == "true":
        pytest.fail(f"RFC 7208 suite unavailable in CI: {UNAVAILABLE}")
    pytest.skip(f"RFC 7208 suite unavailable: {UNAVAILABLE}")


def _params() -> list[object]:
    return [
        pytest.param(
            case,
            id=case.name,
            marks=[pytest.mark.xfail(reason=KNOWN_DEVIATIONS[case.name], strict=True)]
            if case.name in KNOWN_DEVIATIONS
            else [],
        )
        for case in CASES
    ]


def test_suite_is_complete() -> None:
    """The whole file was read, names are unique, and no deviation names a missing case."""
    _require_suite()
    names = [c.name for c in CASES]
    assert len(names) == EXPECTED_CASES
    assert len(set(names)) == len(names)
    assert set(KNOWN_DEVIATIONS) <= set(names)


@pytest.mark.parametrize("case", _params())
def test_rfc7208_case(case: Case) -> None:
    """One suite case: result in the listed results (and the explanation, for fail)."""
    cfg = SpfConfig(time_budget=20.0, received_spf_header=True)
    got = check_spf(case.envelope(), case.resolver(), cfg, receiver="mx.test")
    wanted = {Result(r) for r in case.results}
    assert got.result in wanted, (
        f"{case.name} ({case.spec}): got {got.result.value} ({got.reason}), "
        f"wanted {'|'.join(sorted(r.value for r in wanted))}"
    )
    if case.explanation not in (None, "DEFAULT") and got.result == Result.FAIL:
        assert got.reason == case.explanation
    assert "\r" not in got.received_spf
    assert "\n" not in got.received_spf


if UNAVAILABLE:
    # Keep a visible skip/fail even though there is nothing to parametrize.
    def test_rfc7208_suite_available() -> None:
        """Skipped (or failed in CI) when the suite could not be fetched."""
        _require_suite()
