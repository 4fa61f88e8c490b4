"""DKIM key records (RFC 6376 3.6.1, RFC 8463): fetch through our Resolver and judge them.

Every key problem (no record, bad syntax, DNS timeout, wrong type, too small) is raised as
:class:`KeyProblem` carrying its own RFC 8601 result, so that none of them can be mistaken
for a bad signature. The key itself is parsed with ``cryptography`` / PyNaCl
(:mod:`authmilter.checks.dkim_crypto`).
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass

import dkim.util

from authmilter import idn
from authmilter.checks.dkim_crypto import KeyFormatError, PublicKey, load_public_key
from authmilter.checks.taglist import parse_tag_list
from authmilter.dnsresolver import Resolver
from authmilter.errors import DnsTempError
from authmilter.results import Result

_LABEL = re.compile(r"(?!-)[a-z0-9_-]{1,63}(?<!-)\Z")
KEY_TYPES = {"rsa-sha256": "rsa", "rsa-sha1": "rsa", "ed25519-sha256": "ed25519"}


class KeyProblem(Exception):  # noqa: N818 - a verdict, not an error
    """The key cannot be used: ``result`` says how that is reported."""

    def __init__(self, result: Result, reason: str, key_bits: int = 0) -> None:
        super().__init__(reason)
        self.result = result
        self.reason = reason
        self.key_bits = key_bits


@dataclass(frozen=True, slots=True)
class SignatureFacts:
    """What the key must agree with: from the DKIM-Signature being verified."""

    algorithm: str  # a=, lower-case
    domain: str  # d=, lower-case
    identity: str  # i=, "" when absent


def fetch_key(resolver: Resolver, name: str, timeout: float | None) -> bytes:
    """The one TXT record at ``name``, strings joined; raise KeyProblem otherwise."""
    try:
        answer = resolver.query(name, "TXT", timeout)
    except DnsTempError as exc:
        raise KeyProblem(Result.TEMPERROR, f"key lookup failed: {exc}") from None
    records = answer.txt()
    if not answer.exists or not records:
        raise KeyProblem(Result.PERMERROR, f"no key ({name})")
    if len(records) > 1:
        raise KeyProblem(Result.PERMERROR, f"multiple key records ({name})")
    return records[0]


def load_key(name: str, record: bytes, sig: SignatureFacts, min_rsa_bits: int) -> PublicKey:
    """Judge one key record (found at ``name``) against the signature and parse its key.

    Judged once per (name, record, signature facts, minimum) and kept (bounded): a busy
    server sees the same few keys all day, and the judgement is a pure function of these.
    """
    return _load_key(name, record, sig, min_rsa_bits)


@functools.lru_cache(maxsize=1024)
def _load_key(name: str, record: bytes, sig: SignatureFacts, min_rsa_bits: int) -> PublicKey:
    tags = parse_key_record(record)
    version = tags.get(b"v")
    if version is not None and version != b"DKIM1":
        raise KeyProblem(Result.PERMERROR, f"bad key record version v={_text(version)}")
    if b"p" not in tags:
        raise KeyProblem(Result.PERMERROR, "key record has no p=")
    if not tags[b"p"].strip():
        raise KeyProblem(Result.PERMERROR, "key revoked (empty p=)")  # RFC 6376 6.1.2 step 6
    key_type = _text(tags.get(b"k", b"rsa")).lower()
    if key_type not in ("rsa", "ed25519"):
        raise KeyProblem(Result.PERMERROR, f"unknown key type k={key_type}")
    if KEY_TYPES.get(sig.algorithm) != key_type:
        raise KeyProblem(
            Result.PERMERROR, f"key type k={key_type} does not match a={sig.algorithm}"
        )
    hashes = _list(tags.get(b"h"))
    wanted = sig.algorithm.rpartition("-")[2]
    if hashes and wanted not in hashes:
        raise KeyProblem(Result.PERMERROR, f"key does not allow {wanted} (h={':'.join(hashes)})")
    services = _list(tags.get(b"s"))
    if services and not {"*", "email"} & set(services):
        raise KeyProblem(Result.PERMERROR, f"key is not for email (s={':'.join(services)})")
    if "s" in _list(tags.get(b"t")) and sig.identity:
        i_domain = sig.identity.rpartition("@")[2]
        i_domain = a_label(i_domain) or i_domain.lower()
        if i_domain != sig.domain:
            raise KeyProblem(Result.PERMERROR, "key t=s forbids an i= subdomain of d=")
    try:
        key = load_public_key(key_type, tags[b"p"])
    except KeyFormatError as exc:
        raise KeyProblem(Result.PERMERROR, f"unusable key: {_text(exc)} ({name})") from None
    if key.kind == "rsa" and key.bits < min_rsa_bits:
        raise KeyProblem(Result.POLICY, f"key too small ({key.bits} bits)", key.bits)
    return key


def parse_key_record(record: bytes) -> dict[bytes, bytes]:
    """The tags of a key record (RFC 6376 3.2, dkimpy's parser); KeyProblem when malformed."""
    try:
        return parse_tag_list(record)
    except dkim.util.InvalidTagValueList as exc:
        raise KeyProblem(Result.PERMERROR, f"bad key record syntax: {_text(exc)}") from None


def a_label(name: str) -> str | None:
    """``name`` in lower-case A-label form, or None when it is not a host-like domain name."""
    ascii_name = idn.a_label(name)
    if ascii_name is None:
        return None
    labels = ascii_name.split(".")
    if len(ascii_name) > 253 or not all(_LABEL.match(label) for label in labels):
        return None
    return ascii_name


def _list(value: bytes | None) -> list[str]:
    """A colon-separated tag value as lower-case words ([] when absent)."""
    if value is None:
        return []
    return [w.strip().lower() for w in _text(value).split(":") if w.strip()]


def _text(value: object) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value)[:200]
