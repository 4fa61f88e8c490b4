"""DKIM verification of every signature (RFC 6376, RFC 8301, RFC 8463).

One path, no dkimpy at run time except its tag-list parser: the body hash comes from
``tx.body_digests`` (computed while the body streamed in, :mod:`.dkim_body`) or, when the
body was kept, from one :class:`~.dkim_body.BodyHasher` pass over it for all signatures;
the header data is built by :mod:`.dkim_header` and checked with OpenSSL / libsodium
(:mod:`.dkim_crypto`). dkimpy remains the oracle the tests compare against.

Per signature, in message order, up to ``cfg.max_signatures`` (the rest: one ``policy``
result "N more signatures not verified"); a key is looked up once per message:

=====================================  ======================================
outcome                                result (reason)
=====================================  ======================================
valid                                  pass (``l=`` covering the body: noted in reason)
valid, ``l=`` shorter than the body    policy "l= signs only N of M body bytes; ..."
header/signature mismatch              fail "signature did not verify"
body hash mismatch                     fail "body hash mismatch"
``a=rsa-sha1``                         fail "rsa-sha1 not accepted (RFC 8301)"
``x=`` in the past                     fail "signature expired"
key lookup timeout / SERVFAIL          temperror
no key record / several records        permerror "no key (...)" / "multiple key records"
revoked key (empty ``p=``)             permerror "key revoked (empty p=)"
unusable key (syntax, ``k=``, base64)  permerror
malformed signature                    permerror
RSA key < min_key_bits (>= 1024)       policy "key too small (N bits)"
body larger than max_body_bytes        neutral "message too large to verify (N bytes)"
``h=`` over max_signed_fields entries  policy "h= lists N header fields; ..."
over max_header_fields header fields   policy "message has N header fields; ..."
signed header data over the budget     policy "signed header data of N bytes exceeds ..."
body not kept and its hash not given   neutral "body hash not computed"
unexpected exception                   permerror (exception text, logged)
=====================================  ======================================
"""

from __future__ import annotations

import logging
import re
import time
from dataclasses import dataclass, field

import dkim.util

from authmilter.checks.dkim_body import BodySpec, hash_body, parse_c, parse_tags, spec_of
from authmilter.checks.dkim_crypto import MIN_RSA_BITS, verify_signature
from authmilter.checks.dkim_header import (
    CanonicalHeaders,
    HeaderBudgetError,
    HeaderFormatError,
)
from authmilter.checks.dkim_key import (
    KeyProblem,
    SignatureFacts,
    a_label,
    fetch_key,
    load_key,
)
from authmilter.checks.taglist import decode_base64, is_base64
from authmilter.config import MAX_SIGNED_FIELDS, DkimConfig
from authmilter.dnsresolver import Resolver
from authmilter.model import BodyDigest, HeaderField, Transaction
from authmilter.results import DkimResult, Result

log = logging.getLogger(__name__)

KEY_TIMEOUT = 5.0  # seconds per key lookup (the resolver may clamp it lower)
HEADER_B_CHARS = 8  # RFC 6008
FUTURE_SLACK = 36000  # t= up to 10 h ahead is a clock skew, not an error (as dkimpy)
# Header data hashed per message, all signatures together (each signs at most every header
# field once plus itself). Counted in bytes, not seconds, so that the outcome never depends
# on the machine's load. A real signature signs a few KB; Postfix keeps each field under
# 100 KB (header_size_limit) but not the header as a whole, so without a budget 20 signatures
# could each hash a header of several MB. 4 MiB is some ms of SHA-256.
MAX_HEADER_DATA = 4 * 1024 * 1024
MANDATORY_TAGS = (b"v", b"a", b"b", b"bh", b"d", b"h", b"s")
KNOWN_ALGORITHMS = ("rsa-sha256", "ed25519-sha256", "rsa-sha1")
_DIGITS = re.compile(rb"\d{1,16}\Z")


@dataclass(slots=True)
class _Signature:
    """One DKIM-Signature field, parsed as far as it goes."""

    header: HeaderField
    tags: dict[bytes, bytes] = field(default_factory=dict)
    error: str = ""  # why the tag list itself could not be parsed
    _names: tuple[str | None, str | None] | None = None  # (d=, s=) as A-labels, once

    def text(self, tag: bytes) -> str:
        return self.tags.get(tag, b"").decode("utf-8", "replace").strip()

    def domain(self) -> str:
        """d= as a lower-case A-label name (RFC 8616), or as written when it is not one."""
        if self._names is None:
            self._names = self._a_labels()
        return self._names[0] or self.text(b"d").lower()

    def key_name(self) -> str | None:
        """Where the key lives (A-labels, RFC 8616), or None for a malformed d= / s=."""
        if self._names is None:
            self._names = self._a_labels()
        domain, selector = self._names
        if not domain or not selector:
            return None
        name = f"{selector}._domainkey.{domain}"
        return name if len(name) <= 253 else None

    def _a_labels(self) -> tuple[str | None, str | None]:
        return a_label(self.text(b"d")), a_label(self.text(b"s"))

    def spec(self) -> BodySpec | None:
        return spec_of(self.tags)

    def result(self, result: Result, reason: str, **extra: int | None) -> DkimResult:
        b = re.sub(r"\s+", "", self.text(b"b"))
        return DkimResult(
            result=result,
            domain=self.domain(),
            selector=self.text(b"s"),
            algorithm=self.text(b"a").lower(),
            identity=self.text(b"i"),
            header_b=b[:HEADER_B_CHARS],
            reason=reason,
            key_bits=int(extra.get("key_bits") or 0),
            body_length=extra.get("body_length"),
        )


