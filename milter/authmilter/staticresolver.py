"""Answers from records held in memory or read from RFC 1035 zone files (``authmilter test
--zone``, the tests); can be told to fail names on purpose."""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping
from pathlib import Path

import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.query
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.resolver
import dns.rrset
import dns.tokenizer
import dns.zone

from authmilter.dnsresolver import SUPPORTED_TYPES, Answer, RecordValue, normalise_name, rdata_value
from authmilter.errors import ConfigError, DnsTempError
from authmilter.files import read_text


class StaticResolver:
    """Answers from records held in memory; read-only after construction, so thread-safe.

    Names never seen are NXDOMAIN, and so are names outside every loaded zone. A name that
    only has records below it (``_domainkey.example.com``) exists with no records (NODATA).
    ``temperror`` names (and everything below them when given as ``*.name``) raise
    DnsTempError, to simulate a timeout.
    """

    def __init__(
        self,
        records: Mapping[tuple[str, str], Iterable[RecordValue]] | None = None,
        temperror: Iterable[str] = (),
    ) -> None:
        self._records: dict[tuple[str, str], tuple[RecordValue, ...]] = {}
        self._names: set[str] = set()
        self._temperror = {normalise_name(n) for n in temperror}
        self.queries: list[tuple[str, str]] = []  # for tests: what was asked, in order
        self._lock = threading.Lock()
        for (name, rdtype), values in (records or {}).items():
            self.add(name, rdtype, *values)

    def add(self, name: str, rdtype: str, *values: RecordValue) -> None:
        """Add records (TXT values may be given as str or bytes for convenience)."""
        key = (normalise_name(name), rdtype.upper())
        fixed = tuple(_coerce(key[1], v) for v in values)
        self._records[key] = self._records.get(key, ()) + fixed
        labels = key[0].split(".")
        for i in range(len(labels)):
            self._names.add(".".join(labels[i:]))

    def add_zone_file(self, path: str | Path) -> None:
        """Load an RFC 1035 master file ($ORIGIN, $TTL, relative names, multi-string TXT).

        A file with an SOA is read as that zone (names outside it are ignored, as BIND
        does); a file without one may hold names of any zone. Call once per file. Errors
        name the file and line, never the line's content.
        """
        path = Path(path)
        text = read_text(path, "zone file")
        try:
            zone = dns.zone.from_text(
                text,
                origin=_zone_origin(text, str(path)),
                relativize=False,
                check_origin=False,
                filename=str(path),
            )
        except _ZoneFileError as exc:
            raise ConfigError(f"{path}:{exc.line}: bad zone file: {exc.problem}") from None
        except (dns.exception.DNSException, ValueError) as exc:  # dnspython: "FILE:LINE: problem"
            number, _, problem = str(exc).removeprefix(f"{path}:").partition(": ")
            where = f"{path}:{number}" if number.isdigit() else str(path)
            raise ConfigError(f"{where}: bad zone file: {_quoting_nothing(problem)}") from None
        for owner, node in zone.nodes.items():
            for rdataset in node.rdatasets:
                if rdataset.rdclass != dns.rdataclass.IN:
                    continue
                rdtype = dns.rdatatype.to_text(rdataset.rdtype)
                if rdtype not in SUPPORTED_TYPES:
                    continue
                self.add(owner.to_text(), rdtype, *(rdata_value(rdtype, r) for r in rdataset))

    def query(self, name: str, rdtype: str, timeout: float | None = None) -> Answer:
        """Answer from memory, following CNAMEs (at most 8)."""
        name, rdtype = normalise_name(name), rdtype.upper()
        with self._lock:
            self.queries.append((name, rdtype))
        for _ in range(8):
            self._check_temperror(name, rdtype)
            values = self._records.get((name, rdtype))
            if values is not None:
                return Answer(name, rdtype, values)
            cname = self._records.get((name, "CNAME"))
            if cname and rdtype != "CNAME":
                name = str(cname[0])
                continue
            return Answer(name, rdtype, (), exists=name in self._names)
        raise DnsTempError(f"{name}/{rdtype}: CNAME chain too long")

    def _check_temperror(self, name: str, rdtype: str) -> None:
        if name in self._temperror:
            raise DnsTempError(f"{name}/{rdtype}: timed out (simulated)")
        labels = name.split(".")
        for i in range(1, len(labels)):
            if "*." + ".".join(labels[i:]) in self._temperror:
                raise DnsTempError(f"{name}/{rdtype}: timed out (simulated)")


