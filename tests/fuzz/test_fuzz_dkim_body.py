"""Property: the whole-chunk relaxed canonicaliser hashes every body, cut anywhere, as before.

The oracle is the canonicaliser it replaced (``tests/checks/dkim_body_oracle.py``).
"""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from authmilter.checks.dkim_body import BodyHasher
from tests.checks.dkim_body_oracle import OldBodyHasher
from tests.checks.test_dkim_body import ALL_SPECS
from tests.checks.test_dkim_body_chunks import PIECES, chunked

bodies = st.lists(st.sampled_from(PIECES) | st.binary(max_size=4), max_size=60).map(b"".join)


@given(body=bodies, cuts=st.lists(st.integers(min_value=0, max_value=300), max_size=8))
def test_any_body_in_any_chunks_hashes_as_before(body: bytes, cuts: list[int]) -> None:
    cuts = sorted(min(c, len(body)) for c in cuts)
    new = chunked(BodyHasher(ALL_SPECS), body, cuts)
    old = chunked(OldBodyHasher(ALL_SPECS), body, cuts)
    assert new == old
