"""DMARC evaluation (RFC 9989): policy discovery, Organizational Domains, alignment, verdict.

Two ways to find Organizational Domains, chosen by ``dmarc.org_domain``:

* ``treewalk`` (default): the RFC 9989 DNS Tree Walk (4.10) for both the policy record and
  Organizational Domains, honouring ``psd=y|n`` and the eight-query limit.
* ``psl``: RFC 7489 behaviour: the record at the author domain, else at its Organizational
  Domain taken from the Public Suffix List; ``pct=`` is honoured (a message sampled out is
  ``testing``).

Every DNS question goes through the :class:`~authmilter.dnsresolver.Resolver`, once per
evaluation (answers and failures are memoised). A DNS failure anywhere the verdict depends
on makes the result ``temperror``, never ``fail``.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import TypeVar

from authmilter.checks.dmarc_record import DmarcRecord, parse_record, tree_walk_targets
from authmilter.config import DmarcConfig
from authmilter.dnsresolver import Resolver
from authmilter.errors import DnsTempError
from authmilter.idn import normalise_domain
from authmilter.psl import PublicSuffixList
from authmilter.results import (
    Disposition,
    DkimResult,
    DmarcResult,
    FromField,
    FromStatus,
    Result,
    SpfResult,
)

Sampler = Callable[[], float]  # returns a float in [0, 1), like random.random

_SYSTEM_RANDOM = random.SystemRandom()

_STRICTNESS = [Disposition.NONE, Disposition.QUARANTINE, Disposition.REJECT]


@dataclass(frozen=True, slots=True)
class _Found:
    """What ``_dmarc.<name>`` holds: the one valid record, if exactly one."""

    record: DmarcRecord | None
    count: int  # records starting with v=DMARC1
    name_exists: bool  # False: NXDOMAIN for _dmarc.<name>


class _Dns:
    """One evaluation's view of DNS: each question asked once, failures remembered too."""

    def __init__(self, resolver: Resolver) -> None:
        self._resolver = resolver
        self._txt: dict[str, _Found | DnsTempError] = {}
        self._exists: dict[str, bool | DnsTempError] = {}

    def dmarc(self, domain: str) -> _Found:
        """The DMARC record(s) at ``_dmarc.<domain>``; DnsTempError when DNS failed."""
        return _memo(self._txt, domain, lambda: self._fetch(domain))

    def _fetch(self, domain: str) -> _Found:
        answer = self._resolver.query("_dmarc." + domain, "TXT")
        records = [
            r
            for r in (parse_record(t.decode("utf-8", "replace")) for t in answer.txt())
            if r is not None
        ]
        only = records[0] if len(records) == 1 else None
        return _Found(only, len(records), answer.exists)

    def exists(self, domain: str) -> bool:
        """RFC 9989 3.2.13 / A.4: a name exists unless A, AAAA and MX all say NXDOMAIN."""
        found = self._txt.get(domain)
        if isinstance(found, _Found) and found.name_exists:
            return True  # _dmarc.<domain> exists, so <domain> does
        return _memo(
            self._exists,
            domain,
            lambda: any(self._resolver.query(domain, t).exists for t in ("A", "AAAA", "MX")),
        )


T = TypeVar("T")


def _memo(cache: dict[str, T | DnsTempError], key: str, compute: Callable[[], T]) -> T:
    """``compute()`` once per key; a DNS failure is remembered and raised again."""
    if key not in cache:
        try:
            cache[key] = compute()
        except DnsTempError as exc:
            cache[key] = exc
    value = cache[key]
    if isinstance(value, DnsTempError):
        raise value
    return value


class _OrgDomains:
    """Organizational Domains by tree walk or PSL, memoised per evaluation."""

    def __init__(self, dns: _Dns, psl: PublicSuffixList | None) -> None:
        self.dns = dns
        self.psl = psl
        self._org: dict[str, str | DnsTempError] = {}
        self._walks: dict[str, list[tuple[str, DmarcRecord]]] = {}

    def walk(self, start: str) -> list[tuple[str, DmarcRecord]]:
        """RFC 9989 4.10: the valid records met from ``start`` up, stopping at psd=y/n."""
        if start not in self._walks:
            found: list[tuple[str, DmarcRecord]] = []
            for target in tree_walk_targets(start):
                record = self.dns.dmarc(target).record
                if record is not None:
                    found.append((target, record))
                    if record.psd in ("y", "n"):
                        break
            self._walks[start] = found
        return self._walks[start]

    def org(self, domain: str) -> str:
        """The Organizational Domain of ``domain``; DnsTempError when the walk failed."""
        psl = self.psl
        if psl is not None:
            return _memo(self._org, domain, lambda: psl.org_domain(domain))
        return _memo(self._org, domain, lambda: select_org_domain(domain, self.walk(domain)))

    def known(self, domain: str) -> str | None:
        """The Organizational Domain if it was already determined (no DNS)."""
        cached = self._org.get(domain)
        return cached if isinstance(cached, str) else None


