"""DKIM verification of every signature (RFC 6376, RFC 8301, RFC 8463).

dkimpy does the canonicalisation and the crypto, one signature per ``verify(idx)`` call;
everything around it is decided here, because dkimpy reads DNS trouble, a missing key and
a bad signature all as ``False``, accepts ``rsa-sha1``, and (1.1.4) only checks ``x=``
against its own clock with 10 hours of slack.

Per signature, in message order, up to ``cfg.max_signatures`` (the rest: ``policy``):

=====================================  ======================================
outcome                                result (reason)
=====================================  ======================================
valid                                  pass (``l=`` noted in reason and body_length)
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
unexpected exception                   permerror (exception text, logged)
=====================================  ======================================
"""

from __future__ import annotations

import logging
import re
import time
from dataclasses import dataclass, field

import dkim
import dkim.util
from dkim.canonicalization import CanonicalizationPolicy

from authmilter.checks.dkim_key import KeyProblem, SignatureFacts, a_label, check_key, fetch_key
from authmilter.config import DkimConfig
from authmilter.dnsresolver import Resolver
from authmilter.model import HeaderField, Transaction
from authmilter.results import DkimResult, Result

log = logging.getLogger(__name__)

MIN_RSA_BITS = 1024  # RFC 8301 3.2: never accept less, whatever the config says
KEY_TIMEOUT = 5.0  # seconds per key lookup (the resolver may clamp it lower)
HEADER_B_CHARS = 8  # RFC 6008
MANDATORY_TAGS = (b"v", b"a", b"b", b"bh", b"d", b"h", b"s")
KNOWN_ALGORITHMS = ("rsa-sha256", "ed25519-sha256", "rsa-sha1")
_DIGITS = re.compile(rb"\d{1,16}\Z")


@dataclass(slots=True)
class _Signature:
    """One DKIM-Signature field, parsed as far as it goes."""

    tags: dict[bytes, bytes] = field(default_factory=dict)
    error: str = ""  # why the tag list itself could not be parsed

    def text(self, tag: bytes) -> str:
        return self.tags.get(tag, b"").decode("utf-8", "replace").strip()

    def domain(self) -> str:
        """d= as a lower-case A-label name (RFC 8616), or as written when it is not one."""
        return a_label(self.text(b"d")) or self.text(b"d").lower()

    def key_name(self) -> str | None:
        """Where the key lives (A-labels, RFC 8616), or None for a malformed d= / s=."""
        domain, selector = a_label(self.text(b"d")), a_label(self.text(b"s"))
        if not domain or not selector:
            return None
        name = f"{selector}._domainkey.{domain}"
        return name if len(name) <= 253 else None

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
    sigs = [_parse(f) for f in fields]
    results: dict[int, DkimResult] = {}
    for idx, sig in enumerate(sigs):
        if idx >= cap:
            results[idx] = sig.result(Result.POLICY, f"not verified: more than {cap} signatures")
        elif (early := _precheck(sig, now)) is not None:
            results[idx] = early
        elif len(tx.body) > cfg.max_body_bytes:
            reason = f"message too large to verify ({len(tx.body)} bytes)"
            results[idx] = sig.result(Result.NEUTRAL, reason)
    todo = [i for i in range(len(sigs)) if i not in results]
    if todo:
        results.update(_verify_all(tx, resolver, cfg, sigs, todo))
    return tuple(results[i] for i in range(len(sigs)))


def _parse(hf: HeaderField) -> _Signature:
    try:
        return _Signature(tags=dkim.util.parse_tag_value(hf.value))
    except (dkim.util.InvalidTagValueList, ValueError) as exc:
        return _Signature(error=f"bad tag list: {_short(exc)}")


def _precheck(sig: _Signature, now: float) -> DkimResult | None:
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
    for tag in (b"t", b"x", b"l"):
        if tag in sig.tags and not _DIGITS.match(sig.tags[tag].strip()):
            return sig.result(Result.PERMERROR, f"{tag.decode()}= is not a number")
    if b"x" in sig.tags:
        expires = int(sig.tags[b"x"])
        if b"t" in sig.tags and expires < int(sig.tags[b"t"]):
            return sig.result(Result.PERMERROR, "x= is before t=")
        if expires < now:
            return sig.result(Result.FAIL, "signature expired")
    return None


