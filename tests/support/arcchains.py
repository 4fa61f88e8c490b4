"""ARC chains built by dkimpy's ``arc_sign`` (the independent implementation), for tests.

Each hop adds an Authentication-Results of its own (``arc=`` carrying the previous chain's
status, as dkimpy reads ``cv=`` from it) and the three ARC fields dkimpy returns.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import dkim

from authmilter.staticresolver import StaticResolver
from tests.support.keys import DkimKey, new_rsa_key, shared_rsa_key, sign, simple_message

TIMESTAMP = 1_796_000_000  # 2026-11-30: fixed, so that built chains are reproducible


@dataclass(frozen=True)
class Hop:
    """One sealer: its domain, selector, key and what its A-R says."""

    domain: str
    selector: str = "arc"
    key: DkimKey | None = None  # None: the shared RSA-2048 test key
    results: str = "spf=pass smtp.mailfrom=example.com"

    @property
    def dkim_key(self) -> DkimKey:
        return self.key or shared_rsa_key()

    @property
    def record(self) -> tuple[tuple[str, str], list[str]]:
        return (f"{self.selector}._domainkey.{self.domain}", "TXT"), [self.dkim_key.txt]


def crlf(message: bytes) -> bytes:
    return message.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")


def seal(message: bytes, hop: Hop, cv: str | None = None, timestamp: int = TIMESTAMP) -> bytes:
    """``message`` with ``hop``'s A-R and ARC set prepended (dkimpy arc_sign).

    ``cv`` is the chain status the hop claims for what it received: by default "pass" when
    the message already has an ARC-Seal, nothing (cv=none) otherwise.
    """
    message = crlf(message)
    instance = (b"\n" + message.lower()).count(b"\narc-seal:") + 1
    if cv is None and instance > 1:
        cv = "pass"
    results = hop.results + (f"; arc={cv}" if cv else "")
    srv_id = f"hop{instance}.{hop.domain}"  # dkimpy reads only its own A-R, one per hop
    message = f"Authentication-Results: {srv_id}; {results}\r\n".encode() + message
    key = hop.dkim_key
    fields = dkim.arc_sign(
        message,
        hop.selector.encode(),
        hop.domain.encode(),
        key.private,
        srv_id.encode(),
        signature_algorithm=key.algorithm,
        timestamp=timestamp,
    )
    if not fields:
        raise AssertionError("dkimpy arc_sign returned no ARC set")
    return b"".join(fields) + message


def chain(message: bytes, hops: Sequence[Hop]) -> bytes:
    """``message`` sealed by each hop in turn."""
    for hop in hops:
        message = seal(message, hop)
    return message


def zone(
    hops: Sequence[Hop],
    extra: dict[tuple[str, str], list[str]] | None = None,
    temperror: Sequence[str] = (),
) -> StaticResolver:
    """A resolver with every hop's key (and ``extra`` records)."""
    records = dict(hop.record for hop in hops)
    records.update(extra or {})
    return StaticResolver(records, temperror=temperror)


def three_hops() -> list[Hop]:
    """Three sealers with different keys and domains."""
    return [
        Hop("lists.example.org", "s1"),
        Hop("fwd.example.net", "s2", new_rsa_key(1024)),
        Hop("mx.example.edu", "s3", new_rsa_key(2048)),
    ]


def dkimpy_verify(message: bytes, resolver: StaticResolver) -> tuple[str, str]:
    """(cv, reason) from dkimpy's arc_verify over ``resolver``."""

    def txt(name: bytes, timeout: int = 5) -> bytes | None:
        answer = resolver.query(name.decode().rstrip("."), "TXT")
        records = answer.txt()
        return records[0] if records else None

    cv, _, reason = dkim.arc_verify(crlf(message), dnsfunc=txt)
    return (cv.decode() if cv else "none"), reason


# A mailing list: it received alice@example.com's DKIM-signed message (example.com has
# p=reject), checked it (its A-R says so), tagged the Subject, added a footer (breaking the
# DKIM signature) and sealed the result; then it sends from its own address and host.
LIST = Hop(
    "lists.example.org",
    "arc",
    results=(
        "spf=pass smtp.mailfrom=alice@example.com;"
        " dkim=pass header.d=example.com header.s=rsa;"
        " dmarc=pass header.from=example.com"
    ),
)
LIST_IP = "198.51.100.20"
LIST_SENDER = "list-bounces@lists.example.org"


def list_forwarded(hop: Hop = LIST) -> bytes:
    """A list-forwarded message from example.com whose DKIM signature the list broke."""
    original = sign(simple_message(), "example.com", "rsa")
    modified = original.replace(b"Subject: test", b"Subject: [list] test").replace(
        b"Hello.", b"Hello.\r\n-- \r\nlist footer"
    )
    return seal(modified, hop)


def add_list(resolver: StaticResolver, hop: Hop = LIST) -> StaticResolver:
    """``resolver`` with the list's seal key and SPF record."""
    (name, rdtype), values = hop.record
    resolver.add(name, rdtype, values[0])
    resolver.add(hop.domain, "TXT", f"v=spf1 ip4:{LIST_IP} -all")
    return resolver


def fake_sets(count: int) -> bytes:
    """``count`` well-formed ARC sets whose signatures are junk (for the caps)."""
    fields = []
    for i in range(count, 0, -1):
        cv = "none" if i == 1 else "pass"
        fields.append(f"ARC-Seal: i={i}; cv={cv}; a=rsa-sha256; d=x.example; s=s; b=AAAA\n")
        fields.append(
            f"ARC-Message-Signature: i={i}; a=rsa-sha256; d=x.example; s=s; h=from;"
            " bh=AAAA; b=AAAA\n"
        )
        fields.append(f"ARC-Authentication-Results: i={i}; x.example; spf=pass\n")
    return "".join(fields).encode() + simple_message()
