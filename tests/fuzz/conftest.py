"""Hypothesis profiles for the property tests.

* ``ci`` (the default): a bounded, derandomized number of examples per property, so that the
  suite is reproducible and takes seconds.
* ``long`` (``AUTHMILTER_FUZZ=long``): many examples, random seeds, and Hypothesis's example
  database in ``.hypothesis/`` so that a failure found once is replayed first next time.
  Run it for minutes outside CI: ``AUTHMILTER_FUZZ=long .venv/bin/python -m pytest tests/fuzz``.

A failure found in long mode becomes a permanent regression case: copy the falsifying input
that Hypothesis prints into an ``@example(...)`` on the property (with a comment).
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

_SLOW_OK = [HealthCheck.too_slow, HealthCheck.data_too_large]

settings.register_profile(
    "ci",
    max_examples=150,
    derandomize=True,
    deadline=None,
    database=None,
    suppress_health_check=_SLOW_OK,
)
settings.register_profile(
    "long",
    max_examples=20_000,
    deadline=None,
    suppress_health_check=_SLOW_OK,
)
settings.load_profile("long" if os.environ.get("AUTHMILTER_FUZZ") == "long" else "ci")
