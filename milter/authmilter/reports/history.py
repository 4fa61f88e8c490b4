"""One recorded DMARC evaluation: what an RFC 9990 aggregate report is built from."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class DkimAuth:
    """One DKIM signature as evaluated (RFC 9990 ``auth_results/dkim``)."""

    domain: str  # d=
    selector: str  # s= (required by RFC 9990)
    result: str  # RFC 9990 DKIMResultType: none pass fail policy neutral temperror permerror


@dataclass(frozen=True, slots=True)
class SpfAuth:
    """The SPF check as evaluated (RFC 9990 ``auth_results/spf``)."""

    domain: str
    scope: str  # "mfrom" (RFC 9990 SPFDomainScope)
    result: str  # none neutral pass fail softfail temperror permerror


@dataclass(frozen=True, slots=True)
class PublishedPolicy:
    """The DMARC Policy Record as found (RFC 9990 ``policy_published``)."""

    domain: str  # where the record was found
    p: str  # none | quarantine | reject
    sp: str = ""  # "" = absent
    np: str = ""  # "" = absent
    adkim: str = "r"
    aspf: str = "r"
    testing: str = "n"  # t=: "y" | "n"
    psd: str = "u"  # "y" | "n" | "u"
    discovery_method: str = "treewalk"  # "treewalk" | "psl"
    fo: str = "0"
    rua: tuple[str, ...] = ()
    ruf: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class HistoryRow:
    """One inbound message's DMARC evaluation, as recorded by the daemon."""

    time: int  # epoch seconds (UTC) of the decision
    source_ip: str
    envelope_from: str  # RFC5321.MailFrom domain; "" for the null sender
    header_from: str  # RFC5322.From domain
    policy: PublishedPolicy
    disposition: str  # applied: none | pass | quarantine | reject (RFC 9990 ActionDispositionType)
    dmarc_dkim: str  # DMARC's DKIM evaluation: "pass" | "fail"
    dmarc_spf: str  # DMARC's SPF evaluation: "pass" | "fail"
    dkim: tuple[DkimAuth, ...] = ()
    spf: SpfAuth | None = None
    envelope_to: str = ""  # the first recipient's domain
    override: str = ""  # RFC 9990 PolicyOverrideType; "" = none
    override_comment: str = ""
    host: str = ""  # the recording host (authserv-id), for fleets
