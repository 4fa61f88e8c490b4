"""DMARC Policy Record syntax (RFC 9989 4.7, 4.8) and the DNS Tree Walk's list of names (4.10).

Parsing follows the RFC's error rules: a record that does not start with ``v=DMARC1`` is not
a DMARC record at all (``parse_record`` returns None); unknown tags are ignored; a bad value
of an optional tag falls back to its default; an invalid ``p=`` (or an invalid
``sp=``/``np=``) leaves the record *usable* only when ``rua=`` holds a valid URI, in which
case it is read as ``p=none`` (4.10.1); a missing ``p=`` is read as ``p=none`` (4.7).
``pct`` is parsed for the RFC 7489 (psl) mode only.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass

from authmilter.results import Disposition

_POLICIES = {d.value: d for d in Disposition}
_WSP = " \t"
_URI = re.compile(r"^[A-Za-z][A-Za-z0-9+.\-]*:[^\s,!]+(![0-9]+[kmgt]?)?$")
_TAG_NAME = re.compile(r"^[A-Za-z]+$")
MAX_WALK_LABELS = 8  # RFC 9989 4.10: at most eight queries per walk


@dataclass(frozen=True, slots=True)
class DmarcRecord:
    """One parsed DMARC Policy Record (values lower-case, defaults applied)."""

    p: Disposition | None  # None: invalid (see ``usable``); a missing p= reads as none
    sp: Disposition | None = None  # None: absent (falls back to p)
    np: Disposition | None = None  # None: absent (falls back to sp, then p)
    adkim: str = "r"
    aspf: str = "r"
    t: bool = False
    psd: str = "u"
    pct: int = 100  # RFC 7489 only
    rua: tuple[str, ...] = ()
    ruf: tuple[str, ...] = ()
    fo: str = "0"
    problems: tuple[str, ...] = ()  # syntax errors found, for the reason text
    policy_error: str = ""  # set when p= is missing/invalid or sp=/np= is invalid
    tags: tuple[tuple[str, str], ...] = ()  # every tag as read (first occurrence)

    @property
    def usable(self) -> bool:
        """False when DMARC must not be applied: bad p=/sp=/np= and no valid rua= (4.10.1)."""
        return not self.policy_error or bool(self.rua)

    def effective(self) -> DmarcRecord:
        """The record as applied: as if it said p=none when its policy tags are bad (4.10.1)."""
        if not self.policy_error:
            return self
        return dataclasses.replace(self, p=Disposition.NONE, sp=None, np=None)

    def policy_for(self, *, subdomain: bool, exists: bool = True) -> Disposition:
        """p for the domain itself, sp for an existing subdomain, np for a non-existent one."""
        base = self.p or Disposition.NONE
        if not subdomain:
            return base
        if not exists and self.np is not None:
            return self.np
        return self.sp or base


def parse_record(text: str) -> DmarcRecord | None:
    """Parse one TXT string; None when it is not a DMARC record (no leading ``v=DMARC1``)."""
    parts = [p.strip(_WSP) for p in text.strip(_WSP).split(";")]
    if not parts:
        return None
    name, eq, value = parts[0].partition("=")
    if not eq or name.strip(_WSP).lower() != "v" or value.strip(_WSP) != "DMARC1":
        return None
    tags: dict[str, str] = {}
    problems: list[str] = []
    for part in parts[1:]:
        if not part:
            continue  # "; ;" or a trailing separator
        name, eq, value = part.partition("=")
        name, value = name.strip(_WSP).lower(), value.strip(_WSP)
        if not eq or not _TAG_NAME.match(name):
            problems.append(f"{name or part}=: malformed tag")
            continue
        tags.setdefault(name, value)  # the first occurrence wins
    if "p" not in tags:
        problems.append("p=: missing, read as p=none (4.7)")
    before = len(problems)
    p = _policy(tags, "p", problems) if "p" in tags else Disposition.NONE
    sp = _policy(tags, "sp", problems)
    np = _policy(tags, "np", problems)
    policy_error = "; ".join(problems[before:])
    return DmarcRecord(
        p=p,
        sp=sp,
        np=np,
        adkim=_choice(tags, "adkim", ("r", "s"), "r", problems),
        aspf=_choice(tags, "aspf", ("r", "s"), "r", problems),
        t=_choice(tags, "t", ("y", "n"), "n", problems) == "y",
        psd=_choice(tags, "psd", ("y", "n", "u"), "u", problems),
        pct=_pct(tags, problems),
        rua=_uris(tags, "rua", problems),
        ruf=_uris(tags, "ruf", problems),
        fo=tags.get("fo", "0"),
        problems=tuple(problems),
        policy_error=policy_error,
        tags=tuple(tags.items()),
    )


def _policy(tags: dict[str, str], name: str, problems: list[str]) -> Disposition | None:
    value = tags.get(name)
    if value is None:
        return None
    policy = _POLICIES.get(value.lower())
    if policy is None:
        problems.append(f"{name}=: invalid value {value!r}")
    return policy


def _choice(
    tags: dict[str, str], name: str, allowed: tuple[str, ...], default: str, problems: list[str]
) -> str:
    value = tags.get(name)
    if value is None:
        return default
    if value.lower() not in allowed:
        problems.append(f"{name}=: invalid value {value!r}, using {default!r}")
        return default
    return value.lower()


def _pct(tags: dict[str, str], problems: list[str]) -> int:
    value = tags.get("pct")
    if value is None:
        return 100
    if not value.isdigit() or not 0 <= int(value) <= 100:
        problems.append(f"pct=: invalid value {value!r}, using 100")
        return 100
    return int(value)


def _uris(tags: dict[str, str], name: str, problems: list[str]) -> tuple[str, ...]:
    value = tags.get(name)
    if value is None:
        return ()
    good = tuple(u for u in (x.strip(_WSP) for x in value.split(",")) if _URI.match(u))
    if not good:
        problems.append(f"{name}=: no valid URI")
    return good


def tree_walk_targets(domain: str) -> list[str]:
    """Names a DNS Tree Walk from ``domain`` queries, in order (RFC 9989 4.10, at most 8).

    The domain itself, then (if it has more than eight labels) its seven right-most labels,
    then one label less each time, down to the top-level domain.
    """
    labels = domain.split(".")
    rest = labels[1:] if len(labels) <= MAX_WALK_LABELS else labels[-(MAX_WALK_LABELS - 1) :]
    targets = [domain]
    while rest:
        targets.append(".".join(rest))
        rest = rest[1:]
    return targets
