"""ARC sets and the shape of the chain (RFC 8617 sections 4.1, 4.2 and 5.2 steps 1 to 3).

:func:`collect` groups the ARC-Authentication-Results, ARC-Message-Signature and ARC-Seal
fields by instance (``i=``) and judges the chain without DNS or cryptography: at most 50
sets, each instance exactly once with all three fields, numbered 1..N, ``cv=none`` on the
first seal and ``cv=pass`` on every later one. Anything else is a :class:`ChainError` with a
reason in fixed words (instance numbers are the only values from the message in it).

The sender writes every one of these fields: the work is bounded before anything is parsed
(at most 150 ARC fields are looked at; a message with more fails at once).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Sequence
from dataclasses import dataclass

import dkim.util

from authmilter.checks.dkim_body import BodySpec, spec_of
from authmilter.checks.taglist import parse_tag_list
from authmilter.model import HeaderField

MAX_SETS = 50  # RFC 8617 5.2 step 1
MAX_ARC_FIELDS = 3 * MAX_SETS
AAR = "ARC-Authentication-Results"
AMS = "ARC-Message-Signature"
SEAL = "ARC-Seal"
KINDS = (AAR, AMS, SEAL)  # the order the ARC-Seal signs them in, per instance (5.1.1)
ARC_CANON = b"relaxed/relaxed"  # what an AMS without c= means (as dkimpy; every sealer writes c=)
MAX_AMS = 5  # AMSs validated per message: the newest, then older ones for oldest-pass
# instance: [CFWS] "i" [CFWS] "=" [CFWS] 1*2DIGIT; comments in it are not accepted
_AAR_INSTANCE = re.compile(rb"[ \t\r\n]*i[ \t\r\n]*=[ \t\r\n]*([0-9]{1,3})[ \t\r\n]*;")
_INSTANCE = re.compile(rb"[ \t\r\n]*([0-9]{1,3})[ \t\r\n]*\Z")
_LOWER = {k.lower(): k for k in KINDS}


class ChainError(Exception):
    """The chain is malformed: its validation status is "fail" (``reason`` says why)."""

    def __init__(self, reason: str, chain: int = 0) -> None:
        super().__init__(reason)
        self.reason = reason
        self.chain = chain


@dataclass(frozen=True)
class ArcSet:
    """One instance: its three fields and the parsed tags of the seal (and of the AMS, when
    asked for: only the AMSs that are validated are parsed in full)."""

    instance: int
    aar: HeaderField
    ams: HeaderField
    seal: HeaderField
    seal_tags: dict[bytes, bytes]

    @functools.cached_property
    def ams_tags(self) -> dict[bytes, bytes]:
        """The AMS's tags; ChainError when its tag list is malformed."""
        return _tags(AMS, self.ams)

    def fields(self) -> tuple[HeaderField, HeaderField, HeaderField]:
        """AAR, AMS, AS: the order the seals sign them in."""
        return self.aar, self.ams, self.seal

    def cv(self) -> str:
        """The seal's ``cv=``, lower-case."""
        return self.seal_tags.get(b"cv", b"").strip().lower().decode("ascii", "replace")


def kind_of(hf: HeaderField) -> str | None:
    """AAR, AMS or SEAL for an ARC field, None for any other field."""
    name = hf.name.rstrip(" \t").lower()
    return _LOWER.get(name)


def arc_fields(headers: Sequence[HeaderField]) -> list[tuple[str, HeaderField]]:
    """The ARC fields (kind, field), in message order."""
    return [(kind, hf) for hf in headers if (kind := kind_of(hf)) is not None]


def collect(headers: Sequence[HeaderField]) -> tuple[ArcSet, ...]:
    """The chain's sets, instance 1 first; () when there is no ARC field; ChainError when bad."""
    found = arc_fields(headers)
    if not found:
        return ()
    if len(found) > MAX_ARC_FIELDS:
        raise ChainError(f"more than {MAX_SETS} ARC sets")
    by_instance: dict[int, dict[str, tuple[HeaderField, dict[bytes, bytes]]]] = {}
    for kind, hf in found:
        instance, tags = _parse(kind, hf)
        members = by_instance.setdefault(instance, {})
        if kind in members:
            raise ChainError(f"duplicate {kind} for i={instance}", len(by_instance))
        members[kind] = (hf, tags)
    newest = max(by_instance)
    if newest > MAX_SETS:
        raise ChainError(f"more than {MAX_SETS} ARC sets", newest)
    seal = by_instance[newest].get(SEAL)
    if seal is not None and _cv(seal[1]) == "fail":  # 5.2 step 2
        raise ChainError(f"{SEAL} i={newest} says cv=fail", newest)
    sets: list[ArcSet] = []
    for i in range(1, newest + 1):  # 5.2 step 3
        got = by_instance.get(i)
        if got is None:
            raise ChainError(f"ARC sets are not numbered 1 to {newest} (no i={i})", newest)
        for kind in KINDS:
            if kind not in got:
                raise ChainError(f"ARC set i={i} has no {kind}", newest)
        _check_cv(i, got[SEAL][1], newest)
        sets.append(
            ArcSet(
                instance=i,
                aar=got[AAR][0],
                ams=got[AMS][0],
                seal=got[SEAL][0],
                seal_tags=got[SEAL][1],
            )
        )
    return tuple(sets)


