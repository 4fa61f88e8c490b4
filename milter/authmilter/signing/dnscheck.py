"""Key rotation check (what opendkim-testkey does): is each key's public half published?"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum

from authmilter.dnsresolver import Resolver
from authmilter.errors import DnsTempError
from authmilter.signing.signer import Signer, SigningKey, parse_tags


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
    """Look one key up and compare ``k=`` and ``p=``."""
    name = f"{key.selector}._domainkey.{key.domain}"

    def result(status: KeyStatus, detail: str) -> KeyCheck:
        return KeyCheck(key.domain, key.selector, key.name, status, detail)

    try:
        answer = resolver.query(name, "TXT", timeout=timeout)
    except DnsTempError as exc:
        return result(KeyStatus.TEMPERROR, str(exc))
    if not answer.exists:
        return result(KeyStatus.MISSING, f"{name} does not exist (NXDOMAIN)")
    records = [parse_tags(r.decode("utf-8", "replace")) for r in answer.txt()]
    records = [r for r in records if "p" in r and r.get("v", "DKIM1") == "DKIM1"]
    if not records:
        return result(KeyStatus.MISSING, f"no DKIM key record at {name}")
    ours = base64.b64decode(key.key.public_p())
    problems = []
    for record in records:
        k = record.get("k", "rsa").lower()
        p = "".join(record["p"].split())
        if not p:
            problems.append("the published key is revoked (empty p=)")
            continue
        if k != key.key.key_type:
            problems.append(f"DNS has k={k}, the key file is {key.key.key_type}")
            continue
        try:
            published = base64.b64decode(p, validate=True)
        except (binascii.Error, ValueError):
            problems.append("p= is not valid base64")
            continue
        if published == ours:
            return result(KeyStatus.OK, "")
        problems.append("p= does not match the private key")
    return result(KeyStatus.MISMATCH, "; ".join(dict.fromkeys(problems)))
