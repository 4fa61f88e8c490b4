"""Reading a Decision in tests: our A-R, also for a refused message (which gets none)."""

from __future__ import annotations

from authmilter import header_edits, headers
from authmilter.decision import Decision
from authmilter.model import Envelope
from authmilter.results import AuthResults


def our_ar(authserv_id: str, results: AuthResults, decision: Decision, env: Envelope) -> str:
    """The A-R the decision adds or, for a refused message, the one it would have carried."""
    values = [h.value for h in decision.add_headers if h.name == headers.AR_NAME]
    if decision.edits_applied:
        assert len(values) == 1 and values[0] is not None, decision
        return values[0]
    assert values == [], "a refused message gets no header edits"
    dis = header_edits.disposition(decision, results)
    return headers.render_authentication_results(authserv_id, results, env, disposition=dis)
