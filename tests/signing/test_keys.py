"""Key loading: formats, weak and malformed keys, RequireSafeKeys-style permission checks."""

from __future__ import annotations

import grp
import os
import shutil
from pathlib import Path

import pytest

from authmilter.errors import ConfigError
from authmilter.signing.keys import Identity, check_key_file, load_key_file, parse_private_key

DATA = Path(__file__).resolve().parent.parent / "data" / "signing"


def copy_key(tmp_path: Path, name: str, mode: int = 0o600) -> Path:
    """A private copy of a test key with the given mode (git does not keep modes)."""
    dest = tmp_path / "keys" / name
    dest.parent.mkdir(mode=0o700, exist_ok=True)
    shutil.copyfile(DATA / name, dest)
    os.chmod(dest, mode)
    return dest


@pytest.mark.parametrize(
    ("name", "key_type", "bits", "algorithm"),
    [
        ("rsa2048-pkcs1.pem", "rsa", 2048, "rsa-sha256"),
        ("rsa2048-pkcs8.pem", "rsa", 2048, "rsa-sha256"),
        ("ed25519.pem", "ed25519", 256, "ed25519-sha256"),
        ("ed25519.seed", "ed25519", 256, "ed25519-sha256"),
    ],
)
def test_formats(tmp_path: Path, name: str, key_type: str, bits: int, algorithm: str) -> None:
    key = load_key_file(copy_key(tmp_path, name))
    assert (key.key_type, key.bits, key.algorithm) == (key_type, bits, algorithm)


def test_pkcs1_and_pkcs8_are_the_same_key(tmp_path: Path) -> None:
    a = load_key_file(copy_key(tmp_path, "rsa2048-pkcs1.pem"))
    b = load_key_file(copy_key(tmp_path, "rsa2048-pkcs8.pem"))
    assert a.public_p() == b.public_p()
    assert a.sign(b"data") == b.sign(b"data")  # PKCS#1 v1.5 is deterministic


def test_ed25519_public_is_raw_32_bytes(tmp_path: Path) -> None:
    import base64

    key = load_key_file(copy_key(tmp_path, "ed25519.pem"))
    assert len(base64.b64decode(key.public_p())) == 32
    assert len(key.public_p()) == 44


def test_seed_matches_pynacl() -> None:
    import base64

    import nacl.signing

    seed = (DATA / "ed25519.seed").read_bytes()
    ours = parse_private_key(seed, "seed")
    nacl_key = nacl.signing.SigningKey(seed, encoder=nacl.encoding.Base64Encoder)
    from authmilter.signing.keys import public_key_bytes

    assert public_key_bytes(ours) == bytes(nacl_key.verify_key)
    assert base64.b64encode(public_key_bytes(ours))


def test_small_rsa_refused(tmp_path: Path) -> None:
    path = copy_key(tmp_path, "rsa512.pem")
    with pytest.raises(ConfigError, match=r"rsa512\.pem: RSA key has 512 bits"):
        load_key_file(path)


