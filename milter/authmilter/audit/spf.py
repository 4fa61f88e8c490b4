"""The SPF audit of one of our domains (RFC 7208).

Two views, both through the engine's resolver:

* a walk of the record and everything it includes or redirects to, each term parsed by
  pyspf's own parser (the one the engine evaluates with), that counts what a receiver's
  evaluation costs for a client that matches nothing: the DNS-querying terms (at most 10,
  4.6.4) and the lookups that come back empty, per address family (at most 2), as pyspf
  counts them (every empty A/AAAA of an ``a`` or of each MX host, an empty MX, an empty
  TXT of an include); terms after ``all`` are never evaluated and are not counted;
* the engine's own SPF check (:func:`authmilter.checks.spf.check_spf`) of each of this
  host's outgoing addresses (they must pass) and of two addresses that are nobody's
  (:data:`PROBES`: they must not pass, and the verdict a stranger gets shows a permerror
  exactly as receivers see it).

Terms whose domain holds a macro depend on the sender or the client: each is counted as
one lookup and not followed.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import re
from collections.abc import Sequence

import spf

from authmilter.audit.findings import Level, Section, shown
from authmilter.checks.spf import check_spf, install
from authmilter.config import SpfConfig
from authmilter.dnsresolver import Resolver
from authmilter.errors import DnsTempError
from authmilter.model import Envelope, IPAddress
from authmilter.results import Result

MAX_LOOKUPS = 10  # RFC 7208 4.6.4
MAX_VOID = 2  # RFC 7208 4.6.4
MAX_MX = 10  # RFC 7208 4.6.4: an mx term with more MX records is a permerror
WALK_LIMIT = 4 * MAX_LOOKUPS  # pyspf stops there whatever the mode; so does the walk
# addresses no domain of ours should authorise: RFC 6676 MCAST-TEST-NET, RFC 6666 discard
PROBES = (ipaddress.ip_address("233.252.0.1"), ipaddress.ip_address("100::1"))
_SPF_RECORD = re.compile(rb"^v=spf1(?: |$)", re.IGNORECASE)


class _Walk:
    """One domain's walk: the lookups counted, the empty answers, the findings."""

    def __init__(self, section: Section, resolver: Resolver, domain: str) -> None:
        self.section = section
        self.resolver = resolver
        self.domain = domain
        self.lookups: list[str] = []  # each DNS-querying term, "term (in domain)"
        self.void: dict[str, list[str]] = {"A": [], "AAAA": []}  # per client family
        self.broken = False  # a permerror was found (receivers stop there)
        install()  # pyspf's DNS goes through our dispatcher (a %{p} macro: TempError)
        self.parser = spf.query(i=str(PROBES[0]), s=f"postmaster@{domain}", h=domain, strict=True)

    # ------------------------------------------------------------------ records

    def record(self, domain: str, *, top: bool, stack: tuple[str, ...]) -> str | None:
        """Walk the record at ``domain``: "ok", "none" (no record), or None (undone/broken)."""
        try:
            answer = self.resolver.query(domain, "TXT")
        except DnsTempError as exc:
            self.section.undone("spf", exc)
            return None
        found = [t for t in answer.txt() if _SPF_RECORD.match(t)]
        if not answer.txt():
            self._void_all(f"TXT {domain}")
        if not found:
            return "none"
        if len(found) > 1:
            self._error(
                "spf-multiple",
                f"{domain} publishes {len(found)} SPF records: receivers get permerror",
                f"merge them into one v=spf1 record at {domain}",
            )
            return None
        try:
            text = found[0].decode("ascii")
        except UnicodeDecodeError:
            self._error(
                "spf-syntax",
                f"the SPF record of {domain} is not ASCII: receivers get permerror",
                f"rewrite the SPF record of {domain} in ASCII",
            )
            return None
        if top and domain == self.domain:
            self.section.facts["spf"] = shown(text, 512)
        self.terms(domain, [t for t in text.split(" ") if t][1:], top=top, stack=stack)
        return "ok"

    def terms(self, domain: str, terms: list[str], *, top: bool, stack: tuple[str, ...]) -> None:
        """Parse every term (pyspf refuses a record for any bad one), then evaluate in order."""
        mechanisms: list[tuple[str, str, str, str]] = []  # term, kind, domain, result
        redirect = ""
        modifiers: set[str] = set()
        self.parser.d = domain
        for term in terms:
            parts = spf.RE_MODIFIER.split(term)[1:]
            try:
                if len(parts) == 2:
                    name = parts[0].lower()
                    if name in modifiers and name in ("redirect", "exp"):
                        raise spf.PermError(f"{name}= appears more than once")
                    modifiers.add(name)
                    if name == "redirect":
                        redirect = term
                        self.parser.expand_domain(parts[1])
                    continue
                _, kind, arg, _, result = self.parser.validate_mechanism(term)
            except spf.PermError as exc:
                self._error(
                    "spf-syntax",
                    f"{shown(term, 60)} in the SPF record of {domain}: {shown(str(exc.msg), 100)}",
                    f"correct or remove {shown(term, 60)} (RFC 7208 section 5)",
                )
                return
            except spf.TempError:  # a %{p} macro wants DNS: no static view of it
                kind, arg, result = term.lstrip("+-~?").split(":")[0].lower(), "", "pass"
            mechanisms.append((term, kind, str(arg), result))
        has_all = self.mechanisms(domain, mechanisms, top=top, stack=stack)
        if redirect:
            self.count(redirect, domain)
            if has_all:
                self.section.add(
                    Level.WARNING,
                    "spf-redirect-ignored",
                    f"the SPF record of {domain} has both all and {shown(redirect, 60)}: "
                    "the redirect is never followed",
                    f"remove {shown(redirect, 60)} or the all term",
                )
            else:
                target = redirect.partition("=")[2]
                self.follow(domain, target, redirect, top=top, stack=stack)
        elif top and not has_all:
            self.section.add(
                Level.WARNING,
                "spf-no-all",
                f"the SPF record of {domain} ends without all: other addresses get neutral",
                f"end the SPF record of {domain} with -all (or ~all)",
            )

    def mechanisms(
        self,
        domain: str,
        mechanisms: Sequence[tuple[str, str, str, str]],
        *,
        top: bool,
        stack: tuple[str, ...],
    ) -> bool:
        """Evaluate up to ``all`` (True when there is one): count and look up."""
        for i, (term, kind, arg, result) in enumerate(mechanisms):
            if kind == "all":
                self.all_term(domain, term, result, top=top, after=len(mechanisms) - i - 1)
                return True
            if kind in ("ip4", "ip6"):
                continue
            self.count(term, domain)
            if "%" in term:
                self.section.add(
                    Level.ADVICE,
                    "spf-macro",
                    f"{shown(term, 60)} in the SPF record of {domain} depends on the sender "
                    "or the client: counted as one lookup, not followed",
                    "nothing, if it is meant; this audit cannot count what it costs",
                )
            elif kind == "include":
                self.follow(domain, arg, term, top=False, stack=stack)
            elif kind == "a":
                self.addresses(arg, term)
            elif kind == "mx":
                self.mx(arg, term)
            elif kind == "exists":
                self.addresses(arg, term, ("A",))
            elif kind == "ptr":
                self.section.add(
                    Level.WARNING,
                    "spf-ptr",
                    f"{shown(term, 60)} in the SPF record of {domain}: RFC 7208 5.5 says not "
                    "to use ptr (slow, unreliable; some receivers ignore it)",
                    "replace ptr by ip4:/ip6: ranges or a:/mx: terms",
                )
        return False

    def all_term(self, domain: str, term: str, result: str, *, top: bool, after: int) -> None:
        if result == "pass":
            self._error(
                "spf-pass-all",
                f"{shown(term, 20)} in the SPF record of {domain}: every address on the "
                "Internet passes",
                f"end the SPF record of {domain} with -all (or ~all)",
                broken=False,
            )
        elif result == "neutral" and top:
            self.section.add(
                Level.WARNING,
                "spf-neutral-all",
                f"?all in the SPF record of {domain}: other addresses get neutral, so SPF "
                "protects nothing",
                f"end the SPF record of {domain} with -all (or ~all)",
            )
        if after:
            self.section.add(
                Level.WARNING,
                "spf-after-all",
                f"{after} term(s) after {shown(term, 20)} in the SPF record of {domain} are "
                "never evaluated",
                "move them before all, or remove them",
            )

    def follow(
        self, domain: str, target: str, term: str, *, top: bool, stack: tuple[str, ...]
    ) -> None:
        """An include or redirect target: a loop, a missing record, or one more walk."""
        target = target.rstrip(".").lower()
        if "%" in target or len(self.lookups) > WALK_LIMIT:
            return
        if target in stack:
            self._error(
                "spf-loop",
                f"{shown(term, 60)} in the SPF record of {domain} leads back to {target}",
                f"remove {shown(term, 60)}",
            )
            return
        if self.record(target, top=top, stack=(*stack, target)) == "none":
            redirect = term.lower().startswith("redirect=")
            self._error(
                "spf-redirect-missing" if redirect else "spf-include-missing",
                f"{shown(term, 60)} in the SPF record of {domain}: {target} has no SPF "
                "record, so receivers get permerror",
                f"remove {shown(term, 60)}, or publish an SPF record at {target}",
            )

    # ------------------------------------------------------------------ lookups

    def count(self, term: str, domain: str) -> None:
        """One DNS-querying term, as pyspf counts it."""
        where = "" if domain == self.domain else f" (in {domain})"
        self.lookups.append(f"{shown(term, 60)}{where}")

    def addresses(self, name: str, term: str, families: Sequence[str] = ("A", "AAAA")) -> None:
        """The address lookups of ``name``: each empty one is void for clients of its family."""
        for family in families:
            try:
                answer = self.resolver.query(name, family)
            except DnsTempError as exc:
                self.section.undone("spf", exc)
                continue
            if not answer.records:
                self.void[family].append(f"{shown(term, 60)} ({family} {name})")

    def mx(self, name: str, term: str) -> None:
        try:
            answer = self.resolver.query(name, "MX")
        except DnsTempError as exc:
            self.section.undone("spf", exc)
            return
        hosts = sorted((r for r in answer.records if isinstance(r, tuple)), key=lambda r: r[0])
        if not hosts:
            self._void_all(f"{shown(term, 60)} (MX {name})")
            return
        if len(hosts) > MAX_MX:
            self._error(
                "spf-mx-too-many",
                f"{shown(term, 60)}: {name} has {len(hosts)} MX records (at most {MAX_MX}, "
                "RFC 7208 4.6.4): receivers get permerror",
                f"replace {shown(term, 60)} by the addresses that send mail",
            )
            return
        for _, host in hosts:
            if host:  # a null MX (RFC 7505) names no host
                self.addresses(str(host), term)

    def _void_all(self, what: str) -> None:
        for family in self.void:
            self.void[family].append(what)

    def _error(self, code: str, text: str, fix: str, *, broken: bool = True) -> None:
        self.section.add(Level.ERROR, code, text, fix)
        self.broken = self.broken or broken

    # ------------------------------------------------------------------ the engine's verdicts

    def verdict(self, cfg: SpfConfig, ip: IPAddress, helo: str) -> tuple[Result, str]:
        """What the engine's SPF check gives ``ip`` sending as postmaster@domain."""
        env = Envelope(client_ip=ip, helo=helo, mail_from=f"postmaster@{self.domain}")
        found = check_spf(env, self.resolver, cfg)
        return found.result, found.reason

    def own_address(self, cfg: SpfConfig, ip: IPAddress, helo: str) -> None:
        """This host's outgoing address must pass."""
        result, reason = self.verdict(cfg, ip, helo)
        if result == Result.PASS:
            return
        if result == Result.TEMPERROR:
            self.section.undone("spf", f"{ip}: {reason}")
            return
        if result == Result.PERMERROR:
            self.permerror(reason)
            return
        kind = "ip4" if ip.version == 4 else "ip6"
        self.section.add(
            Level.ERROR,
            "spf-host-not-permitted",
            f"this host's address {ip} gets spf={result} from the SPF record of {self.domain}",
            f"add {kind}:{ip} to the SPF record of {self.domain}",
        )

    def stranger(self, cfg: SpfConfig, ip: IPAddress) -> None:
        """An address that is nobody's must not pass; its permerror is everyone's."""
        result, reason = self.verdict(cfg, ip, "")
        findings = self.section.findings
        if result == Result.PASS and not any(f.code == "spf-pass-all" for f in findings):
            self.section.add(
                Level.ERROR,
                "spf-open",
                f"{ip}, an address that is nobody's, passes the SPF record of {self.domain}: "
                "so does every spammer",
                f"list only your own ranges in the SPF record of {self.domain}, and end it "
                "with -all",
            )
        elif result == Result.PERMERROR:
            self.permerror(reason)
        elif result == Result.TEMPERROR:
            self.section.undone("spf", f"{ip}: {reason}")

    def permerror(self, reason: str) -> None:
        """A permerror the walk did not explain (it found no SPF error of its own)."""
        findings = self.section.findings
        if self.broken or any(
            f.code.startswith("spf-") and f.level == Level.ERROR for f in findings
        ):
            return
        self.broken = True
        self.section.add(
            Level.ERROR,
            "spf-permerror",
            f"receivers get spf=permerror for {self.domain}: {shown(reason, 100)}",
            f"correct the SPF record of {self.domain} (RFC 7208)",
        )

    # ------------------------------------------------------------------ limits

    def limits(self) -> None:
        """The lookup and void-lookup limits, once the whole tree is walked."""
        n = len(self.lookups)
        listed = ", ".join(self.lookups[:12]) + (", ..." if n > 12 else "")
        if n > MAX_LOOKUPS:
            self._error(
                "spf-too-many-lookups",
                f"{n} DNS-querying terms in the SPF record of {self.domain} and what it "
                f"includes (at most {MAX_LOOKUPS}): receivers get permerror; {listed}",
                "replace include:, a: and mx: terms by the ip4:/ip6: ranges they stand for",
            )
        elif n >= MAX_LOOKUPS - 1:
            self.section.add(
                Level.ADVICE,
                "spf-lookups-near-limit",
                f"{n} DNS-querying terms in the SPF record of {self.domain} (at most "
                f"{MAX_LOOKUPS}): one more include breaks it; {listed}",
                "replace include:, a: and mx: terms by the ip4:/ip6: ranges they stand for",
            )
        for family, client in (("A", "IPv4"), ("AAAA", "IPv6")):
            empty = self.void[family]
            if len(empty) > MAX_VOID:
                self._error(
                    "spf-void-lookups",
                    f"{len(empty)} lookups of the SPF record of {self.domain} find nothing "
                    f"for {client} clients (at most {MAX_VOID}): receivers get permerror; "
                    + ", ".join(empty[:6]),
                    "remove the terms that name hosts or domains without such records",
                )
                break
        self.section.facts["spf_lookups"] = n


def audit_spf(
    section: Section,
    domain: str,
    resolver: Resolver,
    cfg: SpfConfig,
    *,
    addresses: Sequence[IPAddress],
    helo: str,
) -> None:
    """Audit the SPF record of ``domain``; ``addresses`` are this host's outgoing ones."""
    walk = _Walk(section, resolver, domain)
    state = walk.record(domain, top=True, stack=(domain,))
    if state is None and not walk.broken:
        return  # DNS trouble at the top: nothing more to say
    if state == "none":
        section.add(
            Level.ERROR,
            "spf-missing",
            f"{domain} publishes no SPF record: receivers get spf=none, and DMARC can only "
            "pass on DKIM",
            f'publish "v=spf1 mx -all" (or the ip4:/ip6: ranges that send mail) at {domain}',
        )
        return
    if not walk.broken:
        walk.limits()
    cfg = dataclasses.replace(cfg, received_spf_header=False)
    for ip in addresses:
        walk.own_address(cfg, ip, helo or domain)
    for ip in PROBES:
        walk.stranger(cfg, ip)
