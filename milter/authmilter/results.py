"""Typed results of the checks, in RFC 8601 vocabulary."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING

from authmilter.trust import Trust

if TYPE_CHECKING:
    from authmilter.checks.dmarc_record import DmarcRecord


class Result(StrEnum):
    """RFC 8601 result words (section 2.7)."""

    PASS = "pass"
    FAIL = "fail"
    SOFTFAIL = "softfail"
    NEUTRAL = "neutral"
    NONE = "none"
    TEMPERROR = "temperror"
    PERMERROR = "permerror"
    POLICY = "policy"


@dataclass(frozen=True, slots=True)
class SpfResult:
    """Outcome of one SPF check (RFC 7208)."""

    result: Result
    identity: str = "mailfrom"  # "mailfrom" | "helo"
    domain: str = ""  # the domain that was checked
    sender: str = ""  # the full identity (postmaster@helo for HELO)
    reason: str = ""  # explanation or error text, for comments and logs
    mechanism: str = ""  # matching mechanism, e.g. "-all"
    received_spf: str = ""  # value of a Received-SPF header, when one is wanted


@dataclass(frozen=True, slots=True)
class DkimResult:
    """Outcome of verifying one DKIM-Signature field (RFC 6376)."""

    result: Result
    domain: str = ""  # d=
    selector: str = ""  # s=
    algorithm: str = ""  # a=
    identity: str = ""  # i=
    header_b: str = ""  # first characters of b=, to tell signatures apart (RFC 6008)
    reason: str = ""
    key_bits: int = 0
    body_length: int | None = None  # l=, when the signature covers only part of the body


@dataclass(frozen=True, slots=True)
class IprevResult:
    """Outcome of the iprev check (RFC 8601 sections 2.7.3 and 3) of the client address."""

    result: Result  # pass | fail | temperror | permerror
    ip: str  # the client address (policy.iprev)
    name: str = ""  # the forward-confirmed host name (pass only)
    names: int = 0  # PTR names found (host names only)
    reason: str = ""  # fixed words, never DNS data


class Disposition(StrEnum):
    """What DMARC asks for (the policy that applies), before local policy."""

    NONE = "none"
    QUARANTINE = "quarantine"
    REJECT = "reject"


@dataclass(frozen=True, slots=True)
class DmarcResult:
    """Outcome of DMARC evaluation (RFC 9989)."""

    result: Result  # pass | fail | none | temperror | permerror
    from_domain: str = ""
    policy: Disposition = Disposition.NONE  # requested policy that applies to this message
    org_domain: str = ""
    policy_domain: str = ""  # where the record was found
    testing: bool = False  # t=y (or pct sampling in psl mode): never enforce
    dkim_aligned: bool = False
    spf_aligned: bool = False
    reason: str = ""
    record: DmarcRecord | None = None  # the policy record as found at policy_domain
    discovery_method: str = ""  # "treewalk" | "psl": how the record was found


class FromStatus(StrEnum):
    """How the RFC 5322.From field parsed."""

    OK = "ok"
    MISSING = "missing"
    MULTIPLE_FIELDS = "multiple-fields"
    MULTIPLE_ADDRESSES = "multiple-addresses"
    UNPARSEABLE = "unparseable"


@dataclass(frozen=True, slots=True)
class FromField:
    """The author domain(s) found in From, in A-label lower-case form."""

    status: FromStatus
    domains: tuple[str, ...] = ()  # every distinct domain found (one when status is OK)
    reason: str = ""

    @property
    def domain(self) -> str:
        """The single author domain, or "" when there is not exactly one."""
        return self.domains[0] if len(self.domains) == 1 else ""


class Deception(StrEnum):
    """What a From mailbox shows its reader besides its own address (outside DMARC)."""

    DISPLAY_NAME = "display-name"
    LOCAL_PART = "local-part"

    @property
    def text(self) -> str:
        """What was found, in fixed words: never the message's own bytes."""
        if self is Deception.DISPLAY_NAME:
            return "display name shows an address in another domain"
        return "local part hides an encoded word or another address"


@dataclass(frozen=True, slots=True)
class FromWarning:
    """One deceptive From mailbox (:mod:`authmilter.checks.fromdisplay`)."""

    kind: Deception
    domain: str  # the mailbox's own domain (A-label)
    shown: str = ""  # the other domain shown (A-label); "" for an encoded word


@dataclass(frozen=True, slots=True)
class ArcSealer:
    """One ARC set's seal as verified (RFC 8617)."""

    instance: int  # i=
    domain: str  # d= of the ARC-Seal
    selector: str  # s= of the ARC-Seal
    result: Result  # that seal's own verification


@dataclass(frozen=True, slots=True)
class ArcResult:
    """Outcome of ARC chain validation (RFC 8617 section 5.2)."""

    result: Result  # pass | fail | none | temperror (a DNS failure is never fail)
    chain: int = 0  # ARC sets found (the highest instance when the chain is well formed)
    oldest_pass: int | None = None  # header.oldest-pass (section 10); None when not computed
    sealers: tuple[ArcSealer, ...] = ()  # newest first
    reason: str = ""  # fixed words, never message bytes
    # the newest set's ARC-Authentication-Results says DMARC (or aligned SPF/DKIM) passed
    newest_vouches_dmarc: bool = False


@dataclass(frozen=True, slots=True)
class AuthResults:
    """Everything the checks found about one message."""

    spf: SpfResult | None = None
    helo_spf: SpfResult | None = None
    dkim: tuple[DkimResult, ...] = ()
    dmarc: DmarcResult | None = None
    from_field: FromField | None = None
    from_warnings: tuple[FromWarning, ...] = ()  # at most one per kind
    trusted: Trust | None = None  # why inbound checks were skipped; None for inbound mail
    iprev: IprevResult | None = None  # None: not evaluated (off, trusted, no client address)
    arc: ArcResult | None = None  # None: not evaluated (arc.verify off, or trusted)