def verify_dkim(
    tx: Transaction, resolver: Resolver, cfg: DkimConfig, now: float | None = None
) -> tuple[DkimResult, ...]:
    """Verify every DKIM-Signature of ``tx`` (top first); () when there is none."""
    fields = tx.get_all("DKIM-Signature")
    if not fields:
        return ()
    now = time.time() if now is None else now
    cap = cfg.max_signatures
    sigs = [_parse(f) for f in fields[:cap]]
    results: dict[int, DkimResult] = {}
    n_fields, max_fields = len(tx.headers), cfg.max_header_fields
    for idx, sig in enumerate(sigs):
        if (early := _precheck(sig, now, cfg.max_signed_fields)) is not None:
            results[idx] = early
        elif tx.size > cfg.max_body_bytes:
            reason = f"message too large to verify ({tx.size} bytes)"
            results[idx] = sig.result(Result.NEUTRAL, reason)
        elif n_fields > max_fields:
            reason = f"message has {n_fields} header fields; not verified (limit {max_fields})"
            results[idx] = sig.result(Result.POLICY, reason)
    todo = [i for i in range(len(sigs)) if i not in results]
    if todo:
        results.update(_verify_all(tx, resolver, cfg, sigs, todo))
    out = tuple(results[i] for i in range(len(sigs)))
    if len(fields) > cap:  # one line for the rest: the work and the header stay bounded
        extra = len(fields) - cap
        out += (
            DkimResult(Result.POLICY, reason=f"{extra} more signatures not verified (limit {cap})"),
        )
    return out


def _parse(hf: HeaderField) -> _Signature:
    try:
        return _Signature(hf, tags=parse_tags(hf.value))
    except (dkim.util.InvalidTagValueList, ValueError) as exc:
        return _Signature(hf, error=f"bad tag list: {_short(exc)}")


def _precheck(
    sig: _Signature, now: float, max_signed: int = MAX_SIGNED_FIELDS
) -> DkimResult | None:
    """Judgements that need neither the body nor DNS; None when the signature may be verified."""
    if sig.error:
        return sig.result(Result.PERMERROR, sig.error)
    missing = [t.decode() for t in MANDATORY_TAGS if t not in sig.tags]
    if missing:
        return sig.result(Result.PERMERROR, f"missing tag {missing[0]}=")
    if sig.text(b"v") != "1":
        return sig.result(Result.PERMERROR, f"unsupported version v={sig.text(b'v')}")
    algorithm = sig.text(b"a").lower()
    if algorithm not in KNOWN_ALGORITHMS:
        return sig.result(Result.PERMERROR, f"unknown algorithm a={algorithm}")
    if algorithm == "rsa-sha1":
        return sig.result(Result.FAIL, "rsa-sha1 not accepted (RFC 8301)")
    signed = [h.strip().lower() for h in sig.text(b"h").split(":")]
    if "from" not in signed:
        return sig.result(Result.PERMERROR, "From not signed (RFC 6376 6.1.1)")
    if sig.key_name() is None:
        return sig.result(Result.PERMERROR, "bad d= or s= (not a domain name)")
    for tag in (b"b", b"bh"):
        value = sig.tags[tag]
        if not is_base64(value):
            return sig.result(Result.PERMERROR, f"{tag.decode()}= value is not valid base64")
    if parse_c(sig.tags.get(b"c")) is None:
        return sig.result(Result.PERMERROR, f"invalid c= value: {sig.text(b'c')}")
    if b"i" in sig.tags and not _identity_in_domain(sig):
        reason = f"i= domain is not a subdomain of d= (i={sig.text(b'i')} d={sig.text(b'd')})"
        return sig.result(Result.PERMERROR, reason)
    if b"q" in sig.tags and "dns/txt" not in [q.strip() for q in sig.text(b"q").split(":")]:
        return sig.result(Result.PERMERROR, f"q= value is not dns/txt ({sig.text(b'q')})")
    for tag in (b"t", b"x", b"l"):
        if tag in sig.tags and not _DIGITS.match(sig.tags[tag].strip()):
            return sig.result(Result.PERMERROR, f"{tag.decode()}= is not a number")
    if b"t" in sig.tags and int(sig.tags[b"t"]) > now + FUTURE_SLACK:
        return sig.result(Result.PERMERROR, f"t= value is in the future ({sig.text(b't')})")
    if b"x" in sig.tags:
        expires = int(sig.tags[b"x"])
        if b"t" in sig.tags and expires < int(sig.tags[b"t"]):
            return sig.result(Result.PERMERROR, "x= is before t=")
        if expires < now:
            return sig.result(Result.FAIL, "signature expired")
    if len(signed) > max_signed:
        reason = f"h= lists {len(signed)} header fields; not verified (limit {max_signed})"
        return sig.result(Result.POLICY, reason)
    return None