class _ZoneFileError(Exception):
    """A problem found at a line of a zone file, in words that quote none of it."""

    def __init__(self, line: int, problem: str) -> None:
        super().__init__(line, problem)
        self.line = line
        self.problem = problem


def _zone_origin(text: str, filename: str) -> dns.name.Name:
    """The owner of the file's SOA record (its zone's origin), or the root when it has none."""
    tok = dns.tokenizer.Tokenizer(text, filename)
    origin: dns.name.Name | None = None  # the $ORIGIN in force
    owner: dns.name.Name | None = None  # the last owner name (a line may leave it out)
    soa_lines: dict[dns.name.Name, int] = {}  # each SOA owner and its first line
    line = 1
    try:
        while not (first := tok.get(want_leading=True)).is_eof():
            if first.is_eol():
                continue
            line = tok.line_number
            words = []
            while not (token := tok.get()).is_eol_or_eof():
                words.append(token.value)
            if first.value.upper() == "$ORIGIN" and words:
                origin = dns.name.from_text(words[0], origin)
                continue
            if first.value.startswith("$"):
                continue
            if not first.is_whitespace():
                owner = origin if first.value == "@" else dns.name.from_text(first.value, origin)
            rdtype = next((w for w in words if not _is_ttl_or_class(w)), "")
            if rdtype.upper() == "SOA":
                if owner is None or not owner.is_absolute():
                    raise _ZoneFileError(line, "the SOA owner is relative and no $ORIGIN is set")
                soa_lines.setdefault(owner, line)
    except dns.exception.DNSException as exc:
        raise _ZoneFileError(line, _quoting_nothing(str(exc))) from None
    if len(soa_lines) > 1:
        first_line, other = sorted(soa_lines.values())[:2]
        raise _ZoneFileError(
            other, f"an SOA of another zone than line {first_line}'s (give one zone per file)"
        )
    return next(iter(soa_lines), dns.name.root)


# dnspython's zone-file messages that quote nothing from the file (any other is replaced)
_ZONE_MESSAGES = frozenset(
    {
        "A DNS label is > 63 octets long.",
        "A DNS label is empty.",
        "A DNS name is > 255 octets long.",
        "DNS TTL value is not well-formed.",
        "Missing default TTL value",
        "RR class is not zone's class",
        "Text input ended unexpectedly.",
        "Text input is malformed.",
        "bad $TTL",
        "expecting a string",
        "expecting an identifier",
        "expecting an integer",
        "newline in quoted string",
        "string too long",
        "unbalanced parentheses",
    }
)


def _quoting_nothing(problem: str) -> str:
    """dnspython's problem when it quotes nothing from the file, else a summary of it."""
    if problem.startswith("unknown rdatatype"):
        return "unknown record type"
    return problem if problem in _ZONE_MESSAGES else "malformed record"


def _is_ttl_or_class(word: str) -> bool:
    upper = word.upper()
    return word[:1].isdigit() or upper in ("IN", "CH", "HS", "CS") or upper.startswith("CLASS")


def _coerce(rdtype: str, value: RecordValue | str | bytes) -> RecordValue:
    if rdtype in ("TXT", "SPF"):
        if isinstance(value, str):
            value = value.encode()
        if isinstance(value, bytes):
            # split like a zone file would: 255-byte character-strings
            return tuple(value[i : i + 255] for i in range(0, len(value), 255)) or (b"",)
        return value
    if rdtype in ("A", "AAAA", "PTR", "CNAME", "NS") and isinstance(value, str):
        return value if rdtype in ("A", "AAAA") else normalise_name(value)
    if rdtype == "MX" and isinstance(value, tuple) and len(value) == 2:
        pref, host = value
        return (int(pref), normalise_name(str(host)))  # type: ignore[call-overload]
    raise TypeError(f"bad {rdtype} value {value!r}")
