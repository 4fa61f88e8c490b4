"""authmilter genkey: opendkim-genkey's layout, files, modes and a round trip through DNS."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import dkim
import pytest

from authmilter import genkey
from authmilter.config import KeySpec, SigningConfig
from authmilter.model import parse_message
from authmilter.signing.dnscheck import KeyStatus, check_published_keys
from authmilter.signing.keys import load_key_file
from authmilter.signing.signer import Signer
from authmilter.staticresolver import StaticResolver

DATA = Path(__file__).resolve().parent.parent / "data" / "signing"


def expected(template: str, p: str) -> str:
    text = (DATA / template).read_text()
    chunks = [p[i : i + 250] for i in range(0, len(p), 250)]
    for i, chunk in enumerate(chunks):
        text = text.replace(f"@KEY{i}@", chunk)
    return text


def run(tmp_path: Path, *args: str) -> int:
    if "--group" not in args:
        args = (*args, "--group", "")  # no chgrp to a daemon group that may exist here
    return genkey.main(["-D", str(tmp_path), *args])


def test_rsa_layout(tmp_path: Path) -> None:
    assert run(tmp_path, "-d", "example.com", "-s", "sel1") == 0
    p = load_key_file(tmp_path / "sel1.private").public_p()
    assert len(p) == 392
    assert (tmp_path / "sel1.txt").read_text() == expected("genkey-rsa2048.txt.template", p)
    assert (tmp_path / "sel1.private").read_bytes().startswith(b"-----BEGIN PRIVATE KEY-----\n")


def test_rsa_all_flags_layout(tmp_path: Path) -> None:
    args = [
        "-b",
        "2048",
        "-d",
        "example.com",
        "-s",
        "s2",
        "-a",
        "-t",
        "-r",
        "-S",
        "-n",
        "test note",
        "-h",
        "sha256",
    ]
    assert run(tmp_path, *args) == 0
    p = load_key_file(tmp_path / "s2.private").public_p()
    assert (tmp_path / "s2.txt").read_text() == expected("genkey-rsa2048-allflags.txt.template", p)


def test_ed25519_layout(tmp_path: Path) -> None:
    assert run(tmp_path, "--type", "ed25519", "-d", "example.com", "-s", "ed1") == 0
    key = load_key_file(tmp_path / "ed1.private")
    assert key.key_type == "ed25519"
    assert (tmp_path / "ed1.txt").read_text() == expected(
        "genkey-ed25519.txt.template", key.public_p()
    )


@pytest.mark.skipif(not Path("/usr/sbin/opendkim-genkey").exists(), reason="no opendkim-genkey")
@pytest.mark.parametrize(
    "flags", [[], ["-a", "-t", "-r", "-S", "-n", "a note"], ["-t"], ["-d", ""]]
)
def test_same_layout_as_debian_opendkim_genkey(tmp_path: Path, flags: list[str]) -> None:
    ours, theirs = tmp_path / "ours", tmp_path / "theirs"
    ours.mkdir()
    theirs.mkdir()
    base = ["-d", "example.com", "-s", "sel", *flags]
    assert genkey.main(["-D", str(ours), *base]) == 0
    subprocess.run(["/usr/sbin/opendkim-genkey", "-D", str(theirs), *base], check=True)
    mask = re.compile(r'"p=[A-Za-z0-9+/=]+"\n\t  "[A-Za-z0-9+/=]+"')
    a = mask.sub("KEY", (ours / "sel.txt").read_text())
    b = mask.sub("KEY", (theirs / "sel.txt").read_text())
    assert a == b
    assert "KEY" in a


def test_modes_and_no_overwrite(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(tmp_path, "-s", "x", "--group", "") == 0
    assert os.stat(tmp_path / "x.private").st_mode & 0o777 == 0o600
    assert os.stat(tmp_path / "x.txt").st_mode & 0o777 == 0o600
    before = (tmp_path / "x.private").read_bytes()
    assert genkey.main(["-D", str(tmp_path), "-s", "x"]) == 1
    assert "exists (use --force" in capsys.readouterr().err
    assert (tmp_path / "x.private").read_bytes() == before
    assert run(tmp_path, "-s", "x", "--force", "--group", "") == 0
    assert (tmp_path / "x.private").read_bytes() != before


def test_group_mode(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root to chgrp")
    assert run(tmp_path, "-s", "g", "--group", "nogroup") == 0
    st = os.stat(tmp_path / "g.private")
    assert st.st_mode & 0o777 == 0o640 and st.st_uid == 0
    import grp

    assert st.st_gid == grp.getgrnam("nogroup").gr_gid


def test_usage(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(tmp_path, "-b", "512") == 2
    assert run(tmp_path, "--bogus") == 2
    assert run(tmp_path, "--type", "dsa") == 2
    assert genkey.main(["--help"]) == 0
    out = capsys.readouterr().out
    assert "authmilter genkey" in out and "--hash-algorithms" in out
    assert genkey.main(["--version"]) == 0
    assert genkey.main(["-D", str(tmp_path / "nope")]) == 1


@pytest.mark.parametrize("key_type", ["rsa", "ed25519"])
def test_zone_file_round_trip(tmp_path: Path, key_type: str) -> None:
    """SEL.txt in a zone verifies a message signed with SEL.private, via a dnsfunc."""
    assert run(tmp_path, "--type", key_type, "-d", "example.com", "-s", "sel", "--group", "") == 0
    zone = tmp_path / "example.com.zone"
    zone.write_text("$ORIGIN example.com.\n$TTL 300\n" + (tmp_path / "sel.txt").read_text())
    resolver = StaticResolver()
    resolver.add_zone_file(zone)
    cfg = SigningConfig(keys=(KeySpec("example.com", "sel", str(tmp_path / "sel.private")),))
    signer = Signer.from_config(cfg, "/")
    tx = parse_message(b"From: a@example.com\r\nSubject: hi\r\n\r\nbody\r\n")
    (edit,) = signer.sign(tx)
    message = b"DKIM-Signature: " + edit.value.replace("\n", "\r\n").encode() + b"\r\n"
    message += tx.raw_message()

    def dnsfunc(name: bytes, timeout: int = 5) -> bytes | None:
        txt = resolver.query(name.decode(), "TXT").txt()
        return txt[0] if txt else None

    assert dkim.verify(message, dnsfunc=dnsfunc)
    assert dkim.verify(message.replace(b"body", b"bodY"), dnsfunc=dnsfunc) is False
    assert [c.status for c in check_published_keys(signer, resolver)] == [KeyStatus.OK]
    shutil.rmtree(tmp_path / "unused", ignore_errors=True)
