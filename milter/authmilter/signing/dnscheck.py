"""Key rotation check (what opendkim-testkey does): is each key's public half published?"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum

from authmilter.checks.dkim_crypto import MIN_RSA_BITS
from authmilter.checks.dkim_key import (
    KeyProblem,
    SignatureFacts,
    fetch_key,
    load_key,
    parse_key_record,
)
from authmilter.dnsresolver import Resolver
from authmilter.results import Result
from authmilter.signing.signer import Signer, SigningKey


class KeyStatus(StrEnum):
    """Outcome of comparing one key with DNS."""

    OK = "ok"
    MISSING = "missing"  # no DKIM key record at selector._domainkey.domain
    MISMATCH = "mismatch"  # a record, but another key (or another k=, or revoked)
    TEMPERROR = "temperror"  # DNS timeout / SERVFAIL: try again


@dataclass(frozen=True, slots=True)
class KeyCheck:
    """One key's result."""

    domain: str
    selector: str
    name: str
    status: KeyStatus
    detail: str = ""

    @property
    def record_name(self) -> str:
        """Where the key record lives."""
        return f"{self.selector}._domainkey.{self.domain}"


def check_published_keys(
    signer_or_keys: Signer | Iterable[SigningKey], resolver: Resolver, timeout: float | None = None
) -> list[KeyCheck]:
    """Compare every key with its DNS record. Keys with ``%`` as domain are skipped."""
    keys = signer_or_keys.keys if isinstance(signer_or_keys, Signer) else tuple(signer_or_keys)
    return [check_key(k, resolver, timeout) for k in keys if k.domain != "%"]


def check_key(key: SigningKey, resolver: Resolver, timeout: float | None = None) -> KeyCheck:
    """Look one key up, judge the record exactly as the verifier does, compare ``p=``."""
    name = f"{key.selector}._domainkey.{key.domain}"

    def result(status: KeyStatus, detail: str) -> KeyCheck:
        return KeyCheck(key.domain, key.selector, key.name, status, detail)

    try:
        record = fetch_key(resolver, name, timeout)
    except KeyProblem as exc:
        status = KeyStatus.TEMPERROR if exc.result == Result.TEMPERROR else KeyStatus.MISSING
        return result(status, exc.reason)
    facts = SignatureFacts(algorithm=key.algorithm, domain=key.domain.lower(), identity="")
    try:
        load_key(name, record, facts, MIN_RSA_BITS)  # what a verifier would make of it
    except KeyProblem as exc:
        return result(KeyStatus.MISMATCH, f"a verifier refuses the record: {exc.reason}")
    published = binascii.a2b_base64(b"".join(parse_key_record(record)[b"p"].split()))
    if published != base64.b64decode(key.key.public_p()):
        return result(KeyStatus.MISMATCH, "p= does not match the private key")
    return result(KeyStatus.OK, "")
