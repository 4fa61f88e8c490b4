"""ARC chain validation (RFC 8617 section 5.2), on the DKIM verifier's parts.

The shape of the chain comes from :mod:`.arc_chain`; the signatures are checked with the
DKIM code: tag lists (dkimpy's parser), header canonicalisation and ``h=`` selection
(:mod:`.dkim_header`), key records and their temperror/permerror discipline
(:mod:`.dkim_key`), RSA/Ed25519 through OpenSSL/libsodium (:mod:`.dkim_crypto`), and the
body hash streamed by :class:`~.dkim_body.BodyHasher` (the engine registers the AMS's
:data:`~.dkim_body.BodySpec`, :func:`.arc_chain.arc_body_specs`).

Order (each step stops at the first failure): the shape (no DNS); the newest AMS (step 4);
every ARC-Seal from the newest down (step 6); then, for a passing chain only, older AMSs
down from N-1 for ``oldest-pass`` (step 4.1, at most :data:`~.arc_chain.MAX_AMS` AMSs in
all). Results:

==========================================  =======================================
outcome                                     result (reason)
==========================================  =======================================
no ARC field                                none
malformed chain, > 50 sets, cv=fail         fail (what is wrong, in fixed words)
a signature does not verify, bad body hash  fail ("ARC-Seal i=2: signature did not verify")
no key, revoked or unusable key, small RSA  fail (the key problem, without the key's name)
key lookup timeout / SERVFAIL               temperror (never fail)
more than 16 distinct keys in one chain     fail
header data over 4 MiB for the seals        fail
unexpected exception                        permerror "internal error" (logged)
==========================================  =======================================
"""

from __future__ import annotations

import dataclasses
import logging
import re
import time
from dataclasses import dataclass, field

from authmilter.checks.arc_chain import (
    AMS,
    ARC_CANON,
    MAX_AMS,
    SEAL,
    ArcSet,
    ChainError,
    ams_spec,
    collect,
)
from authmilter.checks.dkim_body import BodySpec, hash_body, parse_c
from authmilter.checks.dkim_crypto import MIN_RSA_BITS, PublicKey, verify_signature
from authmilter.checks.dkim_header import (
    CanonicalHeaders,
    HeaderBudgetError,
    HeaderFormatError,
    relaxed_field,
    relaxed_signature,
)
from authmilter.checks.dkim_key import KeyProblem, SignatureFacts, a_label, fetch_key, load_key
from authmilter.checks.dkim_verify import FUTURE_SLACK, KEY_TIMEOUT, MAX_HEADER_DATA
from authmilter.checks.taglist import decode_base64, is_base64
from authmilter.config import MAX_SIGNED_FIELDS
from authmilter.dnsresolver import Resolver
from authmilter.model import BodyDigest, HeaderField, Transaction
from authmilter.results import ArcResult, ArcSealer, Result

log = logging.getLogger(__name__)

ALGORITHMS = ("rsa-sha256", "ed25519-sha256")  # RFC 8617 names rsa-sha256; Ed25519 as DKIM
MAX_KEY_LOOKUPS = 16  # distinct key records per chain (each a DNS lookup, through the cache)
AMS_TAGS = (b"i", b"a", b"b", b"bh", b"d", b"h", b"s")
SEAL_TAGS = (b"i", b"a", b"b", b"cv", b"d", b"s")
_DIGITS = re.compile(rb"\s*\d{1,16}\s*\Z")
_H_SPLIT = re.compile(rb"\s*:\s*")


class _Invalid(Exception):  # noqa: N818 - a verdict, not an error
    """One signature does not validate: ``result`` is fail or temperror."""

    def __init__(self, result: Result, reason: str) -> None:
        super().__init__(reason)
        self.result = result
        self.reason = reason


def verify_arc(
    tx: Transaction,
    resolver: Resolver,
    min_key_bits: int = MIN_RSA_BITS,
    now: float | None = None,
    *,
    oldest_pass: bool = True,
) -> ArcResult:
    """Validate the ARC chain of ``tx``: pass, fail, none or temperror, with the seals found.

    ``oldest_pass`` (RFC 8617 5.2 step 4.1, optional): validate older AMSs for it; without,
    ``ArcResult.oldest_pass`` is None.
    """
    try:
        sets = collect(tx.headers)
    except ChainError as exc:
        return ArcResult(Result.FAIL, chain=exc.chain, reason=exc.reason)
    if not sets:
        return ArcResult(Result.NONE)
    check = _Checker(
        tx, resolver, max(MIN_RSA_BITS, min_key_bits), time.time() if now is None else now
    )
    try:
        return check.chain(sets, oldest_pass)
    except Exception as exc:  # a bug must not escape; never a pass or a fail
        log.warning("arc: unexpected error: %r", exc, exc_info=True)
        return ArcResult(Result.PERMERROR, chain=len(sets), reason="internal error")


