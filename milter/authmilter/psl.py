"""Public Suffix List reader, for the ``dmarc.org_domain = "psl"`` mode (RFC 7489 3.2).

Reads the file format of https://publicsuffix.org/list/ (Debian: package ``publicsuffix``):
normal, wildcard (``*.ck``) and exception (``!www.ck``) rules, the ICANN and PRIVATE
sections, rules written with U-labels (compared in A-label form), and the implicit ``*``
rule. A :class:`PublicSuffixList` is immutable after :meth:`PublicSuffixList.load`, so one
instance can be shared by every thread.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from authmilter.errors import ConfigError
from authmilter.files import read_text
from authmilter.idn import a_label

_BEGIN_PRIVATE = "===BEGIN PRIVATE DOMAINS==="
_RULE = re.compile(r"[a-z0-9_-]+(?:\.[a-z0-9_-]+)*")  # a rule in A-label form


@dataclass(frozen=True, slots=True)
class PublicSuffixList:
    """The parsed list; build it with :meth:`load` or :meth:`parse`."""

    rules: frozenset[str]  # "co.uk"
    wildcards: frozenset[str]  # "*.ck" stored as "ck"
    exceptions: frozenset[str]  # "!www.ck" stored as "www.ck"
    path: str = ""
    version: str = ""  # the "// VERSION:" comment, when the file has one

    @classmethod
    def load(cls, path: str | Path, *, icann_only: bool = False) -> PublicSuffixList:
        """Read a list file; ConfigError naming the file when it is unreadable or empty."""
        text = read_text(path, "public suffix list (dmarc.psl_file)")
        psl = cls.parse(text, path=str(path), icann_only=icann_only)
        if not psl.rules and not psl.wildcards:
            raise ConfigError(f"{path}: no public suffix rules found (is it the right file?)")
        return psl

    @classmethod
    def parse(cls, text: str, *, path: str = "", icann_only: bool = False) -> PublicSuffixList:
        """Parse list text (rules one per line, ``//`` comments; rules end at white space).

        A rule that is not a domain name is a ConfigError naming the line, not quoting it.
        """
        rules: set[str] = set()
        wildcards: set[str] = set()
        exceptions: set[str] = set()
        version = ""
        for number, raw in enumerate(text.splitlines(), 1):
            line = raw.strip()
            if line.startswith("//"):
                if _BEGIN_PRIVATE in line and icann_only:
                    break
                if line[2:].strip().startswith("VERSION:") and not version:
                    version = line[2:].strip()[len("VERSION:") :].strip()
                continue
            if not line:
                continue
            rule = line.split()[0]
            exception = rule.startswith("!")
            rule = rule.lstrip("!")
            wildcard = rule.startswith("*.")
            name = _to_ascii(rule[2:] if wildcard else rule)
            if name is None:
                continue  # a rule we cannot represent can never match an A-label name
            if not _RULE.fullmatch(name):  # the content is not shown: it may be another file
                where = f"{path}:{number}" if path else f"line {number}"
                raise ConfigError(f"{where}: not a public suffix rule (is it the right file?)")
            if exception:
                exceptions.add(name)
            elif wildcard:
                wildcards.add(name)
            else:
                rules.add(name)
        return cls(frozenset(rules), frozenset(wildcards), frozenset(exceptions), path, version)

    def suffix_labels(self, domain: str) -> int:
        """How many right-hand labels of ``domain`` (A-label form) are the public suffix."""
        labels = domain.split(".")
        n = len(labels)
        for k in range(n, 0, -1):  # an exception rule always prevails
            if ".".join(labels[n - k :]) in self.exceptions:
                return k - 1
        for k in range(n, 1, -1):
            suffix = ".".join(labels[n - k :])
            if suffix in self.rules or ".".join(labels[n - k + 1 :]) in self.wildcards:
                return k
        return 1  # a one-label rule or the implicit "*" rule

    def public_suffix(self, domain: str) -> str:
        """The public suffix of ``domain`` (lower-case, A-label)."""
        name = _normalise(domain)
        labels = name.split(".")
        return ".".join(labels[len(labels) - self.suffix_labels(name) :])

    def org_domain(self, domain: str) -> str:
        """RFC 7489 3.2: public suffix plus one label; a public suffix is its own org domain."""
        name = _normalise(domain)
        labels = name.split(".")
        k = self.suffix_labels(name)
        if len(labels) <= k:
            return name
        return ".".join(labels[len(labels) - k - 1 :])


def _normalise(domain: str) -> str:
    name = domain.strip().rstrip(".").lower()
    return _to_ascii(name) or name


def _to_ascii(name: str) -> str | None:
    """A-label form of a rule or name; None if it cannot be encoded."""
    name = name.strip(".")
    return a_label(name) if name else None