def _parse(kind: str, hf: HeaderField) -> tuple[int, dict[bytes, bytes]]:
    """(instance, tags) of one ARC field; tags are {} for an AAR and an AMS (parsed later)."""
    if kind == AAR:
        m = _AAR_INSTANCE.match(hf.value)
        if m is None:
            raise ChainError(f"{AAR} without a valid i=")
        return _instance(m.group(1), kind), {}
    if kind == AMS:
        return _instance(_i_value(kind, hf.value), kind), {}
    tags = _tags(kind, hf)
    return _instance(_i_value(kind, tags.get(b"i", b"x"), whole=True), kind), tags


def _tags(kind: str, hf: HeaderField) -> dict[bytes, bytes]:
    try:
        return parse_tag_list(hf.value)
    except (dkim.util.InvalidTagValueList, ValueError):
        raise ChainError(f"{kind} has a malformed tag list") from None


def _i_value(kind: str, value: bytes, *, whole: bool = False) -> bytes:
    """The digits of ``i=``: ``value`` is the tag's value (``whole``) or the whole tag list
    (tag values cannot hold ``;``, so the first tag named ``i`` is found without parsing)."""
    if not whole:
        for piece in value.split(b";"):
            name, eq, rest = piece.partition(b"=")
            if eq and name.strip(b" \t\r\n") == b"i":
                value = rest
                break
        else:
            raise ChainError(f"{kind} without a valid i=")
    m = _INSTANCE.match(value)
    if m is None:
        raise ChainError(f"{kind} without a valid i=")
    return m.group(1)


def _instance(digits: bytes, kind: str) -> int:
    instance = int(digits)
    if instance < 1:
        raise ChainError(f"{kind} with i=0")
    return instance


def _cv(tags: dict[bytes, bytes]) -> str:
    return tags.get(b"cv", b"").strip().lower().decode("ascii", "replace")


def _check_cv(instance: int, tags: dict[bytes, bytes], newest: int) -> None:
    """RFC 8617 5.2 step 3: cv=none on the first seal, cv=pass on every later one."""
    if b"h" in tags:
        raise ChainError(f"{SEAL} i={instance} has an h= tag", newest)
    cv = _cv(tags)
    if cv == "fail":
        raise ChainError(f"{SEAL} i={instance} says cv=fail", newest)
    wanted = "none" if instance == 1 else "pass"
    if cv != wanted:
        shown = cv if cv in ("none", "pass") else "missing or invalid"
        raise ChainError(f"{SEAL} i={instance} has cv={shown}, not cv={wanted}", newest)


def ams_spec(tags: dict[bytes, bytes]) -> BodySpec | None:
    """The body hash an AMS asks for (its c= defaults to relaxed/relaxed)."""
    if b"c" not in tags:
        tags = {**tags, b"c": ARC_CANON}
    return spec_of(tags)


def arc_body_specs(headers: Sequence[HeaderField], depth: int = MAX_AMS) -> frozenset[BodySpec]:
    """Body hashes the newest ``depth`` ARC-Message-Signatures need (for streaming).

    Only those are parsed; malformed fields are skipped here (:func:`collect` and the
    verifier judge them at end of message).
    """
    found = [hf for kind, hf in arc_fields(headers) if kind == AMS]
    if not found or len(found) > MAX_ARC_FIELDS:
        return frozenset()
    by_instance: dict[int, HeaderField] = {}
    for hf in found:
        try:
            by_instance[int(_i_value(AMS, hf.value))] = hf
        except ChainError:
            continue
    specs = set()
    for i in sorted(by_instance, reverse=True)[: max(1, min(depth, MAX_AMS))]:
        try:
            spec = ams_spec(_tags(AMS, by_instance[i]))
        except ChainError:
            continue
        if spec is not None:
            specs.add(spec)
    return frozenset(specs)
