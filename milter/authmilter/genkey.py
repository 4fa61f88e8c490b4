"""``authmilter genkey``: opendkim-genkey's flags and files (Debian's defaults), plus Ed25519.

Writes ``SEL.private`` (PEM PKCS#8, what opendkim reads too) and ``SEL.txt`` in exactly
opendkim-genkey's layout. Differences from Debian's ``opendkim-genkey``:

* ``--type ed25519`` writes an Ed25519 key; its record has ``k=ed25519`` and no ``h=``
  unless ``-h`` is given (as upstream's ``--ed25519``);
* RSA keys below 1024 bits are refused (authmilter will not sign with them);
* existing files are never overwritten unless ``--force``, which replaces them by rename;
  a symbolic link in place of either file is refused, with or without ``--force``;
* files are created 0600; when ``--group`` names a group (default: ``authmilter`` when run
  as root and that group exists) the private key gets that group and mode 0640, which is
  what ``signing.require_safe_keys`` accepts for the daemon.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import os
import stat
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

from authmilter import __version__
from authmilter.checks.dkim_crypto import MIN_RSA_BITS
from authmilter.errors import ConfigError
from authmilter.signing.keys import PrivateKey, public_key_bytes
from authmilter.users import group_id

PROG = "authmilter genkey"
DAEMON_GROUP = "authmilter"
_CHUNK = 250


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        self.print_usage(sys.stderr)
        raise _UsageError(2, f"{self.prog}: error: {message}")


class _UsageError(Exception):
    def __init__(self, code: int, message: str = "") -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def build_parser() -> argparse.ArgumentParser:
    """The command line (opendkim-genkey compatible)."""
    p = _Parser(
        prog=PROG, add_help=False, description="Generate a DKIM key pair and its DNS record."
    )
    p.add_argument(
        "-a",
        "--append-domain",
        action="store_true",
        help="include the domain name in the record name",
    )
    p.add_argument("-b", "--bits", type=int, default=2048, help="RSA key size (default 2048)")
    p.add_argument("-d", "--domain", default="localhost", help="domain name (default localhost)")
    p.add_argument("-D", "--directory", default=".", help="write the files in this directory")
    p.add_argument(
        "-h",
        "--hash-algorithms",
        default=None,
        metavar="LIST",
        help="h= list (default sha256 for RSA, none for Ed25519)",
    )
    p.add_argument("--help", action="help", help="show this help and exit")
    p.add_argument("-n", "--note", default=None, help="n= note in the record")
    p.add_argument("-r", "--restrict", action="store_true", help="s=email: e-mail use only")
    p.add_argument("-s", "--selector", default="default", help="selector (default 'default')")
    p.add_argument("-S", "--nosubdomains", action="store_true", help="t=s: no subdomains")
    p.add_argument(
        "--subdomains",
        dest="nosubdomains",
        action="store_false",
        help="allow subdomains (the default)",
    )
    p.add_argument("-t", "--testmode", action="store_true", help="t=y: test mode")
    p.add_argument("-v", "--verbose", action="count", default=0, help="more messages on stderr")
    p.add_argument("-V", "--version", action="version", version=f"{PROG} {__version__}")
    p.add_argument(
        "--type", choices=("rsa", "ed25519"), default="rsa", help="key type (default rsa)"
    )
    p.add_argument("--force", action="store_true", help="overwrite existing files")
    p.add_argument(
        "--group",
        default=None,
        help="group of SEL.private (mode 0640); default authmilter when run as root "
        "and the group exists; '' for none",
    )
    return p


def txt_record(
    selector: str,
    domain: str,
    p: str,
    *,
    key_type: str = "rsa",
    hash_algorithms: str | None = "sha256",
    note: str | None = None,
    testmode: bool = False,
    nosubdomains: bool = False,
    restrict: bool = False,
    append_domain: bool = False,
) -> str:
    """``SEL.txt`` exactly as opendkim-genkey writes it (tag order v, n, h, k, t, s)."""
    flags = "t=y;" if testmode else ""
    if nosubdomains:
        flags = "t=y:s;" if flags == "t=y;" else "t=s;"
    if restrict:
        flags += (" " if flags else "") + "s=email;"
    if flags:
        flags += " "
    hashout = f" h={hash_algorithms};" if hash_algorithms is not None else ""
    noteout = f' n=\\"{note}\\";' if note is not None else ""
    domstr = f".{domain}." if append_domain else ""
    comment = f" ; ----- DKIM key {selector} for {domain}" if domain else ""
    head = f"{selector}._domainkey{domstr}\tIN\tTXT\t"
    out = head + f'( "v=DKIM1;{noteout}{hashout} k={key_type}; {flags}"\n\t  "p='
    rest, cur = len(p), 0
    while rest > 0:
        if rest < _CHUNK:
            out += p[cur:]
            rest = 0
        else:
            out += p[cur : cur + _CHUNK] + '"\n\t  "'
            cur += _CHUNK
            rest -= _CHUNK
    return out + f'" ) {comment}\n'


def generate(key_type: str, bits: int) -> PrivateKey:
    """A new private key."""
    if key_type == "ed25519":
        return ed25519.Ed25519PrivateKey.generate()
    return rsa.generate_private_key(public_exponent=65537, key_size=bits)


def private_pem(key: PrivateKey) -> bytes:
    """PEM PKCS#8, unencrypted."""
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _default_group() -> str:
    if os.geteuid() != 0:
        return ""
    try:
        group_id(DAEMON_GROUP)
    except ConfigError:
        return ""
    return DAEMON_GROUP