@pytest.mark.parametrize(
    "content",
    [
        b"",
        b"not a key\n",
        b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
        b"c2hvcnQ=\n",
    ],
)
def test_malformed_refused(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "bad.key"
    path.write_bytes(content)
    os.chmod(path, 0o600)
    with pytest.raises(ConfigError, match=r"bad\.key: "):
        load_key_file(path)


def test_missing_and_directory(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_key_file(tmp_path / "nope.pem")
    with pytest.raises(ConfigError, match="key file is a directory"):
        load_key_file(tmp_path)


def test_unreadable(tmp_path: Path) -> None:
    if os.geteuid() == 0:
        pytest.skip("root reads any file")
    path = copy_key(tmp_path, "ed25519.pem", 0o000)
    with pytest.raises(ConfigError, match="not readable"):
        load_key_file(path)


@pytest.mark.parametrize("mode", [0o644, 0o604, 0o602, 0o660, 0o620])
def test_unsafe_modes_refused(tmp_path: Path, mode: int) -> None:
    path = copy_key(tmp_path, "ed25519.pem", mode)
    with pytest.raises(ConfigError, match=r"ed25519\.pem: unsafe key file for the current user"):
        load_key_file(path)
    # ...but accepted when the safety check is off
    assert load_key_file(path, require_safe=False).key_type == "ed25519"


def test_unsafe_key_reported_to_warn_and_loaded(tmp_path: Path) -> None:
    """What ``authmilter test`` does without milter.user: warn, then sign anyway."""
    path = copy_key(tmp_path, "ed25519.pem", 0o644)
    warnings: list[str] = []
    assert load_key_file(path, warn=warnings.append).key_type == "ed25519"
    me = Identity.current()
    assert warnings == [
        f"{path}: unsafe key file for the current user {me.name} (milter.user is not set): "
        "mode 0644 lets other users read or write it (use 0600 or 0640) "
        "(signing.require_safe_keys)"
    ]
    daemon = Identity(4242, 4242, "authmilter-test", configured=True)
    with pytest.raises(ConfigError, match=r"for user authmilter-test \(milter\.user\): mode"):
        load_key_file(path, identity=daemon)


def test_0640_own_group_accepted(tmp_path: Path) -> None:
    path = copy_key(tmp_path, "ed25519.pem", 0o640)
    me = Identity.current()
    group = grp.getgrgid(os.stat(path).st_gid)
    if set(group.gr_mem) - {"root", me.name}:
        pytest.skip("the test file's group has other members here")
    assert check_key_file(str(path), me) is None
    assert load_key_file(path).key_type == "ed25519"


def test_0640_root_daemon_group_accepted(tmp_path: Path) -> None:
    """Debian layout: 0640 root:authmilter, checked for the daemon user (not the loader)."""
    if os.geteuid() != 0:
        pytest.skip("needs root to chown")
    path = copy_key(tmp_path, "ed25519.pem", 0o640)
    gid = 4242
    os.chown(path, 0, gid)
    daemon = Identity(uid=4242, gid=gid, name="authmilter-test")
    try:
        grp.getgrgid(gid)
        pytest.skip("gid 4242 exists here")
    except KeyError:
        pass
    # unknown group: cannot prove it has no other members
    assert check_key_file(str(path), daemon) is not None
    empty = _empty_group()
    if empty is None:
        pytest.skip("no group without members here")
    os.chown(path, 0, empty.gr_gid)
    assert check_key_file(str(path), Identity(4242, empty.gr_gid, "authmilter-test")) is None
    # the same file is refused for a daemon whose group is another one
    problem = check_key_file(str(path), Identity(4242, 4243, "authmilter-test"))
    assert problem is not None
    assert "not the daemon's group" in problem


def _empty_group() -> grp.struct_group | None:
    """A group nobody is in (neither as member nor as primary group), like a fresh daemon group."""
    import pwd

    primary = {p.pw_gid for p in pwd.getpwall()}
    for group in grp.getgrall():
        if not group.gr_mem and group.gr_gid not in primary and group.gr_gid != 0:
            return group
    return None


def test_foreign_owner_refused(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root to chown")
    path = copy_key(tmp_path, "ed25519.pem", 0o600)
    os.chown(path, 4321, -1)
    with pytest.raises(ConfigError, match="owned by uid 4321"):
        load_key_file(path)


def test_other_writable_directory_refused(tmp_path: Path) -> None:
    path = copy_key(tmp_path, "ed25519.pem", 0o600)
    os.chmod(path.parent, 0o777)  # noqa: S103 (on purpose)
    try:
        with pytest.raises(ConfigError, match="writable by other users"):
            load_key_file(path)
    finally:
        os.chmod(path.parent, 0o700)


def test_sticky_root_directory_accepted(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root to own the sticky directory")
    path = copy_key(tmp_path, "ed25519.pem", 0o600)
    os.chmod(path.parent, 0o1777)  # noqa: S103 (on purpose)
    try:
        assert load_key_file(path).key_type == "ed25519"
    finally:
        os.chmod(path.parent, 0o700)