def _verify_all(
    tx: Transaction,
    resolver: Resolver,
    cfg: DkimConfig,
    sigs: list[_Signature],
    todo: list[int],
) -> dict[int, DkimResult]:
    """Run dkimpy over the signatures in ``todo``, one DKIM object for all of them."""
    min_bits = max(MIN_RSA_BITS, cfg.min_key_bits)
    try:
        verifier = dkim.DKIM(
            tx.raw_message(), minkey=min_bits, timeout=KEY_TIMEOUT, logger=_DKIMPY_LOG
        )
    except dkim.DKIMException as exc:
        return {
            i: sigs[i].result(Result.PERMERROR, f"message unparseable: {_short(exc)}") for i in todo
        }
    except Exception as exc:  # dkimpy bugs must not escape; never a pass or a fail
        log.warning("dkim: unexpected error parsing the message: %r", exc, exc_info=True)
        return {i: sigs[i].result(Result.PERMERROR, f"internal error: {_short(exc)}") for i in todo}
    return {
        i: _verify_one(verifier, i, sig=sigs[i], resolver=resolver, min_bits=min_bits, body=tx.body)
        for i in todo
    }


def _verify_one(
    verifier: dkim.DKIM,
    idx: int,
    *,
    sig: _Signature,
    resolver: Resolver,
    min_bits: int,
    body: bytes,
) -> DkimResult:
    facts = SignatureFacts(
        algorithm=sig.text(b"a").lower(), domain=sig.domain(), identity=sig.text(b"i")
    )
    key_name = sig.key_name() or ""  # checked by _precheck
    key_bits: list[int] = []

    def dnsfunc(name: bytes, timeout: float | None = None) -> bytes:
        # dkimpy's name is raw d=/s= bytes (U-labels stay UTF-8): use the A-label form.
        record = fetch_key(resolver, key_name, timeout)
        key_bits.append(check_key(key_name, record, facts, min_bits))
        return record

    try:
        valid = verifier.verify(idx=idx, dnsfunc=dnsfunc)
    except KeyProblem as problem:
        return sig.result(problem.result, problem.reason, key_bits=problem.key_bits)
    except dkim.ValidationError as exc:
        text = _short(exc)
        if text.startswith("body hash mismatch"):
            return sig.result(Result.FAIL, "body hash mismatch", key_bits=_last(key_bits))
        if text.startswith("x= value is past"):
            return sig.result(Result.FAIL, "signature expired")
        return sig.result(Result.PERMERROR, text, key_bits=_last(key_bits))
    except dkim.KeyFormatError as exc:
        if str(exc).startswith("public key too small"):
            bits = _last(key_bits)
            return sig.result(Result.POLICY, f"key too small ({bits} bits)", key_bits=bits)
        return sig.result(Result.PERMERROR, f"unusable key: {_short(exc)}")
    except dkim.DKIMException as exc:
        return sig.result(Result.PERMERROR, _short(exc), key_bits=_last(key_bits))
    except Exception as exc:  # dkimpy bugs must not escape; never a pass or a fail
        log.warning("dkim: unexpected error verifying signature %d: %r", idx, exc, exc_info=True)
        return sig.result(Result.PERMERROR, f"internal error: {_short(exc)}")
    if not key_bits:
        # dkimpy returned without asking for the key: it did not check this signature.
        return sig.result(Result.PERMERROR, "signature not found by dkimpy")
    if not valid:
        return sig.result(Result.FAIL, "signature did not verify", key_bits=key_bits[-1])
    if b"l" in sig.tags:
        return _partial_pass(sig, body, key_bits[-1])
    return sig.result(Result.PASS, "", key_bits=key_bits[-1])


def _partial_pass(sig: _Signature, body: bytes, key_bits: int) -> DkimResult:
    """A valid ``l=`` signature: pass, but say how much of the body it covers."""
    signed = int(sig.tags[b"l"])
    policy = CanonicalizationPolicy.from_c_value(sig.tags.get(b"c", b"simple/simple"))
    total = len(policy.canonicalize_body(body))
    if signed < total:
        reason = f"l= signs only {signed} of {total} body bytes"
    else:
        reason = f"l= signs the whole body ({signed} bytes)"
    return sig.result(Result.PASS, reason, key_bits=key_bits, body_length=signed)


def _last(values: list[int]) -> int:
    return values[-1] if values else 0


def _short(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return text.splitlines()[0][:200]


_DKIMPY_LOG = logging.getLogger("authmilter.dkimpy")
