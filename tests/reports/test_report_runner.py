"""reports/runner.py and reports/command.py: the pure parts (period, exclusions, exit status)."""

from __future__ import annotations

import pytest

from authmilter.errors import UsageError
from authmilter.reports.command import ReportOptions, period
from authmilter.reports.runner import Outcome, excluded, exit_code, previous_day

DAY = 86400


def test_previous_full_utc_day() -> None:
    midnight = 1_796_515_200  # 2026-12-06 00:00 UTC
    assert previous_day(midnight + 5) == (midnight - DAY, midnight)
    assert previous_day(midnight) == (midnight - DAY, midnight)
    assert previous_day(midnight + DAY - 1) == (midnight - DAY, midnight)


def test_period_from_options() -> None:
    assert period(ReportOptions(None, begin=10, end=20), now=0) == (10, 20)
    assert period(ReportOptions(None), now=DAY * 3 + 7) == (DAY * 2, DAY * 3)
    with pytest.raises(UsageError, match="both"):
        period(ReportOptions(None, begin=10), now=0)
    with pytest.raises(UsageError, match="before"):
        period(ReportOptions(None, begin=20, end=20), now=0)


def test_exclusions_cover_subdomains() -> None:
    assert excluded("example.com", ["Example.COM."])
    assert excluded("mail.example.com", ["example.com"])
    assert not excluded("notexample.com", ["example.com"])
    assert not excluded("example.com", [])


def test_exit_status() -> None:
    sent, retry = Outcome("a", "1", status="sent"), Outcome("b", "2", status="retry")
    assert exit_code([]) == 0
    assert exit_code([sent, Outcome("c", "3")]) == 0
    assert exit_code([sent, retry]) == 75