def select_org_domain(start: str, found: Sequence[tuple[str, DmarcRecord]]) -> str:
    """RFC 9989 4.10.2: pick the Organizational Domain from a walk's records (longest first)."""
    for name, record in found:
        if record.psd == "n":
            return name
        if record.psd == "y" and name != start:
            return _one_label_below(start, name)
    if found:
        return found[-1][0]  # the record at the name with the fewest labels
    return start


def _one_label_below(domain: str, ancestor: str) -> str:
    return ".".join(domain.split(".")[-(ancestor.count(".") + 2) :])


# --------------------------------------------------------------------------- evaluation


@dataclass(frozen=True, slots=True)
class _Identifiers:
    """Authenticated (or temporarily unknown) identifiers, in A-label form."""

    dkim_pass: tuple[str, ...]
    dkim_temp: tuple[str, ...]
    spf_pass: str
    spf_temp: str


def _identifiers(
    spf: SpfResult | None, dkim: Sequence[DkimResult], null_sender: bool
) -> tuple[_Identifiers, str]:
    def domains(result: Result) -> tuple[str, ...]:
        out: list[str] = []
        for d in dkim:
            name = normalise_domain(d.domain.rstrip(".")) if d.result is result else None
            if name and name not in out:
                out.append(name)
        return tuple(out)

    note = ""
    spf_domain = ""
    if spf is not None:
        counts = spf.identity == "mailfrom" or (spf.identity == "helo" and null_sender)
        if counts:
            raw = spf.domain or spf.sender.rpartition("@")[2]
            spf_domain = normalise_domain(raw.rstrip(".")) or ""
        elif spf.result in (Result.PASS, Result.TEMPERROR):
            note = f"SPF {spf.result} for the {spf.identity} identity does not count"
    ids = _Identifiers(
        dkim_pass=domains(Result.PASS),
        dkim_temp=domains(Result.TEMPERROR),
        spf_pass=spf_domain if spf is not None and spf.result is Result.PASS else "",
        spf_temp=spf_domain if spf is not None and spf.result is Result.TEMPERROR else "",
    )
    return ids, note


