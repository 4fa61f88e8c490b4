"""DKIM private keys: loading (PEM RSA, PEM Ed25519, base64 Ed25519 seed), safety checks, signing.

Formats accepted, whatever the file name:

* PEM RSA, PKCS#1 (``BEGIN RSA PRIVATE KEY``) or PKCS#8 (``BEGIN PRIVATE KEY``), at least 1024 bits;
* PEM PKCS#8 Ed25519 (what opendkim and ``authmilter genkey`` write);
* the 44-character base64 Ed25519 seed (dkimpy-milter / ``dknewkey`` format).

Signing goes through ``cryptography`` (OpenSSL): RSASSA-PKCS1-v1_5 with SHA-256 (deterministic,
so byte-identical to dkimpy's pure-Python RSA) and Ed25519 over the SHA-256 digest (RFC 8463).

Key file safety (``signing.require_safe_keys``) follows opendkim's RequireSafeKeys, see
:func:`check_key_file`.
"""

from __future__ import annotations

import base64
import binascii
import grp
import os
import pwd
import stat
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, padding, rsa

from authmilter.checks.dkim_crypto import MIN_RSA_BITS
from authmilter.errors import ConfigError
from authmilter.files import open_regular
from authmilter.users import user_ids

RSA_SHA256 = "rsa-sha256"
ED25519_SHA256 = "ed25519-sha256"

PrivateKey = rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey


@dataclass(frozen=True, slots=True)
class Identity:
    """Who the daemon is (or will be after dropping privileges), for the key safety check."""

    uid: int
    gid: int
    name: str
    configured: bool = False  # named by milter.user, not the running process

    def __str__(self) -> str:
        if self.configured:
            return f"user {self.name} (milter.user)"
        return f"the current user {self.name} (milter.user is not set)"

    @classmethod
    def current(cls) -> Identity:
        """The running process (effective uid and gid)."""
        uid = os.geteuid()
        try:
            name = pwd.getpwuid(uid).pw_name
        except KeyError:
            name = str(uid)
        return cls(uid, os.getegid(), name)

    @classmethod
    def for_user(cls, user: str, group: str = "") -> Identity:
        """The account named by ``milter.user`` / ``milter.group`` (ConfigError if unknown)."""
        uid, gid = user_ids(user, group)
        return cls(uid, gid, user, configured=True)


@dataclass(frozen=True, slots=True)
class PrivateKeyFile:
    """A loaded private key and where it came from."""

    key: PrivateKey
    path: str

    @property
    def algorithm(self) -> str:
        """The DKIM ``a=`` value this key signs with."""
        return ED25519_SHA256 if isinstance(self.key, ed25519.Ed25519PrivateKey) else RSA_SHA256

    @property
    def key_type(self) -> str:
        """The DNS ``k=`` value: ``rsa`` or ``ed25519``."""
        return "ed25519" if isinstance(self.key, ed25519.Ed25519PrivateKey) else "rsa"

    @property
    def bits(self) -> int:
        """RSA modulus size; 256 for Ed25519."""
        return self.key.key_size if isinstance(self.key, rsa.RSAPrivateKey) else 256

    def public_p(self) -> str:
        """The DNS ``p=`` value: base64 SubjectPublicKeyInfo (RSA) or raw 32-byte key (Ed25519)."""
        return base64.b64encode(public_key_bytes(self.key)).decode("ascii")

    def sign(self, data: bytes) -> bytes:
        """Sign the canonicalised header data (hashing with SHA-256 as the algorithm says)."""
        if isinstance(self.key, rsa.RSAPrivateKey):
            return self.key.sign(data, padding.PKCS1v15(), hashes.SHA256())
        digest = hashes.Hash(hashes.SHA256())
        digest.update(data)
        return self.key.sign(digest.finalize())


def public_key_bytes(key: PrivateKey) -> bytes:
    """What DKIM publishes in ``p=`` (decoded): SPKI DER for RSA, the raw key for Ed25519."""
    pub = key.public_key()
    if isinstance(pub, ed25519.Ed25519PublicKey):
        return pub.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return pub.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def parse_private_key(data: bytes, source: str) -> PrivateKey:
    """Parse key material; ConfigError naming ``source`` (never quoting it) if malformed or weak."""
    text = data.strip()
    if not text:
        raise ConfigError(f"{source}: key file is empty")
    if text.startswith(b"-----BEGIN"):
        if b"ENCRYPTED" in text.split(b"\n", 1)[0] or b"Proc-Type: 4,ENCRYPTED" in text:
            raise ConfigError(
                f"{source}: key is encrypted (a signing key must not need a password)"
            )
        try:
            key = serialization.load_pem_private_key(text, password=None)
        except (ValueError, TypeError, UnsupportedAlgorithm):  # its text is not ours to vouch for
            raise ConfigError(
                f"{source}: not a usable PEM private key (malformed, or not RSA or Ed25519)"
            ) from None
    else:
        key = _parse_seed(text, source)
    if isinstance(key, rsa.RSAPrivateKey):
        if key.key_size < MIN_RSA_BITS:
            raise ConfigError(
                f"{source}: RSA key has {key.key_size} bits; at least {MIN_RSA_BITS} are required"
            )
        return key
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return key
    raise ConfigError(f"{source}: unsupported key type {type(key).__name__} (use RSA or Ed25519)")


