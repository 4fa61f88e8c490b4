"""The DKIM audit of one of our domains: each selector we sign with (RFC 6376, RFC 8301).

A key from the signing table is compared with its record by
:func:`authmilter.signing.dnscheck.check_key` (the record judged exactly as the verifier
judges it, then ``p=`` compared with the private key); a selector named with
``--selector`` (no private key at hand) is judged the same way but for the comparison.
A usable record is then looked at for what the verifier lets pass but should not be
there: ``t=y``, an RSA key under 2048 bits.
"""

from __future__ import annotations

from dataclasses import dataclass

from authmilter.audit.findings import Level, Section, shown
from authmilter.checks.dkim_crypto import MIN_RSA_BITS
from authmilter.checks.dkim_key import (
    KEY_TYPES,
    KeyProblem,
    SignatureFacts,
    fetch_key,
    load_key,
    parse_key_record,
)
from authmilter.dnsresolver import Resolver
from authmilter.results import Result
from authmilter.signing.dnscheck import KeyStatus, check_key
from authmilter.signing.signer import SigningKey

RECOMMENDED_RSA_BITS = 2048  # RFC 8301 3.2: 1024 at least, 2048 recommended
_ALGORITHMS = {kind: alg for alg, kind in KEY_TYPES.items() if alg != "rsa-sha1"}


@dataclass(frozen=True, slots=True)
class Selector:
    """One selector to check at ``selector._domainkey.domain``; ``key`` None: no private key."""

    domain: str
    selector: str
    key: SigningKey | None = None

    @property
    def record_name(self) -> str:
        """Where the key record lives."""
        return f"{self.selector}._domainkey.{self.domain}"


def audit_dkim(
    section: Section, domain: str, selectors: list[Selector], resolver: Resolver
) -> None:
    """Audit every selector of ``domain``; say so when there is none to sign with."""
    section.facts["dkim"] = [s.record_name for s in selectors]
    if not selectors:
        section.add(
            Level.WARNING,
            "dkim-no-key",
            f"no signing key for {domain} in the signing table: its mail is not DKIM-signed, "
            "and DMARC passes on SPF alone (which forwarding breaks)",
            f"authmilter genkey -d {domain} -s SELECTOR, publish SELECTOR.txt, add the key "
            "to the signing table",
        )
        return
    for sel in selectors:
        _audit_selector(section, sel, resolver)


def _audit_selector(section: Section, sel: Selector, resolver: Resolver) -> None:
    name = sel.record_name
    if sel.key is not None:
        check = check_key(sel.key, resolver)
        if check.status == KeyStatus.TEMPERROR:
            section.undone("dkim", check.detail)
            return
        if check.status != KeyStatus.OK:
            _refused(section, sel, check.status, check.detail)
            return
        algorithm = sel.key.algorithm
    try:
        record = fetch_key(resolver, name, None)
    except KeyProblem as exc:
        if exc.result == Result.TEMPERROR:
            section.undone("dkim", exc.reason)
        else:
            _refused(section, sel, KeyStatus.MISSING, exc.reason)
        return
    if sel.key is None:
        kind = parse_key_record(record).get(b"k", b"rsa").decode("ascii", "replace").lower()
        algorithm = _ALGORITHMS.get(kind, "rsa-sha256")
    facts = SignatureFacts(algorithm=algorithm, domain=sel.domain, identity="")
    try:
        key = load_key(name, record, facts, MIN_RSA_BITS)
    except KeyProblem as exc:
        _refused(section, sel, KeyStatus.MISMATCH, f"a verifier refuses the record: {exc.reason}")
        return
    tags = parse_key_record(record)
    flags = [f.strip().lower() for f in tags.get(b"t", b"").decode("ascii", "replace").split(":")]
    if "y" in flags:
        section.add(
            Level.WARNING,
            "dkim-testing",
            f"{name} has t=y: verifiers may treat its signatures as if the mail were unsigned",
            f"remove t=y from {name} once signing works",
        )
    if key.kind == "rsa" and key.bits < RECOMMENDED_RSA_BITS:
        section.add(
            Level.WARNING,
            "dkim-key-size",
            f"{name} is a {key.bits}-bit RSA key: the least RFC 8301 allows; some receivers "
            "want 2048",
            _NEW_KEY.format(domain=sel.domain),
        )


def _refused(section: Section, sel: Selector, status: KeyStatus, detail: str) -> None:
    """A record a verifier refuses, or that is not our key: why, with its own code."""
    name = sel.record_name
    why = shown(detail.removeprefix("a verifier refuses the record: "), 100)
    fix = f"publish the record authmilter genkey wrote ({sel.selector}.txt) at {name}"
    if status == KeyStatus.MISSING:
        if "multiple key records" in detail:
            code, text = "dkim-multiple", "more than one TXT record"
            fix = f"keep one TXT record at {name}"
        else:
            code, text = "dkim-missing", "no key record is published"
    elif "does not match the private key" in detail:
        code, text = "dkim-mismatch", "the published key is not the one authmilter signs with"
    else:
        code = "dkim-unusable"
        for words, found, found_fix in _REFUSALS:
            if words in detail:
                code = found
                fix = found_fix.format(name=name, domain=sel.domain)
                break
        text = f"verifiers refuse the record: {why}"
    section.add(Level.ERROR, code, f"{name}: {text}: signatures with it fail", fix)


_NEW_KEY = "authmilter genkey -b 2048 -d {domain} -s NEWSELECTOR, publish, then switch"
# what load_key says (checks/dkim_key.py) -> (code, fix)
_REFUSALS = (
    ("key revoked", "dkim-revoked", "publish the key again (p=...) at {name}, or a new selector"),
    ("does not match a=", "dkim-key-type", "set k= at {name} to the key's type (rsa or ed25519)"),
    ("unknown key type", "dkim-key-type", "set k= at {name} to the key's type (rsa or ed25519)"),
    ("does not allow", "dkim-hash", "remove h= from {name} (or list sha256 in it)"),
    ("not for email", "dkim-service", "remove s= from {name} (or list email in it)"),
    ("syntax", "dkim-syntax", "publish the record authmilter genkey wrote at {name}"),
    ("version", "dkim-syntax", "publish the record authmilter genkey wrote at {name}"),
    ("no p=", "dkim-syntax", "publish the record authmilter genkey wrote at {name}"),
    ("too small", "dkim-key-size", _NEW_KEY),
)
