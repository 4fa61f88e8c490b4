"""pytest set-up for the whole repository: the source tree importable without installing it,
and the shared fixtures (tests/support/fixtures.py)."""

from __future__ import annotations

import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent
for path in (REPO / "milter", REPO):
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))

pytest_plugins = ["tests.support.fixtures"]