@dataclass
class _Checker:
    """The work on one message's chain: its keys, header data and budget."""

    tx: Transaction
    resolver: Resolver
    min_bits: int
    now: float
    keys: dict[str, bytes | KeyProblem] = field(default_factory=dict)
    loaded: dict[tuple[bytes, bytes, bytes], PublicKey] = field(default_factory=dict)  # (d, s, a)
    canonical: dict[int, bytes] = field(default_factory=dict)  # id(field) -> relaxed + CRLF
    headers: CanonicalHeaders | None = None
    seal_bytes: int = 0  # header data hashed for the seals so far

    def chain(self, sets: tuple[ArcSet, ...], oldest_pass: bool = True) -> ArcResult:
        n = len(sets)
        sealers = [_sealer(s) for s in reversed(sets)]  # newest first

        def result(res: Result, reason: str = "", oldest: int | None = None) -> ArcResult:
            return ArcResult(res, n, oldest, tuple(sealers), reason)

        try:  # step 4: the newest AMS
            self.ams(sets[-1])
        except _Invalid as bad:
            return result(bad.result, f"{AMS} i={n}: {bad.reason}")
        for pos, s in enumerate(reversed(sets)):  # step 6: every seal, newest first
            try:
                self.seal(s, sets)
            except _Invalid as bad:
                sealers[pos] = dataclasses.replace(sealers[pos], result=bad.result)
                return result(bad.result, f"{SEAL} i={s.instance}: {bad.reason}")
            sealers[pos] = dataclasses.replace(sealers[pos], result=Result.PASS)
        return result(Result.PASS, oldest=self.oldest_pass(sets) if oldest_pass else None)

    def oldest_pass(self, sets: tuple[ArcSet, ...]) -> int | None:
        """Step 4.1: the oldest instance whose AMS still validates (0: all do); None: not known."""
        checked = 1  # the newest, by step 4
        for s in reversed(sets[:-1]):
            if checked >= MAX_AMS:
                return None
            checked += 1
            try:
                self.ams(s)
            except _Invalid as bad:
                return None if bad.result is Result.TEMPERROR else s.instance + 1
        return 0

    # ------------------------------------------------------------------ signatures

    def ams(self, s: ArcSet) -> None:
        """Validate one ARC-Message-Signature like a DKIM signature; raise _Invalid."""
        try:
            tags = s.ams_tags
        except ChainError:
            raise _Invalid(Result.FAIL, "malformed tag list") from None
        _common(tags, AMS_TAGS, self.now)
        signed = [n.lower() for n in _H_SPLIT.split(tags[b"h"].strip())]
        if b"from" not in signed:
            raise _Invalid(Result.FAIL, "From not signed (RFC 6376 6.1.1)")
        if b"arc-seal" in signed:
            raise _Invalid(Result.FAIL, "h= signs ARC-Seal (RFC 8617 4.1.2)")
        if len(signed) > MAX_SIGNED_FIELDS:
            raise _Invalid(Result.FAIL, f"h= lists more than {MAX_SIGNED_FIELDS} fields")
        if not is_base64(tags[b"bh"]):
            raise _Invalid(Result.FAIL, "bh= value is not valid base64")
        canon = parse_c(tags.get(b"c", ARC_CANON))
        spec = ams_spec(tags)
        if canon is None or spec is None:
            raise _Invalid(Result.FAIL, "invalid c= or l= value")
        digest = self.digest(spec)
        if digest.digest != decode_base64(tags[b"bh"]):  # before the key: no DNS for a bad body
            raise _Invalid(Result.FAIL, "body hash mismatch")
        key = self.key(tags)
        if digest.length is not None and digest.length < digest.canonical_length:
            raise _Invalid(Result.FAIL, "l= signs only part of the body")
        if self.headers is None:
            try:
                self.headers = CanonicalHeaders(self.tx.headers, max_bytes=MAX_HEADER_DATA)
            except HeaderFormatError:
                raise _Invalid(Result.FAIL, "message header unparseable") from None
        try:
            data = self.headers.signed_data(canon[0], tags[b"h"], s.ams)
        except HeaderBudgetError:
            raise _Invalid(Result.FAIL, "signed header data over the budget") from None
        if not verify_signature(key, digest.algorithm, decode_base64(tags[b"b"]), data):
            raise _Invalid(Result.FAIL, "signature did not verify")

    def seal(self, s: ArcSet, sets: tuple[ArcSet, ...]) -> None:
        """Validate one ARC-Seal over the sets 1..i (RFC 8617 5.1.1); raise _Invalid."""
        tags = s.seal_tags
        _common(tags, SEAL_TAGS, self.now)
        key = self.key(tags)
        parts: list[bytes] = []
        for older in sets[: s.instance - 1]:
            parts += (self.relaxed(hf) for hf in older.fields())
        parts += (self.relaxed(s.aar), self.relaxed(s.ams))
        parts.append(relaxed_signature(s.seal))
        size = sum(map(len, parts))
        if self.seal_bytes + size > MAX_HEADER_DATA:
            raise _Invalid(Result.FAIL, "ARC header data over the budget")
        self.seal_bytes += size
        if not verify_signature(key, "sha256", decode_base64(tags[b"b"]), b"".join(parts)):
            raise _Invalid(Result.FAIL, "signature did not verify")

    # ------------------------------------------------------------------ parts

    def relaxed(self, hf: HeaderField) -> bytes:
        """One field, relaxed canonicalisation, with its CRLF (once per field)."""
        done = self.canonical.get(id(hf))
        if done is None:
            done = self.canonical[id(hf)] = relaxed_field(hf)
        return done

    def digest(self, spec: BodySpec) -> BodyDigest:
        """The body hash for ``spec``: streamed in, or hashed from a kept body."""
        found = self.tx.digest_for(*spec)
        if found is None and self.tx.body_kept:
            found = hash_body(self.tx.body, [spec])[0]
        if found is None:
            raise _Invalid(Result.FAIL, "body hash not computed")
        return found

    def key(self, tags: dict[bytes, bytes]) -> PublicKey:
        """The signer's key, looked up and judged once per message; raise _Invalid."""
        cache_key = (tags[b"d"], tags[b"s"], tags[b"a"])
        found = self.loaded.get(cache_key)
        if found is None:
            found = self.loaded[cache_key] = self._key(tags)
        return found

    def _key(self, tags: dict[bytes, bytes]) -> PublicKey:
        domain, selector = a_label(_text(tags[b"d"])), a_label(_text(tags[b"s"]))
        name = f"{selector}._domainkey.{domain}"
        if not domain or not selector or len(name) > 253:
            raise _Invalid(Result.FAIL, "bad d= or s= (not a domain name)")
        record = self.keys.get(name)
        if record is None:
            if len(self.keys) >= MAX_KEY_LOOKUPS:
                raise _Invalid(Result.FAIL, f"chain needs more than {MAX_KEY_LOOKUPS} keys")
            try:
                record = fetch_key(self.resolver, name, KEY_TIMEOUT)
            except KeyProblem as problem:
                record = problem
            self.keys[name] = record
        facts = SignatureFacts(algorithm=_text(tags[b"a"]).lower(), domain=domain, identity="")
        try:
            if isinstance(record, KeyProblem):
                raise record
            return load_key(name, record, facts, self.min_bits)
        except KeyProblem as problem:
            if problem.result is Result.TEMPERROR:
                raise _Invalid(Result.TEMPERROR, "key lookup failed") from None
            raise _Invalid(Result.FAIL, _without_name(problem.reason)) from None