class _Evaluator:
    """Evaluates one author domain; shares its DNS memo with the other From domains."""

    def __init__(
        self,
        orgs: _OrgDomains,
        cfg: DmarcConfig,
        ids: _Identifiers,
        sample: Sampler,
        note: str,
    ) -> None:
        self.orgs = orgs
        self.dns = orgs.dns
        self.cfg = cfg
        self.ids = ids
        self.sample = sample
        self.note = note

    def evaluate(self, author: str) -> DmarcResult:
        base = DmarcResult(Result.NONE, from_domain=author)
        try:
            found = self.discover(author)
        except DnsTempError as exc:
            return replace(
                base, result=Result.TEMPERROR, reason=f"DMARC record lookup failed: {exc}"
            )
        except _PermanentError as exc:
            return replace(base, result=Result.PERMERROR, reason=str(exc))
        if found is None:
            org = self.orgs.known(author) or ""
            return replace(base, org_domain=org, reason=self._why("no DMARC record"))
        policy_domain, record = found
        method = "psl" if self.orgs.psl is not None else "treewalk"
        if not record.usable:
            return replace(
                base,
                result=Result.PERMERROR,
                policy_domain=policy_domain,
                record=record,
                discovery_method=method,
                org_domain=self.orgs.known(author) or "",
                reason=(
                    f"record at _dmarc.{policy_domain} has {record.policy_error} "
                    "and no valid rua=: DMARC not applied"
                ),
            )
        record = record.effective()
        result, dkim_ok, spf_ok, why = self.verdict(author, record)
        subdomain = policy_domain != author
        policy = record.policy_for(subdomain=subdomain)
        if subdomain and result is Result.FAIL and record.np not in (None, policy):
            try:
                policy = record.policy_for(subdomain=True, exists=self.dns.exists(author))
            except DnsTempError as exc:
                result, why = Result.TEMPERROR, f"existence check of {author} for np= failed: {exc}"
                # it may be np that applies: report the stricter policy so that the verdict
                # is retried (451), not accepted under the laxer sp/p
                np_policy = record.policy_for(subdomain=True, exists=False)
                policy = max(policy, np_policy, key=_STRICTNESS.index)
        testing = record.t
        psl_mode = self.orgs.psl is not None
        if psl_mode and result is Result.FAIL and self.sample() * 100 >= record.pct:
            testing = True
            why += f"; sampled out by pct={record.pct}"
        return DmarcResult(
            result=result,
            from_domain=author,
            policy=policy,
            org_domain=self._org_for_report(author),
            policy_domain=policy_domain,
            testing=testing,
            dkim_aligned=dkim_ok,
            spf_aligned=spf_ok,
            reason=self._why(why),
            record=found[1],
            discovery_method=method,
        )

    def _why(self, text: str) -> str:
        return f"{text}; {self.note}" if self.note else text

    def discover(self, author: str) -> tuple[str, DmarcRecord] | None:
        """Policy discovery: (policy domain, record), None when there is none."""
        first = self.dns.dmarc(author)
        if self.orgs.psl is not None:
            return self._discover_psl(author, first)
        if first.record is not None:
            return author, first.record
        found = self.orgs.walk(author)
        org = self.orgs.org(author)
        for name, record in found:
            if name == org:
                return name, record
        if found and found[-1][1].psd == "y":
            return found[-1]  # the Public Suffix Domain's record
        return None

    def _discover_psl(self, author: str, first: _Found) -> tuple[str, DmarcRecord] | None:
        """RFC 7489 6.6.3: the From domain, else (only if none there) its org domain."""
        if first.count > 1:
            raise _PermanentError(f"{first.count} DMARC records at _dmarc.{author}")
        if first.record is not None:
            return author, first.record
        org = self.orgs.org(author)
        if org == author:
            return None
        second = self.dns.dmarc(org)
        if second.count > 1:
            raise _PermanentError(f"{second.count} DMARC records at _dmarc.{org}")
        return (org, second.record) if second.record is not None else None

    def aligned(self, ident: str, author: str, mode: str) -> bool | None:
        """Identifier Alignment; None when DNS trouble left it undecided."""
        if ident == author:
            return True
        if mode == "s":
            return False
        try:
            org = self.orgs.org(author)
            if ident != org and not ident.endswith("." + org):
                return False  # its org domain is a suffix of it, so it cannot be ``org``
            return self.orgs.org(ident) == org
        except DnsTempError:
            return None

    def verdict(self, author: str, record: DmarcRecord) -> tuple[Result, bool, bool, str]:
        """(result, DKIM aligned, SPF aligned, reason) for one author domain."""
        ids = self.ids
        dkim = {d: self.aligned(d, author, record.adkim) for d in ids.dkim_pass}
        spf = self.aligned(ids.spf_pass, author, record.aspf) if ids.spf_pass else False
        dkim_ok = any(v is True for v in dkim.values())
        spf_ok = spf is True
        if dkim_ok or spf_ok:
            which = [
                *(f"DKIM d={d}" for d, v in dkim.items() if v is True),
                *([f"SPF {ids.spf_pass}"] if spf_ok else []),
            ]
            return Result.PASS, dkim_ok, spf_ok, "aligned " + ", ".join(which)
        unsure = [f"DKIM d={d} (alignment unknown)" for d, v in dkim.items() if v is None]
        if spf is None:
            unsure.append(f"SPF {ids.spf_pass} (alignment unknown)")
        for d in ids.dkim_temp:
            if self.aligned(d, author, record.adkim) is not False:
                unsure.append(f"DKIM d={d} temperror")
        if ids.spf_temp and self.aligned(ids.spf_temp, author, record.aspf) is not False:
            unsure.append(f"SPF {ids.spf_temp} temperror")
        if unsure:
            return (
                Result.TEMPERROR,
                False,
                False,
                "no aligned pass; DNS trouble: " + ", ".join(unsure),
            )
        seen = [f"DKIM d={d}" for d in ids.dkim_pass] + (
            [f"SPF {ids.spf_pass}"] if ids.spf_pass else []
        )
        what = f"passes not aligned: {', '.join(seen)}" if seen else "no SPF or DKIM pass"
        return Result.FAIL, False, False, f"no aligned pass ({what})"

    def _org_for_report(self, author: str) -> str:
        known = self.orgs.known(author)
        if known is not None:
            return known
        ids = self.ids
        others = {*ids.dkim_pass, *ids.dkim_temp, ids.spf_pass, ids.spf_temp} - {"", author}
        if not others:
            return author  # RFC 9989 4.10.2: the common domain is the Organizational Domain
        try:
            return self.orgs.org(author)
        except DnsTempError:
            return ""


class _PermanentError(Exception):
    """Policy discovery hit a permanent error (RFC 7489 mode: several records)."""


# --------------------------------------------------------------------------- entry point


