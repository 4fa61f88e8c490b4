"""What an audit reports: findings (a level, a code, what is wrong, a one-line fix) and the
checks DNS trouble left undone; the exit status they make.

Text that quotes DNS (a record, a name from a PTR or MX) goes through :func:`shown`: no
control character, no escape sequence reaches the terminal, and it is cut to a line.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from authmilter.headers import clean_text

EXIT_OK = 0  # no error (warnings and advice allowed)
EXIT_ERRORS = 1  # at least one error
EXIT_TEMPFAIL = 75  # no error found, but DNS trouble left checks undone (EX_TEMPFAIL)
MAX_SHOWN = 120  # characters of one DNS value quoted in a finding


class Level(StrEnum):
    """How much a finding matters."""

    ERROR = "error"  # mail is (or will be) refused, unauthenticated or unreported
    WARNING = "warning"  # works, but weakly or only with some receivers
    ADVICE = "advice"  # a better practice


@dataclass(frozen=True, slots=True)
class Finding:
    """One problem: ``code`` is stable (scripts match it), ``text`` and ``fix`` are prose."""

    level: Level
    code: str
    text: str
    fix: str

    def to_json(self) -> dict[str, str]:
        """The JSON object of one finding."""
        return {"level": self.level.value, "code": self.code, "text": self.text, "fix": self.fix}


@dataclass(frozen=True, slots=True)
class Unchecked:
    """A check that DNS trouble (timeout, SERVFAIL) left undone."""

    check: str  # "spf", "dkim", "dmarc", "mx", "ptr"
    detail: str

    def to_json(self) -> dict[str, str]:
        """The JSON object of one undone check."""
        return {"check": self.check, "detail": self.detail}


@dataclass
class Section:
    """The findings about one subject: a domain, or this host."""

    subject: str
    findings: list[Finding] = field(default_factory=list)
    unchecked: list[Unchecked] = field(default_factory=list)
    facts: dict[str, Any] = field(default_factory=dict)  # what was found, for --json

    def add(self, level: Level, code: str, text: str, fix: str) -> None:
        """Record one finding."""
        self.findings.append(Finding(level, code, text, fix))

    def undone(self, check: str, detail: object) -> None:
        """Record a check DNS trouble left undone."""
        self.unchecked.append(Unchecked(check, shown(str(detail), 200)))

    def count(self, level: Level) -> int:
        """How many findings of ``level``."""
        return sum(f.level == level for f in self.findings)


@dataclass
class Report:
    """The whole audit: the host, then each domain."""

    host: Section
    domains: list[Section] = field(default_factory=list)

    @property
    def sections(self) -> list[Section]:
        """The host and the domains, in order."""
        return [self.host, *self.domains]

    def total(self, level: Level) -> int:
        """Findings of ``level`` over every section."""
        return sum(s.count(level) for s in self.sections)

    @property
    def unchecked(self) -> int:
        """Checks left undone over every section."""
        return sum(len(s.unchecked) for s in self.sections)

    @property
    def exit_code(self) -> int:
        """1 with any error; else 75 when DNS trouble left a check undone; else 0."""
        if self.total(Level.ERROR):
            return EXIT_ERRORS
        return EXIT_TEMPFAIL if self.unchecked else EXIT_OK

    def to_json(self) -> dict[str, Any]:
        """The ``--json`` document."""

        def section(s: Section, key: str) -> dict[str, Any]:
            return {
                key: s.subject,
                **s.facts,
                "findings": [f.to_json() for f in s.findings],
                "unchecked": [u.to_json() for u in s.unchecked],
            }

        return {
            "host": section(self.host, "name"),
            "domains": [section(d, "domain") for d in self.domains],
            "summary": {
                "errors": self.total(Level.ERROR),
                "warnings": self.total(Level.WARNING),
                "advice": self.total(Level.ADVICE),
                "unchecked": self.unchecked,
            },
            "exit": self.exit_code,
        }

    def to_text(self) -> str:
        """The human report: each section, its findings with their fix, then a summary."""
        lines: list[str] = []
        for s in self.sections:
            title = f"host {s.subject}" if s is self.host else s.subject
            addresses = s.facts.get("addresses")
            if addresses:
                title += f" ({', '.join(addresses)})"
            lines.append(title)
            for f in s.findings:
                lines.append(f"  {f.level.value:<8} {f.code}: {f.text}")
                lines.append(f"  {'':<8} fix: {f.fix}")
            for u in s.unchecked:
                lines.append(f"  {'unchecked':<8} {u.check}: {u.detail}")
            if not s.findings and not s.unchecked:
                lines.append("  ok")
        lines.append(
            f"{self.total(Level.ERROR)} error(s), {self.total(Level.WARNING)} warning(s), "
            f"{self.total(Level.ADVICE)} advice, {self.unchecked} unchecked"
        )
        return "\n".join(lines)


def shown(text: str, limit: int = MAX_SHOWN) -> str:
    """A DNS value made safe to print in one line, cut at ``limit`` characters."""
    text = clean_text(text)
    return text if len(text) <= limit else text[: limit - 3] + "..."