def _common(tags: dict[bytes, bytes], mandatory: tuple[bytes, ...], now: float) -> None:
    """Checks shared by the AMS and the seal: tags present, a=, b=, t=, x=."""
    for tag in mandatory:
        if tag not in tags:
            raise _Invalid(Result.FAIL, f"missing tag {tag.decode()}=")
    if _text(tags[b"a"]).lower() not in ALGORITHMS:
        raise _Invalid(Result.FAIL, "unsupported algorithm")
    if not is_base64(tags[b"b"]):
        raise _Invalid(Result.FAIL, "b= value is not valid base64")
    for tag in (b"t", b"x"):
        if tag in tags and not _DIGITS.match(tags[tag]):
            raise _Invalid(Result.FAIL, f"{tag.decode()}= is not a number")
    if b"t" in tags and int(tags[b"t"]) > now + FUTURE_SLACK:
        raise _Invalid(Result.FAIL, "t= value is in the future")
    if b"x" in tags and int(tags[b"x"]) < now:
        raise _Invalid(Result.FAIL, "signature expired")


def _sealer(s: ArcSet) -> ArcSealer:
    d = _text(s.seal_tags.get(b"d", b""))
    return ArcSealer(
        instance=s.instance,
        domain=a_label(d) or d.lower(),
        selector=_text(s.seal_tags.get(b"s", b"")),
        result=Result.NONE,  # not checked (yet)
    )


def _without_name(reason: str) -> str:
    """A key problem's reason without the record name it may end with (fixed words only)."""
    return reason.split(" (", 1)[0] if reason.endswith(")") else reason


def _text(value: bytes) -> str:
    return value.decode("utf-8", "replace").strip()
