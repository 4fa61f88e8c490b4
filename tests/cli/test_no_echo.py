"""Errors about a file the config names never print a line of it (issue 13 item 8).

Each kind of file (the config itself, KeyTable, SigningTable, sender login map, key file,
public suffix list, ``test --zone`` zone file) is given lines that look like /etc/shadow
entries; the loader's exception and the command's stderr name the file and the line, and
show no part of the secret.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from authmilter.cli import main
from authmilter.compose import load_engine
from authmilter.config import SigningConfig, load
from authmilter.errors import ConfigError
from authmilter.psl import PublicSuffixList
from authmilter.signing.keys import load_key_file
from authmilter.signing.loginmap import LoginMap
from authmilter.signing.signer import Signer
from authmilter.signing.tables import SigningTable, load_key_table
from authmilter.staticresolver import StaticResolver

SECRET = "SECRETHASH"
SHADOW = (
    f"root:$6${SECRET}salt$${SECRET}0123456789abcdefABCDEF:19000:0:99999:7:::\n"
    "daemon:*:19000:0:99999:7:::\n"
    f"alice:$6${SECRET}pepper$${SECRET}9876543210:19000:0:99999:7:::\n"
)
MESSAGE = "From: a@example.com\nTo: b@example.org\nSubject: x\n\nbody\n"


def signer_with_table(path: Path) -> Signer:
    """The Signer, which checks the SigningTable's key names against the KeyTable."""
    (path.parent / "kt").write_text("k example.com:s:/nonexistent\n")
    cfg = SigningConfig(key_table="kt", signing_table=str(path))
    return Signer.from_config(cfg, str(path.parent))


# kind -> the loader alone
LOADERS: dict[str, Callable[[Path], object]] = {
    "config": load,
    "key_table": lambda p: load_key_table(str(p), "/"),
    "signing_table": lambda p: SigningTable.load(str(p), "/"),
    "refile_signing_table": lambda p: SigningTable.load(f"refile:{p}", "/"),
    "signing_table_key_name": signer_with_table,
    "login_map": LoginMap.load,
    "key_file": load_key_file,
    "psl": PublicSuffixList.load,
    "zone": lambda p: StaticResolver().add_zone_file(p),
}

# (kind, file content, the line the error names; None: the file as a whole)
CASES = [
    ("config", SHADOW, 1),
    ("config", f"[{SECRET}a]\nx = 1\n[{SECRET}a]\n", 3),
    ("config", f"a = {{ {SECRET} = 1, {SECRET} = 2 }}\n", 1),
    ("config", f"x = 'ab\x01{SECRET}'\n", 1),
    ("key_table", SHADOW, 1),
    ("key_table", f"root:x $6${SECRET}:19000:0\n", 1),
    ("key_table", f"root:x $6${SECRET}\n", 1),
    ("key_table", f"root example.com:$6${SECRET}:/k\n", 1),
    ("key_table", f"{SECRET} example.com:s:/k\n{SECRET} example.com:s:/k\n", 2),
    ("signing_table", SHADOW, 1),
    ("signing_table", f"root:$6${SECRET}*:19000 k\n", 1),
    ("signing_table_key_name", f"example.com $6${SECRET}\n", 1),
    ("refile_signing_table", f"root:$6${SECRET} a b c\n", 1),
    ("login_map", SHADOW, 1),
    ("login_map", f"root:$6${SECRET}:19000 alice\n", 1),
    ("key_file", SHADOW, None),
    ("key_file", f"-----BEGIN PRIVATE KEY-----\n{SECRET}\n-----END PRIVATE KEY-----\n", None),
    ("key_file", f"-----BEGIN {SECRET}-----\nAAAA\n-----END {SECRET}-----\n", None),
    ("psl", "// a list\ncom\n" + SHADOW, 3),
    ("zone", SHADOW, 2),  # dnspython names the line where it stopped reading
    ("zone", f"x 300 IN {SECRET} 1\n", 1),
    ("zone", f"x 300 IN MX 10 {SECRET}..\n", 2),
    ("zone", f"{SECRET}a. 1 IN SOA a. b. 1 2 3 4 5\n{SECRET}b. 1 IN SOA a. b. 1 2 3 4 5\n", 2),
]


