"""Key files from ``genkey`` and the offline commands (issue 13 item 11).

As root where the ``authmilter`` group exists, ``genkey`` writes ``0640 root:authmilter``.
``test`` never runs as the daemon: without ``milter.user`` it warns about such a key and
signs anyway; with ``milter.user`` it judges the key for that user, as the daemon would.
``check-config`` says whom it checked the keys for.
"""

from __future__ import annotations

import grp
import json
import os
import pwd
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from authmilter.cli import main

REPO = Path(__file__).resolve().parents[2]
ZONE = ["--zone", str(REPO / "conf" / "examples" / "example.net.zone")]
GROUP = "authmilter"
KEYS = '[[signing.keys]]\ndomain = "example.com"\nselector = "sel"\nkey_file = "sel.private"\n'
CURRENT_ROOT = "the current user root (milter.user is not set)"
PROBLEM = "mode 0640 lets group 'authmilter' read it, which is not the daemon's group"


@pytest.fixture
def daemon_group() -> Iterator[str]:
    """The ``authmilter`` group, created for the test when it does not exist (and removed)."""
    if os.geteuid() != 0:
        pytest.skip("needs root (genkey's chgrp, groupadd)")
    try:
        grp.getgrnam(GROUP)
        created = False
    except KeyError:
        subprocess.run(["groupadd", "--system", GROUP], check=True)
        created = True
    try:
        yield GROUP
    finally:
        if created:
            subprocess.run(["groupdel", GROUP], check=True)


def genkey(directory: Path, *args: str) -> Path:
    assert main(["genkey", "-D", str(directory), "-d", "example.com", "-s", "sel", *args]) == 0
    return directory / "sel.private"


def config(directory: Path, milter: str = "") -> Path:
    path = directory / "authmilter.toml"
    path.write_text(f"[milter]\n{milter}\n{KEYS}")
    return path


def run_test(directory: Path, cfg: Path) -> int:
    message = directory / "m.eml"
    message.write_text("From: alice@example.com\nTo: bob@example.org\nSubject: hi\n\nbody\n")
    published = directory / "example.com.zone"  # genkey's record, pasted into a zone file
    published.write_text("$ORIGIN example.com.\n$TTL 300\n" + (directory / "sel.txt").read_text())
    return main(
        [
            "test",
            "--json",
            "-c",
            str(cfg),
            *ZONE,
            "--zone",
            str(published),
            "--auth-user",
            "alice",
            "--mail-from",
            "alice@example.com",
            str(message),
        ]
    )


def test_genkey_key_signs_in_test_with_a_warning(
    tmp_path: Path, daemon_group: str, capsys: pytest.CaptureFixture[str]
) -> None:
    key = genkey(tmp_path)
    st = key.stat()
    assert (st.st_mode & 0o777, st.st_uid, st.st_gid) == (0o640, 0, grp.getgrnam(GROUP).gr_gid)
    assert run_test(tmp_path, config(tmp_path)) == 0
    out, err = capsys.readouterr()
    added = [h["name"] for h in json.loads(out)["headers"]["add"]]
    assert "DKIM-Signature" in added
    assert err.count("\n") == 1
    assert err.startswith(f"authmilter test: warning: {key}: unsafe key file for {CURRENT_ROOT}: ")
    assert PROBLEM in err and "signing with it anyway" in err


def test_check_config_names_the_assumed_user(
    tmp_path: Path, daemon_group: str, capsys: pytest.CaptureFixture[str]
) -> None:
    key = genkey(tmp_path)
    cfg = config(tmp_path)
    # without milter.user the daemon's user is systemd's business: a warning, not a refusal
    assert main(["check-config", "-c", str(cfg)]) == 0
    out, err = capsys.readouterr()
    assert f"check-config: warning: {key}: unsafe key file for {CURRENT_ROOT}: {PROBLEM}" in err
    assert f"  keys checked for {CURRENT_ROOT}\n" in out
    # a 0600 key is safe for root: the OK report says whom it was checked for
    genkey(tmp_path, "--group", "", "--force")
    assert main(["check-config", "-c", str(cfg)]) == 0
    assert f"  keys checked for {CURRENT_ROOT}\n" in capsys.readouterr().out


def test_configured_user_decides(
    tmp_path: Path, daemon_group: str, capsys: pytest.CaptureFixture[str]
) -> None:
    key = genkey(tmp_path)
    # nobody, in its own group: the key is unsafe for it, in test as in check-config
    cfg = config(tmp_path, 'user = "nobody"')
    assert run_test(tmp_path, cfg) == 78
    assert main(["check-config", "-c", str(cfg)]) == 78
    out, err = capsys.readouterr()
    refusal = f"{key}: unsafe key file for user nobody (milter.user): {PROBLEM}"
    assert out == "" and err.count(refusal) == 2 and "warning" not in err
    # the daemon's user, alone in the authmilter group: 0640 root:authmilter is safe
    try:
        pwd.getpwnam(GROUP)  # the package's user: its primary group is authmilter
        user, milter = GROUP, f'user = "{GROUP}"'
    except KeyError:
        user, milter = "nobody", f'user = "nobody"\ngroup = "{GROUP}"'
    cfg = config(tmp_path, milter)
    assert main(["check-config", "-c", str(cfg)]) == 0
    assert f"  keys checked for user {user} (milter.user)\n" in capsys.readouterr().out
    assert run_test(tmp_path, cfg) == 0
    assert capsys.readouterr().err == ""
