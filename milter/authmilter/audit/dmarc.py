"""The DMARC audit of one of our domains (RFC 9989; reports: RFC 9990).

The record that applies is found by the engine's own policy discovery
(:func:`authmilter.checks.dmarc.discover_policy`: the tree walk, or the PSL in ``psl``
mode) and read by its own parser (:func:`authmilter.checks.dmarc_record.parse_record`), so
what is reported here is what receivers like authmilter make of it. Report destinations in
another Organizational Domain must agree to receive the reports: a TXT record starting with
``v=DMARC1`` at ``<policy domain>._report._dmarc.<destination host>`` (RFC 9990, as RFC 7489
7.1); receivers send nothing to a destination without one.
"""

from __future__ import annotations

from authmilter.audit.findings import Level, Section, shown
from authmilter.checks.dmarc import discover_policy, organizational_domain
from authmilter.checks.dmarc_record import DmarcRecord, parse_record
from authmilter.dnsresolver import Resolver
from authmilter.errors import DnsTempError
from authmilter.psl import PublicSuffixList
from authmilter.results import Disposition

_STRICTNESS = [Disposition.NONE, Disposition.QUARANTINE, Disposition.REJECT]
OBSOLETE_TAGS = ("pct", "ri", "rf")  # RFC 7489 tags that RFC 9989 removed


def audit_dmarc(
    section: Section, domain: str, resolver: Resolver, psl: PublicSuffixList | None
) -> None:
    """Audit the DMARC policy that applies to ``domain``."""
    try:
        found = discover_policy(domain, resolver, psl)
    except DnsTempError as exc:
        section.undone("dmarc", exc)
        return
    section.facts["dmarc_org_domain"] = found.org_domain
    if found.records_here > 1:
        section.add(
            Level.ERROR,
            "dmarc-multiple",
            f"_dmarc.{domain} holds {found.records_here} DMARC records: receivers use none of them",
            f"keep one v=DMARC1 record at _dmarc.{domain}",
        )
    record = found.record
    suffix = record is not None and record.psd == "y" and found.policy_domain != found.org_domain
    if record is None or suffix:
        if found.records_here <= 1:
            whose = (
                f"only the policy of the public suffix {found.policy_domain} applies to {domain}"
                if suffix
                else f"no DMARC policy applies to {domain}"
            )
            section.add(
                Level.WARNING,
                "dmarc-missing",
                f"{whose}: anyone may use it in From, and "
                "receivers such as Gmail and Yahoo want one from bulk senders",
                f'publish _dmarc.{found.org_domain} TXT "v=DMARC1; p=none; '
                f'rua=mailto:dmarc-reports@{found.org_domain}", then tighten p=',
            )
        return
    where = f"_dmarc.{found.policy_domain}"
    section.facts["dmarc"] = shown(_text(record), 512)
    section.facts["dmarc_policy_domain"] = found.policy_domain
    _syntax(section, where, record)
    _policy(section, domain, found.policy_domain, where, record)
    reports = _Reports(section, resolver, psl, found.policy_domain, found.org_domain)
    reports.check(where, record)


def _text(record: DmarcRecord) -> str:
    return "; ".join(f"{k}={v}" for k, v in (("v", "DMARC1"), *record.tags))


def _syntax(section: Section, where: str, record: DmarcRecord) -> None:
    if record.policy_error:
        applied = "p=none (it has a valid rua=)" if record.usable else "no DMARC at all"
        section.add(
            Level.ERROR,
            "dmarc-policy-invalid",
            f"{where}: {shown(record.policy_error, 100)}: receivers apply {applied}",
            f"set p= (and sp=, np=) at {where} to none, quarantine or reject",
        )
    for problem in record.problems:
        if problem.startswith(("p=", "sp=", "np=")):
            continue  # the policy error above
        section.add(
            Level.WARNING,
            "dmarc-syntax",
            f"{where}: {shown(problem, 100)}",
            f"correct the tag at {where} (RFC 9989 4.7)",
        )
    present = [t for t in OBSOLETE_TAGS if any(k == t for k, _ in record.tags)]
    if present:
        section.add(
            Level.ADVICE,
            "dmarc-obsolete-tag",
            f"{where} has {', '.join(f'{t}=' for t in present)}, which RFC 9989 removed: "
            "receivers following it ignore them",
            f"remove {', '.join(f'{t}=' for t in present)} from {where} (t=y replaces pct=0)",
        )