def _parse_seed(text: bytes, source: str) -> ed25519.Ed25519PrivateKey:
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raw = b""
    if len(raw) != 32:
        raise ConfigError(
            f"{source}: not a PEM private key nor a base64 Ed25519 seed (44 characters)"
        )
    return ed25519.Ed25519PrivateKey.from_private_bytes(raw)


def load_key_file(
    path: str | Path,
    *,
    require_safe: bool = True,
    identity: Identity | None = None,
    warn: Callable[[str], None] | None = None,
) -> PrivateKeyFile:
    """Read, check and parse one key file (ConfigError naming the file on any problem).

    With ``warn``, a file that fails the safety check is reported there and loaded anyway.
    """
    path = str(path)
    fh, st = open_regular(path, "key file")
    with fh:
        if require_safe:
            identity = identity or Identity.current()
            problem = check_key_file(path, identity, st)
            if problem:
                text = (
                    f"{path}: unsafe key file for {identity}: {problem} (signing.require_safe_keys)"
                )
                if warn is None:
                    raise ConfigError(text)
                warn(text)
        try:
            data = fh.read(1 << 20)
        except OSError as exc:
            raise ConfigError(f"{path}: cannot read key file: {exc.strerror}") from None
    return PrivateKeyFile(parse_private_key(data, path), path)


def check_key_file(path: str, identity: Identity, st: os.stat_result | None = None) -> str | None:
    """opendkim RequireSafeKeys, for a file: a problem description, or None when safe.

    Unsafe: owned by anyone but root or the daemon; readable or writable by other; writable
    by group; readable by a group that is not the daemon's own group or that has members
    besides root and the daemon (so ``0640 root:authmilter`` is accepted when only the
    ``authmilter`` user is in that group). Every directory above the file must not be
    writable by anyone but root and the daemon (a root-owned sticky directory such as
    ``/tmp`` is accepted, unlike opendkim, because others cannot rename entries in it).
    """
    st = st or Path(path).stat()
    owners = {0, identity.uid, os.geteuid()}
    mode = st.st_mode
    if st.st_uid not in owners:
        return f"owned by uid {st.st_uid}, not by root or {identity.name}"
    if mode & (stat.S_IROTH | stat.S_IWOTH):
        return f"mode {stat.S_IMODE(mode):04o} lets other users read or write it (use 0600 or 0640)"
    if mode & stat.S_IWGRP:
        return f"mode {stat.S_IMODE(mode):04o} lets its group write it"
    if mode & stat.S_IRGRP:
        problem = _group_problem(st.st_gid, identity)
        if problem:
            return f"mode {stat.S_IMODE(mode):04o} lets group {problem}"
    return _directory_problem(Path(path), identity, owners)


def _group_problem(gid: int, identity: Identity) -> str | None:
    own = {identity.gid, os.getegid()}
    try:
        group = grp.getgrgid(gid)
    except KeyError:
        return f"{gid} read it, and that group is unknown"
    if gid not in own:
        return f"{group.gr_name!r} read it, which is not the daemon's group"
    allowed = {"root", identity.name}
    others = [m for m in group.gr_mem if m not in allowed]
    if not others:
        others = [p.pw_name for p in pwd.getpwall() if p.pw_gid == gid and p.pw_name not in allowed]
    if others:
        return f"{group.gr_name!r} read it, which has other members (e.g. {others[0]!r})"
    return None


def _directory_problem(path: Path, identity: Identity, owners: set[int]) -> str | None:
    own_groups = {identity.gid, os.getegid()}
    for directory in Path(os.path.realpath(path)).parents:
        try:
            st = directory.stat()
        except OSError:
            return f"cannot check directory {directory}"
        mode = st.st_mode
        sticky_root = bool(mode & stat.S_ISVTX) and st.st_uid == 0
        if mode & stat.S_IWOTH and not sticky_root:
            return f"directory {directory} is writable by other users"
        if mode & stat.S_IWGRP and st.st_gid not in own_groups and not sticky_root:
            return f"directory {directory} is writable by its group"
        if mode & stat.S_IWUSR and st.st_uid not in owners:
            return f"directory {directory} is owned and writable by uid {st.st_uid}"
    return None
