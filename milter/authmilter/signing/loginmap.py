"""Sender login map: which SASL logins may use which sender addresses.

The text form of Postfix ``smtpd_sender_login_maps``::

    # address or @domain     logins (comma and/or whitespace separated)
    alice@example.com        alice, alice@example.com
    @example.org             admin
        bob                  # a line starting with whitespace continues the previous one

Lookup order for ``user+ext@domain`` (as Postfix): ``user+ext@domain``, ``user@domain``
(when a recipient delimiter is given), then ``@domain``. Addresses and logins compare
case-insensitively. An address with no owner in the map is *not* allowed (Postfix
``reject_sender_login_mismatch``); the null sender (``""``) always is. Mail trusted without
a SASL login may use any address the map lists, whoever owns it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from authmilter.errors import ConfigError
from authmilter.files import read_text

_SPLIT = re.compile(r"[\s,]+")


@dataclass(frozen=True, slots=True)
class LoginMap:
    """Address or ``@domain`` -> the logins that own it."""

    owners: dict[str, frozenset[str]] = field(default_factory=dict)
    recipient_delimiter: str = ""
    path: str = ""

    @classmethod
    def load(cls, path: str | Path, recipient_delimiter: str = "") -> LoginMap:
        """Parse the file (ConfigError naming the file and line on any problem)."""
        path = str(path)
        text = read_text(path, "sender login map")
        logical: list[tuple[int, str]] = []
        for number, raw in enumerate(text.splitlines(), 1):
            if not raw.strip() or raw.lstrip().startswith("#"):
                continue
            if raw[0].isspace():
                if not logical:
                    raise ConfigError(f"{path}:{number}: continuation line without an entry")
                start, previous = logical[-1]
                logical[-1] = (start, previous + " " + raw.strip())
            else:
                logical.append((number, raw.strip()))
        owners: dict[str, frozenset[str]] = {}
        for number, line in logical:
            key, *rest = line.split(None, 1)
            key = key.lower()
            logins = frozenset(x.lower() for x in _SPLIT.split(rest[0] if rest else "") if x)
            if not logins:
                raise ConfigError(f"{path}:{number}: the entry has no login names")
            if "@" not in key or key.endswith("@"):
                raise ConfigError(f"{path}:{number}: the key must be an address or @domain")
            owners[key] = owners.get(key, frozenset()) | logins
        return cls(owners, recipient_delimiter, path)

    def owners_of(self, address: str) -> frozenset[str] | None:
        """The logins that own ``address``, or None when the map does not list it."""
        address = address.strip().strip("<>").lower()
        local, _, domain = address.rpartition("@")
        keys = [address]
        if self.recipient_delimiter and local:
            for delim in self.recipient_delimiter:
                if delim in local:
                    keys.append(f"{local.split(delim, 1)[0]}@{domain}")
        keys.append(f"@{domain}")
        for key in keys:
            if key in self.owners:
                return self.owners[key]
        return None

    def allowed(self, login: str | None, address: str) -> bool:
        """Whether SASL ``login`` may send as ``address``; with no login (mail trusted
        without SASL), whether the map lists ``address`` at all."""
        if not address.strip().strip("<>"):
            return True
        owners = self.owners_of(address)
        return owners is not None and (login is None or login.strip().lower() in owners)
