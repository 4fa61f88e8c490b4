"""Sender login map (Postfix smtpd_sender_login_maps text form)."""

from __future__ import annotations

from pathlib import Path

import pytest

from authmilter.errors import ConfigError
from authmilter.signing.loginmap import LoginMap

MAP = """\
# address            logins
alice@example.com    alice, Alice2
bob@example.com      bob bob@example.com
@example.org         admin,
  postmaster         # continuation line
shared@example.com   alice,bob
"""


@pytest.fixture
def login_map(tmp_path: Path) -> LoginMap:
    path = tmp_path / "sender_login"
    path.write_text(MAP)
    return LoginMap.load(path, recipient_delimiter="+")


@pytest.mark.parametrize(
    ("login", "address", "ok"),
    [
        ("alice", "alice@example.com", True),
        ("ALICE2", "Alice@Example.COM", True),
        ("bob", "alice@example.com", False),
        ("bob@example.com", "bob@example.com", True),
        ("alice", "shared@example.com", True),
        ("bob", "shared@example.com", True),
        ("admin", "anyone@example.org", True),
        ("postmaster", "x@example.org", True),
        ("alice", "x@example.org", False),
        ("alice", "alice+lists@example.com", True),
        ("alice", "nobody@example.com", False),  # no owner: not allowed (Postfix)
        ("alice", "alice@example.net", False),
        ("alice", "", True),  # the null sender
        ("alice", "<alice@example.com>", True),
        # no SASL login (internal hosts, daemon names, local submission): listed at all
        (None, "bob@example.com", True),
        (None, "Anyone@Example.ORG", True),
        (None, "alice+lists@example.com", True),
        (None, "nobody@example.com", False),
        (None, "ceo@victim.example", False),
        (None, "", True),
    ],
)
def test_allowed(login_map: LoginMap, login: str | None, address: str, ok: bool) -> None:
    assert login_map.allowed(login, address) is ok


def test_no_delimiter(tmp_path: Path) -> None:
    path = tmp_path / "m"
    path.write_text(MAP)
    assert not LoginMap.load(path).allowed("alice", "alice+x@example.com")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("alice@example.com\n", r"m:1: the entry has no login names"),
        ("# c\n\nalice  alice\n", r"m:3: the key must be an address or @domain"),
        ("  alice\n", r"m:1: continuation line without an entry"),
    ],
)
def test_errors(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "m"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message):
        LoginMap.load(path)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="sender login map does not exist"):
        LoginMap.load(tmp_path / "none")