class _RefusedError(Exception):
    """A target that genkey will not write."""


def _problem(path: Path, force: bool) -> str | None:
    """Why ``path`` may not be written (a symlink, or existing without ``force``), or None."""
    try:
        st = path.lstat()
    except FileNotFoundError:
        return None
    except OSError as exc:
        return f"{path}: {exc.strerror}"
    if stat.S_ISLNK(st.st_mode):
        return f"{path} is a symbolic link: refusing to follow or replace it"
    if not force:
        return f"{path} exists (use --force to overwrite)"
    if not stat.S_ISREG(st.st_mode):
        return f"{path} is not a regular file"
    return None


def _write(path: Path, data: bytes, force: bool, mode: int, gid: int = -1) -> None:
    """Write ``path`` whole with ``mode`` (and group ``gid``), never through a symlink.

    A new file is created with O_EXCL; with ``force`` the data goes to a fresh temp file in
    the same directory, which gets its owner and mode and is then renamed over ``path``.
    """
    problem = _problem(path, force)
    if problem is not None:
        raise _RefusedError(problem)
    if force:
        fd, name = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)  # O_EXCL, 0600
        tmp = Path(name)
    else:
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        fd, tmp = os.open(path, flags, 0o600), path
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            if gid >= 0:
                os.fchown(fd, 0 if os.geteuid() == 0 else -1, gid)
            os.fchmod(fd, mode)
            os.fsync(fd)
        if force:
            tmp.replace(path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise


def _say(args: argparse.Namespace, level: int, text: str) -> None:
    if args.verbose >= level:
        print(f"{PROG}: {text}", file=sys.stderr)


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``authmilter genkey``; returns the exit status."""
    parser = build_parser()
    try:
        args = parser.parse_args(list(sys.argv[1:] if argv is None else argv))
    except _UsageError as exc:
        print(exc.message, file=sys.stderr)
        return exc.code
    except SystemExit as exc:  # --help, --version
        return int(exc.code or 0)
    if args.type == "rsa" and args.bits < MIN_RSA_BITS:
        print(f"{PROG}: RSA keys need at least {MIN_RSA_BITS} bits (RFC 8301)", file=sys.stderr)
        return 2
    if not args.selector or "/" in args.selector:
        print(f"{PROG}: bad selector {args.selector!r}", file=sys.stderr)
        return 2
    hashes = args.hash_algorithms
    if hashes is None and args.type == "rsa":
        hashes = "sha256"
    group = _default_group() if args.group is None else args.group
    gid = -1
    if group:
        try:
            gid = group_id(group, "--group")
        except ConfigError as exc:
            print(f"{PROG}: {exc}", file=sys.stderr)
            return 2
    directory = Path(args.directory)
    private = directory / f"{args.selector}.private"
    txt = directory / f"{args.selector}.txt"
    if not directory.is_dir():
        print(f"{PROG}: {directory}: not a directory", file=sys.stderr)
        return 1
    for path in (private, txt):
        problem = _problem(path, args.force)
        if problem is not None:
            print(f"{PROG}: {problem}", file=sys.stderr)
            return 1
    _say(args, 1, f"generating {args.type} private key")
    key = generate(args.type, args.bits)
    p = base64.b64encode(public_key_bytes(key)).decode("ascii")
    record = txt_record(
        args.selector,
        args.domain,
        p,
        key_type=args.type,
        hash_algorithms=hashes,
        note=args.note,
        testmode=args.testmode,
        nosubdomains=args.nosubdomains,
        restrict=args.restrict,
        append_domain=args.append_domain,
    )
    return _write_files(args, private, txt, private_pem(key), record, gid=gid)


def _write_files(
    args: argparse.Namespace, private: Path, txt: Path, pem: bytes, record: str, *, gid: int
) -> int:
    old_umask = os.umask(0o077)
    created: list[Path] = []
    try:
        _write(private, pem, args.force, 0o640 if gid >= 0 else 0o600, gid)
        created.append(private)
        _say(args, 1, f"private key written to {private}")
        _write(txt, record.encode("ascii"), args.force, 0o600)
        _say(args, 1, f"DNS TXT record written to {txt}")
    except (OSError, _RefusedError) as exc:
        what = "" if isinstance(exc, _RefusedError) else "cannot write: "
        print(f"{PROG}: {what}{exc}", file=sys.stderr)
        for path in created:
            with contextlib.suppress(OSError):
                path.unlink()
        return 1
    finally:
        os.umask(old_umask)
    return 0