def _identity_in_domain(sig: _Signature) -> bool:
    """RFC 6376 3.5: the domain of i= is d= or a subdomain of it."""
    i_domain = sig.text(b"i").rpartition("@")[2]
    i_domain = a_label(i_domain) or i_domain.lower()
    d = sig.domain()
    return i_domain == d or i_domain.endswith("." + d)


def _verify_all(
    tx: Transaction,
    resolver: Resolver,
    cfg: DkimConfig,
    sigs: list[_Signature],
    todo: list[int],
) -> dict[int, DkimResult]:
    """Verify the signatures in ``todo``: header canonicalised and body hashed once."""
    min_bits = max(MIN_RSA_BITS, cfg.min_key_bits)
    try:
        headers = CanonicalHeaders(tx.headers, max_bytes=MAX_HEADER_DATA)
        digests = _body_digests(tx, [spec for i in todo if (spec := sigs[i].spec())])
    except HeaderFormatError as exc:
        return {i: sigs[i].result(Result.PERMERROR, f"message unparseable: {exc}") for i in todo}
    except Exception as exc:  # a bug must not escape; never a pass or a fail
        log.warning("dkim: unexpected error preparing the message: %r", exc, exc_info=True)
        return {i: sigs[i].result(Result.PERMERROR, f"internal error: {_short(exc)}") for i in todo}
    out: dict[int, DkimResult] = {}
    keys: dict[str, bytes | KeyProblem] = {}  # per message: a slow key costs one timeout
    for i in todo:
        sig = sigs[i]
        spec = sig.spec()
        digest = digests.get(spec) if spec else None
        if digest is None:
            out[i] = sig.result(Result.NEUTRAL, "body hash not computed")
            continue
        try:
            out[i] = _verify_one(sig, headers, digest, resolver, min_bits, keys)
        except Exception as exc:  # a bug must not escape; never a pass or a fail
            log.warning("dkim: unexpected error verifying signature %d: %r", i, exc, exc_info=True)
            out[i] = sig.result(Result.PERMERROR, f"internal error: {_short(exc)}")
    return out


def _body_digests(tx: Transaction, specs: list[BodySpec]) -> dict[BodySpec, BodyDigest]:
    """The digests for ``specs``: precomputed ones, the rest hashed from the kept body."""
    found: dict[BodySpec, BodyDigest] = {}
    for spec in specs:
        if (d := tx.digest_for(*spec)) is not None:
            found[spec] = d
    missing = {s for s in specs if s not in found}
    if missing and tx.body_kept:
        for d in hash_body(tx.body, missing):
            found[(d.canon, d.algorithm, d.length)] = d
    return found


def _verify_one(  # noqa: PLR0917  (internal helper; every argument is needed)
    sig: _Signature,
    headers: CanonicalHeaders,
    digest: BodyDigest,
    resolver: Resolver,
    min_bits: int,
    keys: dict[str, bytes | KeyProblem],
) -> DkimResult:
    facts = SignatureFacts(
        algorithm=sig.text(b"a").lower(), domain=sig.domain(), identity=sig.text(b"i")
    )
    key_name = sig.key_name() or ""  # checked by _precheck
    try:
        record = keys.get(key_name)
        if record is None:
            try:
                record = keys[key_name] = fetch_key(resolver, key_name, KEY_TIMEOUT)
            except KeyProblem as problem:
                keys[key_name] = problem
                raise
        if isinstance(record, KeyProblem):
            raise record
        key = load_key(key_name, record, facts, min_bits)
    except KeyProblem as problem:
        return sig.result(problem.result, problem.reason, key_bits=problem.key_bits)
    if digest.digest != decode_base64(sig.tags[b"bh"]):
        return sig.result(Result.FAIL, "body hash mismatch", key_bits=key.bits)
    header_canon = (parse_c(sig.tags.get(b"c")) or ("simple", "simple"))[0]
    try:
        data = headers.signed_data(header_canon, sig.tags[b"h"], sig.header)
    except HeaderBudgetError as exc:
        return sig.result(Result.POLICY, str(exc), key_bits=key.bits)
    if not verify_signature(key, digest.algorithm, decode_base64(sig.tags[b"b"]), data):
        return sig.result(Result.FAIL, "signature did not verify", key_bits=key.bits)
    if digest.length is not None:
        signed, total = digest.length, digest.canonical_length
        if signed < total:
            # Valid, but what follows the signed part is anybody's: never a pass (it would
            # let appended content ride on the signer's DMARC alignment).
            reason = f"l= signs only {signed} of {total} body bytes; the rest is unsigned"
            return sig.result(Result.POLICY, reason, key_bits=key.bits, body_length=signed)
        reason = f"l= signs the whole body ({signed} bytes)"
        return sig.result(Result.PASS, reason, key_bits=key.bits, body_length=signed)
    return sig.result(Result.PASS, "", key_bits=key.bits)


def _short(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return text.splitlines()[0][:200]
