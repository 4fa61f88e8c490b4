"""Conformance suites' shared set-up; each suite registers its own summary plugin here."""

from __future__ import annotations

import pytest

from tests.conformance.rfc7208_suite import SuiteSummary as Rfc7208SuiteSummary


def pytest_configure(config: pytest.Config) -> None:
    """SPF: print the RFC 7208 suite's pass count in the terminal summary."""
    if not config.pluginmanager.has_plugin("rfc7208-summary"):
        config.pluginmanager.register(Rfc7208SuiteSummary(), "rfc7208-summary")
