"""authmilter genkey never writes through a symlink, and --force replaces files by rename."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from authmilter import genkey


def run(directory: Path, *args: str) -> int:
    return genkey.main(["-D", str(directory), "-s", "sel", "--group", "", *args])


@pytest.fixture
def victim(tmp_path: Path) -> Path:
    path = tmp_path / "elsewhere" / "victim"
    path.parent.mkdir()
    path.write_bytes(b"precious\n")
    path.chmod(0o644)
    return path


def keydir(tmp_path: Path) -> Path:
    path = tmp_path / "keys"
    path.mkdir()
    return path


@pytest.mark.parametrize("name", ["sel.private", "sel.txt"])
@pytest.mark.parametrize("force", [True, False])
def test_symlink_to_a_file_is_refused(
    tmp_path: Path, victim: Path, capsys: pytest.CaptureFixture[str], name: str, force: bool
) -> None:
    keys = keydir(tmp_path)
    link = keys / name
    link.symlink_to(victim)
    before = victim.stat()
    assert run(keys, *(["--force"] if force else [])) == 1
    assert f"{link} is a symbolic link" in capsys.readouterr().err
    assert victim.read_bytes() == b"precious\n"
    after = victim.stat()
    assert (after.st_mode, after.st_uid, after.st_gid) == (
        before.st_mode,
        before.st_uid,
        before.st_gid,
    )
    assert os.readlink(link) == str(victim)  # the link itself is left alone too
    assert sorted(p.name for p in keys.iterdir()) == [name]  # nothing else written


@pytest.mark.parametrize("force", [True, False])
def test_dangling_symlink_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], force: bool
) -> None:
    keys = keydir(tmp_path)
    target = tmp_path / "created-by-root"
    (keys / "sel.private").symlink_to(target)
    assert run(keys, *(["--force"] if force else [])) == 1
    assert f"{keys / 'sel.private'} is a symbolic link" in capsys.readouterr().err
    assert not target.exists()


def test_symlink_planted_after_the_check_is_not_followed(
    tmp_path: Path, victim: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The race: a link appears between the up-front check and the write."""
    keys = keydir(tmp_path)
    real = genkey._write_files

    def plant_then_write(*args: object, **kw: object) -> int:
        (keys / "sel.private").symlink_to(victim)
        return real(*args, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(genkey, "_write_files", plant_then_write)
    assert run(keys) == 1
    assert victim.read_bytes() == b"precious\n"
    assert victim.stat().st_mode & 0o777 == 0o644


def test_force_replaces_a_regular_file_by_rename(tmp_path: Path) -> None:
    keys = keydir(tmp_path)
    assert run(keys) == 0
    old = {p.name: p.stat() for p in keys.iterdir()}
    old_key = (keys / "sel.private").read_bytes()
    assert run(keys, "--force") == 0
    for name, before in old.items():
        after = (keys / name).stat()
        assert after.st_ino != before.st_ino
        assert after.st_mode & 0o777 == 0o600
    assert (keys / "sel.private").read_bytes() != old_key
    assert sorted(p.name for p in keys.iterdir()) == ["sel.private", "sel.txt"]  # no temp left


def test_force_with_group_is_0640(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root to chgrp")
    import grp

    keys = keydir(tmp_path)
    assert run(keys) == 0
    assert genkey.main(["-D", str(keys), "-s", "sel", "--force", "--group", "nogroup"]) == 0
    st = (keys / "sel.private").stat()
    assert st.st_mode & 0o777 == 0o640
    assert (st.st_uid, st.st_gid) == (0, grp.getgrnam("nogroup").gr_gid)


def test_force_refuses_a_directory(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    keys = keydir(tmp_path)
    (keys / "sel.private").mkdir()
    assert run(keys, "--force") == 1
    assert "is not a regular file" in capsys.readouterr().err


def test_failed_write_leaves_no_temp_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    keys = keydir(tmp_path)
    assert run(keys) == 0
    before = (keys / "sel.private").read_bytes()

    def boom(fd: int, mode: int) -> None:
        raise PermissionError(1, "Operation not permitted")

    monkeypatch.setattr(genkey.os, "fchmod", boom)
    assert run(keys, "--force") == 1
    assert "cannot write" in capsys.readouterr().err
    assert (keys / "sel.private").read_bytes() == before  # old key intact
    assert sorted(p.name for p in keys.iterdir()) == ["sel.private", "sel.txt"]


@pytest.mark.parametrize("force", [True, False])
def test_write_itself_never_follows_a_link(
    tmp_path: Path, victim: Path, monkeypatch: pytest.MonkeyPatch, force: bool
) -> None:
    """Even a link that slips past every check (lstat, then link, then open) is not followed:
    O_EXCL refuses it, and a rename replaces the link, not its target."""
    keys = keydir(tmp_path)
    (keys / "sel.private").symlink_to(victim)
    monkeypatch.setattr(genkey, "_problem", lambda path, force: None)
    assert run(keys, *(["--force"] if force else [])) == (0 if force else 1)
    assert victim.read_bytes() == b"precious\n"
    assert victim.stat().st_mode & 0o777 == 0o644
    assert (keys / "sel.private").is_symlink() is not force
