"""opendkim-compatible KeyTable and SigningTable flat files (opendkim(8) "DATA SETS").

Errors name the file, the line and the problem, never the line's content (see
:mod:`authmilter.files`).

Both are ``file:`` data sets: one entry per line, the key up to the first whitespace and the
value after it; ``#`` starts a comment anywhere on a line; blank lines are ignored; there are
no continuation lines (as in opendkim).

KeyTable::

    keyname   domain:selector:/path/to/key     # "%" as domain = the sender's domain

SigningTable (plain ``file:``, opendkim's lookup order for ``user@host``)::

    user@host, host, user@.parent (every parent), .parent (every parent), user@*, *

plus ``@host`` (authmilter extension, Postfix-style: every user at exactly that host). With a
``refile:`` prefix the keys are wildcard patterns (``*`` only) tried in file order against the
whole address (and, for a pattern without ``@``, against the host alone, so ``*.example.com``
covers every subdomain). The value is ``keyname [signer]``: ``%`` as keyname is the From
domain; the optional signer becomes ``i=`` (``%`` replaced by the From domain).

authmilter applies *every* matching entry, like opendkim with ``MultipleSignatures yes``.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from authmilter.errors import ConfigError
from authmilter.files import read_text

_SELECTOR = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9_-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9_-]+)*$")
_DOMAIN = re.compile(r"^(?:[A-Za-z0-9_](?:[A-Za-z0-9_-]*[A-Za-z0-9])?\.)*[A-Za-z0-9-]+$")


@dataclass(frozen=True, slots=True)
class KeyEntry:
    """One KeyTable line (or one ``[[signing.keys]]`` table)."""

    name: str
    domain: str  # lower-case; "%" = the sender's domain
    selector: str
    key_path: str  # absolute
    origin: str  # "FILE:LINE" for messages


@dataclass(frozen=True, slots=True)
class SigningRule:
    """One SigningTable line (or one ``signers`` pattern of a ``[[signing.keys]]`` table)."""

    pattern: str  # lower-case
    keyname: str  # "%" = the From domain
    signer: str = ""  # i= template ("" = none)
    wildcard: bool = False  # refile: glob pattern
    origin: str = ""

    def matches(self, address: str, host: str) -> bool:
        """Whether this wildcard rule covers the (lower-case) address."""
        rx = _glob(self.pattern)
        return bool(rx.fullmatch(address) or ("@" not in self.pattern and rx.fullmatch(host)))


def _glob(pattern: str) -> re.Pattern[str]:
    return re.compile(".*".join(re.escape(part) for part in pattern.split("*")))


def resolve_path(path: str, base_dir: str) -> str:
    """A table or key path, relative ones taken from the config file's directory."""
    p = Path(path).expanduser()
    return str(p if p.is_absolute() else Path(base_dir) / p)


def table_lines(path: str, what: str) -> Iterator[tuple[str, str, str]]:
    """(origin "FILE:LINE", key, value) for every entry of a flat data set file."""
    text = read_text(path, what)
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        key, *value = line.split(None, 1)
        yield f"{path}:{number}", key, value[0].strip() if value else ""


def split_dataset_spec(spec: str) -> tuple[str, str]:
    """``refile:/p`` -> ("refile", "/p"); ``file:/p`` and ``/p`` -> ("file", "/p")."""
    kind, sep, rest = spec.partition(":")
    if sep and kind in ("file", "refile"):
        return kind, rest
    if sep and kind in ("db", "dsn", "ldap", "ldaps", "ldapi", "lua", "memcache", "csl"):
        raise ConfigError(f"{spec}: only file: and refile: data sets are supported")
    return "file", spec


def load_key_table(spec: str, base_dir: str) -> tuple[KeyEntry, ...]:
    """Parse a KeyTable file (``file:`` prefix optional)."""
    kind, path = split_dataset_spec(spec)
    if kind != "file":
        raise ConfigError(f"{spec}: a KeyTable is a plain file (refile: is for SigningTable)")
    path = resolve_path(path, base_dir)
    entries: list[KeyEntry] = []
    seen: dict[str, str] = {}
    for origin, name, value in table_lines(path, "KeyTable"):
        if not value:
            raise ConfigError(f"{origin}: expected 'KEYNAME DOMAIN:SELECTOR:KEYFILE'")
        if name in seen:
            raise ConfigError(f"{origin}: the key name is already defined at {seen[name]}")
        parts = value.split(":", 2)
        if len(parts) != 3 or not all(p.strip() for p in parts):
            raise ConfigError(f"{origin}: value must be DOMAIN:SELECTOR:KEYFILE")
        domain, selector, key_file = (p.strip() for p in parts)
        if "%" in key_file:
            raise ConfigError(
                f"{origin}: '%' in a key file path is not supported (keys are loaded at "
                "start): give each domain its own KeyTable line"
            )
        seen[name] = origin
        entries.append(
            make_key_entry(name, domain, selector, resolve_path(key_file, base_dir), origin)
        )
    return tuple(entries)


def make_key_entry(name: str, domain: str, selector: str, key_path: str, origin: str) -> KeyEntry:
    """Validate the parts of a key definition."""
    domain = domain.rstrip(".").lower()
    if domain != "%" and not _DOMAIN.match(domain):
        raise ConfigError(f"{origin}: the domain is not a domain name")
    if not _SELECTOR.match(selector):
        raise ConfigError(f"{origin}: the selector is not a valid DKIM selector")
    return KeyEntry(name, domain, selector, key_path, origin)


class SigningTable:
    """Which key names sign mail from which addresses."""

    def __init__(self, rules: tuple[SigningRule, ...], wildcard: bool) -> None:
        self.rules = rules
        self.wildcard = wildcard
        self._exact: dict[str, list[SigningRule]] = {}
        for rule in rules:
            self._exact.setdefault(rule.pattern, []).append(rule)

    @classmethod
    def load(cls, spec: str, base_dir: str) -> SigningTable:
        """Parse a SigningTable (``refile:`` prefix for wildcard patterns)."""
        kind, path = split_dataset_spec(spec)
        path = resolve_path(path, base_dir)
        rules: list[SigningRule] = []
        for origin, pattern, value in table_lines(path, "SigningTable"):
            fields = value.split()
            if not fields or len(fields) > 2:
                raise ConfigError(f"{origin}: expected 'PATTERN KEYNAME [SIGNER]'")
            if (
                kind == "file"
                and "*" in pattern
                and pattern not in ("*",)
                and not (pattern.endswith("@*"))
            ):
                raise ConfigError(
                    f"{origin}: a wildcard pattern needs a refile: SigningTable "
                    '(signing.signing_table = "refile:...")'
                )
            rules.append(
                SigningRule(
                    pattern.lower(),
                    fields[0],
                    fields[1] if len(fields) == 2 else "",
                    kind == "refile",
                    origin,
                )
            )
        return cls(tuple(rules), kind == "refile")

    def lookup(self, address: str) -> list[SigningRule]:
        """Every rule matching ``user@host``, in opendkim's order (file order for refile)."""
        address = address.lower()
        user, _, host = address.rpartition("@")
        if self.wildcard:
            return [r for r in self.rules if r.matches(address, host)]
        keys = [address, host, "@" + host]
        labels = host.split(".")
        parents = [".".join(labels[i:]) for i in range(1, len(labels))]
        keys += [f"{user}@.{p}" for p in parents]
        keys += [f".{p}" for p in parents]
        keys += [f"{user}@*", "*"]
        found: list[SigningRule] = []
        for key in keys:
            for rule in self._exact.get(key, ()):
                if rule not in found:
                    found.append(rule)
        return found