def evaluate_dmarc(  # noqa: PLR0917 (the checks' agreed signature)
    from_field: FromField,
    spf: SpfResult | None,
    dkim: Sequence[DkimResult],
    resolver: Resolver,
    cfg: DmarcConfig,
    psl: PublicSuffixList | None = None,
    *,
    null_sender: bool = False,
    sample: Sampler | None = None,
) -> DmarcResult:
    """Evaluate DMARC for a message.

    ``spf`` is the MAIL FROM check; it counts when its identity is "mailfrom", or "helo"
    when ``null_sender`` says MAIL FROM was ``<>`` (RFC 9989 3.2.4: the MAIL FROM identity
    of a null path is postmaster@HELO). ``sample`` (default: the system RNG) decides
    ``pct=`` sampling in psl mode. Several From domains are each evaluated and the strictest
    result is returned.
    """
    if not cfg.enabled:
        return DmarcResult(Result.NONE, reason="DMARC evaluation disabled")
    if from_field.status in (FromStatus.MISSING, FromStatus.UNPARSEABLE):
        return DmarcResult(
            Result.PERMERROR, reason=f"From {from_field.status}: {from_field.reason}".rstrip(": ")
        )
    if not from_field.domains:
        return DmarcResult(Result.PERMERROR, reason=f"From {from_field.status}: no domain")
    if cfg.org_domain == "psl" and psl is None:
        raise ValueError("dmarc.org_domain = 'psl' needs a PublicSuffixList")
    orgs = _OrgDomains(_Dns(resolver), psl if cfg.org_domain == "psl" else None)
    ids, note = _identifiers(spf, dkim, null_sender)
    evaluator = _Evaluator(orgs, cfg, ids, sample or _SYSTEM_RANDOM.random, note)
    authors = list(dict.fromkeys(from_field.domains))
    results = [evaluator.evaluate(a) for a in authors]
    if len(results) == 1:
        if from_field.status is FromStatus.OK:
            return results[0]
        return replace(
            results[0], reason=f"From {from_field.status} (one domain): {results[0].reason}"
        )
    worst = max(results, key=_severity)
    summary = ", ".join(f"{r.from_domain}={r.result}" for r in results)
    return replace(
        worst,
        reason=(
            f"From {from_field.status} with {len(results)} domains ({summary}); "
            f"strictest is {worst.from_domain}: {worst.reason}"
        ),
    )


_LEVEL = {Disposition.NONE: 0, Disposition.QUARANTINE: 1, Disposition.REJECT: 2}


def _severity(r: DmarcResult) -> int:
    """Order results by how strictly they must be handled (higher is stricter).

    pass < none < permerror < fail(none) < fail(quarantine) < temperror < fail(reject);
    ``testing`` lowers a failing policy by one step, as t=y asks.
    """
    if r.result is Result.FAIL:
        level = _LEVEL[r.policy] - (1 if r.testing and r.policy is not Disposition.NONE else 0)
        return (3, 4, 6)[level]
    return {Result.PASS: 0, Result.NONE: 1, Result.PERMERROR: 2, Result.TEMPERROR: 5}.get(
        r.result, 2
    )


# --------------------------------------------------------------------------- for tools


@dataclass(frozen=True, slots=True)
class PolicyFound:
    """What policy discovery finds for a domain (``authmilter dns-check``)."""

    domain: str
    org_domain: str  # its Organizational Domain (tree walk or PSL, as configured)
    policy_domain: str = ""  # where the record that applies was found ("" = none)
    record: DmarcRecord | None = None  # that record
    records_here: int = 0  # v=DMARC1 records at _dmarc.<domain> (more than one: all ignored)


def discover_policy(
    domain: str, resolver: Resolver, psl: PublicSuffixList | None = None
) -> PolicyFound:
    """Policy discovery for ``domain`` exactly as :func:`evaluate_dmarc` does it.

    ``psl`` given: RFC 7489 (record at the domain, else at its PSL Organizational Domain);
    else the RFC 9989 tree walk. Raises DnsTempError when DNS failed.
    """
    orgs = _OrgDomains(_Dns(resolver), psl)
    mode = "psl" if psl is not None else "treewalk"
    ids = _Identifiers((), (), "", "")
    evaluator = _Evaluator(orgs, DmarcConfig(org_domain=mode), ids, _SYSTEM_RANDOM.random, "")
    here = orgs.dns.dmarc(domain)
    try:
        found = evaluator.discover(domain)
    except _PermanentError:  # psl mode, several records: nothing applies
        found = None
    org = orgs.org(domain)
    if found is None:
        return PolicyFound(domain, org, records_here=here.count)
    return PolicyFound(domain, org, found[0], found[1], here.count)


def organizational_domain(
    domain: str, resolver: Resolver, psl: PublicSuffixList | None = None
) -> str:
    """The Organizational Domain of ``domain`` (tree walk, or PSL); DnsTempError on trouble."""
    return _OrgDomains(_Dns(resolver), psl).org(domain)
