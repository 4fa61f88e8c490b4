"""The one decision type: what is done with a message, and the SMTP reply that goes with it.

Made by the policy (inbound) or the outbound rules, completed with header edits by
:mod:`authmilter.header_edits`, executed only by the adapter (libmilter) or reported by
``authmilter test``.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Action(StrEnum):
    """What the milter tells the MTA at end of message (or earlier)."""

    ACCEPT = "accept"
    REJECT = "reject"
    TEMPFAIL = "tempfail"
    QUARANTINE = "quarantine"
    DISCARD = "discard"


@dataclass(frozen=True, slots=True)
class Reply:
    """An SMTP reply: 4xx goes with tempfail, 5xx with reject (checked here)."""

    code: int
    status: str  # enhanced status code, e.g. "5.7.26"
    text: str

    def __post_init__(self) -> None:
        if not (400 <= self.code < 600) or self.status[:1] != str(self.code)[0]:
            raise ValueError(f"inconsistent SMTP reply {self.code} {self.status}")


@dataclass(frozen=True, slots=True)
class HeaderEdit:
    """Insert a field (``index`` 0 = top) or remove the ``index``-th (1-based) field of a name."""

    name: str
    value: str | None = None  # None: remove
    index: int = 0


@dataclass(frozen=True, slots=True)
class Decision:
    """What is done with one message (or one recipient)."""

    action: Action = Action.ACCEPT
    reply: Reply | None = None
    add_headers: tuple[HeaderEdit, ...] = ()
    remove_headers: tuple[HeaderEdit, ...] = ()
    why: str = ""  # short reason for the log line and ``test`` ("dmarc:reject")
    mark_quarantine: bool = False  # quarantine by a header instead of holding the message
    flag_from: bool = False  # add the from.flag_header warning (AuthResults.from_warnings)
    log: tuple[tuple[str, str], ...] = ()  # key=value pairs for the log line
    # RFC 9990 PolicyOverrideType when local policy applied less than DMARC asked
    # ("policy_test_mode", "trusted_forwarder", "local_policy", ...); "" = none
    dmarc_override: str = ""

    @property
    def edits_applied(self) -> bool:
        """Header edits only reach the message when it is accepted (or held)."""
        return self.action in (Action.ACCEPT, Action.QUARANTINE)


ACCEPT = Decision()