def _policy(
    section: Section, domain: str, policy_domain: str, where: str, rec: DmarcRecord
) -> None:
    record = rec.effective()
    subdomain = policy_domain != domain
    policy = record.policy_for(subdomain=subdomain)
    section.facts["dmarc_policy"] = policy.value
    if rec.psd == "y":
        section.add(
            Level.WARNING,
            "dmarc-psd",
            f"{where} has psd=y: it declares {policy_domain} a public suffix (a registry), so "
            "receivers take the Organizational Domain one label below it",
            f"remove psd=y from {where} (psd=n, or nothing, for an organization's domain)",
        )
    if record.t:
        section.add(
            Level.WARNING,
            "dmarc-testing",
            f"{where} has t=y: receivers report but do not enforce the policy",
            f"remove t=y from {where} once the aggregate reports show your mail aligned",
        )
    if policy == Disposition.NONE:
        section.add(
            Level.ADVICE,
            "dmarc-p-none",
            f"the policy for {domain} is none: failing mail is delivered as if DMARC did not exist",
            f"once the reports show your mail aligned, set {'sp' if subdomain else 'p'}="
            f"quarantine, then reject, at {where}",
        )
        return
    base = record.p or Disposition.NONE
    if record.sp is not None and _STRICTNESS.index(record.sp) < _STRICTNESS.index(base):
        section.add(
            Level.ADVICE,
            "dmarc-sp-weaker",
            f"{where} has sp={record.sp.value}, weaker than p={base.value}: subdomains of "
            f"{policy_domain} are easier to spoof than the domain",
            f"remove sp= from {where} (subdomains then get p=)",
        )
    nonexistent = record.policy_for(subdomain=True, exists=False)
    if record.np is None and nonexistent != Disposition.REJECT:
        section.add(
            Level.ADVICE,
            "dmarc-np",
            f"{where} has no np=: mail from made-up subdomains of {policy_domain} gets "
            f"{nonexistent.value}",
            f"add np=reject to {where} (RFC 9989: for subdomains that do not exist)",
        )


class _Reports:
    """Where the reports go, and whether each external destination agreed to get them."""

    def __init__(
        self,
        section: Section,
        resolver: Resolver,
        psl: PublicSuffixList | None,
        policy_domain: str,
        org_domain: str,
    ) -> None:
        self.section = section
        self.resolver = resolver
        self.psl = psl
        self.policy_domain = policy_domain
        self.org_domain = org_domain

    def check(self, where: str, record: DmarcRecord) -> None:
        """rua= present, mailto: URIs, and each destination host once."""
        section = self.section
        if not any(uri.lower().startswith("mailto:") for uri in record.rua):
            section.add(
                Level.ADVICE,
                "dmarc-no-rua",
                f"{where} has no rua=mailto: nobody sends you aggregate reports, so you cannot see "
                "who sends as your domain before tightening p=",
                f"add rua=mailto:dmarc-reports@{self.org_domain} to {where}",
            )
        checked: set[str] = set()
        for tag, uris in (("rua", record.rua), ("ruf", record.ruf)):
            for uri in uris:
                scheme, _, rest = uri.partition(":")
                if scheme.lower() != "mailto":
                    section.add(
                        Level.WARNING,
                        "dmarc-uri-scheme",
                        f"{where}: {tag}={shown(uri, 60)} is not a mailto: URI, the only kind "
                        "receivers send reports to",
                        f"use {tag}=mailto:ADDRESS at {where}",
                    )
                    continue
                dest = rest.split("!")[0].split("?")[0].rpartition("@")[2].rstrip(".").lower()
                if dest and dest not in checked:
                    checked.add(dest)
                    self.destination(dest)

    def destination(self, dest: str) -> None:
        """An external report destination must publish its consent (RFC 9990)."""
        section = self.section
        name = f"{self.policy_domain}._report._dmarc.{dest}"
        try:
            if organizational_domain(dest, self.resolver, self.psl) == self.org_domain:
                return  # not external
            answer = self.resolver.query(name, "TXT")
        except DnsTempError as exc:
            section.undone("dmarc", exc)
            return
        consents = [t for t in answer.txt() if parse_record(t.decode("utf-8", "replace"))]
        if not consents:
            section.add(
                Level.ERROR,
                "dmarc-report-unauthorized",
                f"reports for {self.policy_domain} go to {shown(dest, 60)}, another "
                f"organization, which publishes no consent at {shown(name, 100)}: receivers "
                "send it none",
                f'ask the owner of {shown(dest, 60)} to publish {shown(name, 100)} TXT "v=DMARC1"',
            )
        elif len(answer.txt()) > 1:
            section.add(
                Level.WARNING,
                "dmarc-report-ambiguous",
                f"{shown(name, 100)} holds {len(answer.txt())} TXT records: receivers following "
                "RFC 7489 7.1 want exactly one",
                f'keep one TXT record, "v=DMARC1", at {shown(name, 100)}',
            )