def where(path: Path, line: int | None, kind: str) -> str:
    """How the error names the place."""
    if line is None:
        return f"{path}: "
    if kind == "config":
        return f"{path}: not valid TOML: "  # and "(at line N, column M)"
    return f"{path}:{line}: "


def assert_quiet(text: str, path: Path, line: int | None, kind: str) -> None:
    assert where(path, line, kind) in text
    if kind == "config":
        assert f"(at line {line}, column " in text
    assert SECRET.lower() not in text.lower(), text


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "secret"
    path.write_text(text)
    path.chmod(0o600)
    return path


@pytest.mark.parametrize(("kind", "text", "line"), CASES)
def test_loader_error_names_the_line_not_its_content(
    tmp_path: Path, kind: str, text: str, line: int | None
) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        LOADERS[kind](path)
    assert_quiet(str(info.value), path, line, kind)


def cli_args(tmp_path: Path, kind: str, path: Path) -> list[str]:
    """The command that reads ``path`` as this kind of file."""
    if kind == "zone":
        message = tmp_path / "m.eml"
        message.write_text(MESSAGE)
        return ["test", "--zone", str(path), "--mail-from", "a@example.com", str(message)]
    sections = {
        "config": None,
        "key_table": f'[signing]\nkey_table = "{path}"\nsigning_table = "st"\n',
        "signing_table": f'[signing]\nkey_table = "kt"\nsigning_table = "{path}"\n',
        "refile_signing_table": f'[signing]\nkey_table = "kt"\nsigning_table = "refile:{path}"\n',
        "signing_table_key_name": f'[signing]\nkey_table = "kt"\nsigning_table = "{path}"\n',
        "login_map": f'[signing]\nsender_login_map = "{path}"\n',
        "key_file": f'[[signing.keys]]\ndomain = "a.example"\nselector = "s"\nkey_file = "{path}"',
        "psl": f'[dmarc]\norg_domain = "psl"\npsl_file = "{path}"\n',
    }
    text = sections[kind]
    if text is None:
        return ["check-config", "-c", str(path)]
    (tmp_path / "kt").write_text("k example.com:s:/nonexistent\n")
    (tmp_path / "st").write_text("example.com k\n")
    cfg = tmp_path / "a.toml"
    cfg.write_text(text)
    return ["check-config", "-c", str(cfg)]


@pytest.mark.parametrize(("kind", "text", "line"), CASES)
def test_cli_error_names_the_line_not_its_content(
    tmp_path: Path, kind: str, text: str, line: int | None, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(tmp_path, text)
    assert main(cli_args(tmp_path, kind, path)) == 78
    out, err = capsys.readouterr()
    assert out == ""
    assert err.startswith("authmilter: ") and err.count("\n") == 1
    if kind == "signing_table_key_name":
        assert f"{path}:1: the key name is not in the KeyTable" in err
    assert_quiet(err, path, line, kind)


def test_key_file_error_names_the_table_line_not_the_key_name(tmp_path: Path) -> None:
    key = write(tmp_path, SHADOW)
    (tmp_path / "kt").write_text(f"{SECRET} example.com:s:{key}\n")
    (tmp_path / "st").write_text(f"example.com {SECRET}\n")
    cfg = tmp_path / "a.toml"
    cfg.write_text('[signing]\nkey_table = "kt"\nsigning_table = "st"\n')
    with pytest.raises(ConfigError) as info:
        load_engine(str(cfg))
    text = str(info.value)
    assert text.startswith(f"{key}: not a PEM private key") and text.endswith(f"({tmp_path}/kt:1)")
    assert SECRET.lower() not in text.lower()
