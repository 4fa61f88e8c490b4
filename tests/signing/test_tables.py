"""opendkim KeyTable / SigningTable parsing and lookup order."""

from __future__ import annotations

from pathlib import Path

import pytest

from authmilter.errors import ConfigError
from authmilter.signing.tables import SigningTable, load_key_table


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_key_table(tmp_path: Path) -> None:
    write(
        tmp_path,
        "KeyTable",
        "# comment\n\nrsa   example.com:sel1:/etc/k/rsa.private  # trailing\n"
        "ed\tExample.COM.:ed1:keys/ed.private\nany  %:sel2:/k/any\n",
    )
    entries = load_key_table("KeyTable", str(tmp_path))
    assert [(e.name, e.domain, e.selector) for e in entries] == [
        ("rsa", "example.com", "sel1"),
        ("ed", "example.com", "ed1"),
        ("any", "%", "sel2"),
    ]
    assert entries[0].key_path == "/etc/k/rsa.private"
    assert entries[1].key_path == str(tmp_path / "keys/ed.private")  # relative to config dir
    assert entries[1].origin.endswith("KeyTable:4")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("a example.com:sel\n", r"KeyTable:1: value must be DOMAIN:SELECTOR:KEYFILE"),
        ("a\n", r"KeyTable:1: expected 'KEYNAME DOMAIN:SELECTOR:KEYFILE'"),
        ("\n\na ex ample.com:s:/k\n", r"KeyTable:3: "),
        ("a exa$mple.com:s:/k\n", r"KeyTable:1: the domain is not a domain name"),
        ("a example.com:s_!:/k\n", r"KeyTable:1: the selector is not a valid DKIM selector"),
        (
            "a example.com:s:/k\na example.org:s:/k\n",
            r"KeyTable:2: the key name is already defined at .*KeyTable:1$",
        ),
        ("a %:s:/k/%.key\n", r"KeyTable:1: '%' in a key file path is not supported"),
    ],
)
def test_key_table_errors(tmp_path: Path, text: str, message: str) -> None:
    write(tmp_path, "KeyTable", text)
    with pytest.raises(ConfigError, match=message):
        load_key_table(str(tmp_path / "KeyTable"), "/")


def test_missing_table(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"KeyTable does not exist"):
        load_key_table(str(tmp_path / "nope"), "/")
    with pytest.raises(ConfigError, match="only file: and refile:"):
        load_key_table("dsn:mysql://x", "/")


def test_signing_table_file_lookup_order(tmp_path: Path) -> None:
    write(
        tmp_path,
        "st",
        "*  star\nbob@*  userstar\n.com  dotcom\n.example.com dotex\n"
        "bob@.example.com  bobdot\nsub.example.com  host\n@sub.example.com athost\n"
        "bob@sub.example.com exact\n",
    )
    table = SigningTable.load(str(tmp_path / "st"), "/")
    names = [r.keyname for r in table.lookup("Bob@Sub.Example.com")]
    assert names == ["exact", "host", "athost", "bobdot", "dotex", "dotcom", "userstar", "star"]
    assert [r.keyname for r in table.lookup("alice@other.org")] == ["star"]


def test_signing_table_file_exact_only(tmp_path: Path) -> None:
    write(tmp_path, "st", "example.com k1\nalice@example.org k2 alice@example.org\n")
    table = SigningTable.load(str(tmp_path / "st"), "/")
    assert [r.keyname for r in table.lookup("x@example.com")] == ["k1"]
    assert table.lookup("x@sub.example.com") == []
    assert table.lookup("bob@example.org") == []
    (rule,) = table.lookup("alice@example.org")
    assert rule.signer == "alice@example.org"


def test_signing_table_wildcard_needs_refile(tmp_path: Path) -> None:
    write(tmp_path, "st", "\n*@example.com k1\n")
    with pytest.raises(ConfigError, match=r"st:2: a wildcard pattern needs a refile:"):
        SigningTable.load(str(tmp_path / "st"), "/")


def test_refile(tmp_path: Path) -> None:
    write(
        tmp_path,
        "st",
        "*@example.com  rsa\n*@example.com  ed\n*.example.org  sub\n"
        "example.net  bare\nboss@*  boss\n",
    )
    table = SigningTable.load("refile:" + str(tmp_path / "st"), "/")
    assert [r.keyname for r in table.lookup("a@example.com")] == ["rsa", "ed"]
    assert table.lookup("a@sub.example.com") == []
    assert [r.keyname for r in table.lookup("a@x.example.org")] == ["sub"]
    assert table.lookup("a@example.org") == []
    assert [r.keyname for r in table.lookup("a@example.net")] == ["bare"]
    assert [r.keyname for r in table.lookup("boss@example.com")] == ["rsa", "ed", "boss"]
    # regex metacharacters are literal
    assert table.lookup("a@exampleXcom") == []


def test_signing_table_errors(tmp_path: Path) -> None:
    write(tmp_path, "st", "# x\nexample.com\n")
    with pytest.raises(ConfigError, match=r"st:2: expected 'PATTERN KEYNAME \[SIGNER\]'"):
        SigningTable.load(str(tmp_path / "st"), "/")
    write(tmp_path, "st", "example.com a b c\n")
    with pytest.raises(ConfigError, match=r"st:1: "):
        SigningTable.load(str(tmp_path / "st"), "/")
