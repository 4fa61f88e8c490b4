"""The milters under test: how each is configured, started and pointed at the bench DNS.

DNS: the bench DNS server listens on ``DNS_IP`` port 53 (a loopback address of its own), so
every milter can reach it without a port number. opendkim and authmilter are told so in
their config (``Nameservers``, ``dns.nameservers``); opendmarc (libresolv and libspf2),
dkimpy-milter and pyspf-milter (dnspython's default resolver) only read /etc/resolv.conf, so
they run in a private mount namespace with a bind-mounted resolv.conf (:func:`with_resolv_conf`);
the host's /etc/resolv.conf is never changed.

Targets are chains of milters, as in ``smtpd_milters = a, b``: see :mod:`bench.loadgen`.
Each milter is responsible for some verdict fields (:data:`CHECKS`); a run in which one
does not deliver them (no signature, a wrong result, a tempfail) is invalid
(:mod:`bench.runner`).

Keys and sockets live in a private directory (:func:`private_dir`): opendkim's
RequireSafeKeys refuses a key below any directory that others may write (such as /tmp, where
a fresh clone may sit), so they are never below the checkout.
"""

from __future__ import annotations

import os
import shutil
import socket
import stat
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench import corpus
from bench.procs import Proc, with_resolv_conf

REPO = Path(__file__).resolve().parents[1]
DNS_IP = "127.53.0.1"


@dataclass(frozen=True)
class MilterSpec:
    """One milter process: its command line, socket and where it logs."""

    name: str
    argv: tuple[str, ...]
    socket: str  # unix socket path
    env: dict[str, str] = field(default_factory=dict)
    resolv_conf: bool = False  # needs the private /etc/resolv.conf
    version: str = ""

    @property
    def address(self) -> str:
        """The MilterClient address."""
        return f"unix:{self.socket}"

    def proc(self, logdir: Path) -> Proc:
        """A :class:`Proc` for it (not started)."""
        argv = list(self.argv)
        if self.resolv_conf:
            argv = with_resolv_conf(logdir / "resolv.conf", argv)
        env = {**os.environ, **self.env}
        return Proc(self.name, argv, logdir / f"{self.name}.log", env=env, cwd=logdir)


# Targets: name -> chain of milter names, and what they are compared on. "authmilter" is
# the shipped configuration (milter.workers = "auto", recording to SQLite, metrics on);
# "authmilter-1w" the same with one worker; "authmilter-bare" (BARE_TARGETS, in the
# inbound-2k-rsa scenario only) the shipped configuration without recording and metrics. "floor" is
# the least a pymilter milter can do (every callback, one header added at end of message);
# "null" adds nothing.
INBOUND_TARGETS: dict[str, tuple[str, ...]] = {
    "authmilter": ("authmilter",),
    "authmilter-1w": ("authmilter-1w",),
    "opendkim": ("opendkim-verify",),
    "opendmarc": ("opendmarc",),
    "opendkim+opendmarc": ("opendkim-verify", "opendmarc"),
    "dkimpy-milter": ("dkimpy-verify",),
    "pyspf-milter": ("pyspf",),
    "floor": ("floor",),
    "null": ("null",),
}
BARE_TARGETS: dict[str, tuple[str, ...]] = {"authmilter-bare": ("authmilter-bare",)}
SIGN_TARGETS: dict[str, tuple[str, ...]] = {
    "authmilter": ("authmilter",),
    "authmilter-1w": ("authmilter-1w",),
    "opendkim": ("opendkim-sign",),
    "dkimpy-milter": ("dkimpy-sign",),
    "floor": ("floor",),
    "null": ("null",),
}
SIGN_ED_TARGETS = {
    **SIGN_TARGETS,
    "opendkim": ("opendkim-sign-ed",),
    "dkimpy-milter": ("dkimpy-sign-ed",),
}
# the targets measured against the others
AUTHMILTERS = ("authmilter", "authmilter-1w", "authmilter-bare")

# The verdict fields each milter must deliver (a chain: the union). A scenario expects
# values for some fields (runner.Scenario.expect); a target is held to those it checks.
ALL_FIELDS = frozenset({"action", "spf", "dkim", "dmarc", "arc", "signatures"})
CHECKS: dict[str, frozenset[str]] = {
    "authmilter": ALL_FIELDS,
    "authmilter-1w": ALL_FIELDS,
    "authmilter-bare": ALL_FIELDS,
    "opendkim-verify": frozenset({"action", "dkim"}),
    "opendkim-sign": frozenset({"action", "signatures"}),
    "opendkim-sign-ed": frozenset({"action", "signatures"}),
    "opendmarc": frozenset({"action", "spf", "dmarc"}),
    "dkimpy-verify": frozenset({"action", "dkim"}),
    "dkimpy-sign": frozenset({"action", "signatures"}),
    "dkimpy-sign-ed": frozenset({"action", "signatures"}),
    "pyspf": frozenset({"action", "spf"}),
    "floor": frozenset({"action"}),
    "null": frozenset({"action"}),
}


def checked_fields(chain: tuple[str, ...]) -> frozenset[str]:
    """The verdict fields a chain of milters is responsible for."""
    return frozenset().union(*(CHECKS.get(name, frozenset({"action"})) for name in chain))


def _safe_dir(path: Path) -> bool:
    """True when ``path`` and every directory above it are owned by root or us and not
    writable by group or others (what opendkim's RequireSafeKeys demands of a key's path)."""
    me = os.geteuid()
    for d in (path, *path.parents):
        try:
            st = d.stat()
        except OSError:
            return False
        if st.st_uid not in (0, me) or st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
            return False
    return True


def private_dir(candidates: tuple[Path, ...] = (Path("/run"), Path("/var/lib"))) -> Path:
    """A new directory for keys (``keys/``, 0700) and sockets (``sock/``, 0700) below the
    first candidate whose whole path is safe; the directory itself is 0711 (Postfix's smtpd
    must pass through it to the sockets in the end-to-end run)."""
    for base in candidates:
        if base.is_dir() and _safe_dir(base) and os.access(base, os.W_OK | os.X_OK):
            path = Path(tempfile.mkdtemp(prefix="authmilter-bench-", dir=base))
            break
    else:
        raise RuntimeError(
            f"no safe place for the bench's keys and sockets in {', '.join(map(str, candidates))}"
        )
    path.chmod(0o711)
    for sub in ("keys", "sock"):
        (path / sub).mkdir(mode=0o700)
    return path


def _private_keys(manifest: dict[str, Any], private: Path) -> dict[str, Any]:
    """The manifest with its keys copied (0600) into ``private/keys``."""
    keys = []
    for key in manifest["keys"]:
        copied = dict(key)
        for field_name in ("pem", "seed"):
            if key.get(field_name) and Path(key[field_name]).exists():
                target = private / "keys" / Path(key[field_name]).name
                fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
                with os.fdopen(fd, "wb") as out:
                    out.write(Path(key[field_name]).read_bytes())
                copied[field_name] = str(target)
        keys.append(copied)
    return {**manifest, "keys": keys}


def free_port() -> int:
    """A free TCP port on 127.0.0.1 (for each authmilter's metrics endpoint)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _write(path: Path, text: str, mode: int = 0o644) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    path.chmod(mode)
    return path


def _keys(manifest: dict[str, Any]) -> dict[tuple[str, str], dict[str, str]]:
    return {(k["domain"], k["selector"]): k for k in manifest["keys"]}


def _pkg_version(pkg: str) -> str:
    try:
        out = subprocess.run(
            ["dpkg-query", "-W", "-f", "${Version}", pkg],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return "?"
    return out.stdout.strip() or "not installed"


def build_specs(
    run_dir: Path,
    manifest: dict[str, Any],
    python: str,
    log_level: str = "info",
    *,
    private: Path | None = None,
) -> dict[str, MilterSpec]:
    """Write every config file into ``run_dir``; return the milter specs by name.

    ``private`` (from :func:`private_dir`): where the keys are copied and the sockets are
    made; without it, both stay where the corpus and ``run_dir`` are (the harness's tests).
    """
    run_dir.mkdir(parents=True, exist_ok=True)
    _write(run_dir / "resolv.conf", f"nameserver {DNS_IP}\noptions timeout:5 attempts:1\n")
    if private is not None:
        manifest = _private_keys(manifest, private)
    sockets = private / "sock" if private is not None else run_dir
    keys = _keys(manifest)
    rsa = keys[(corpus.SIGN_RSA_DOMAIN, corpus.RSA_SELECTOR)]
    ed = keys[(corpus.SIGN_ED_DOMAIN, corpus.ED_SELECTOR)]
    specs = [
        _authmilter(run_dir, sockets, python, rsa=rsa, ed=ed, log_level=log_level, workers="auto"),
        _authmilter(run_dir, sockets, python, rsa=rsa, ed=ed, log_level=log_level, workers=1),
        _authmilter(
            run_dir, sockets, python, rsa=rsa, ed=ed, log_level=log_level, workers="auto", bare=True
        ),
        _opendkim_verify(run_dir, sockets),
        _opendkim_sign(run_dir, sockets, rsa, ""),
        _opendkim_sign(run_dir, sockets, ed, "-ed"),
        _opendmarc(run_dir, sockets),
        _dkimpy(run_dir, sockets, "verify"),
        _dkimpy(run_dir, sockets, "sign", rsa),
        _dkimpy(run_dir, sockets, "sign", ed, "-ed"),
        _pyspf(run_dir, sockets),
        _null(sockets, python),
        _null(sockets, python, floor=True),
    ]
    return {s.name: s for s in specs}


def authmilter_config(
    rsa: dict[str, str],
    ed: dict[str, str],
    *,
    log_level: str,
    socket: str,
    internal: tuple[str, ...] = (),
    workers: int | str = "auto",
    metrics_listen: str = "",
    history: str = "",
) -> str:
    """authmilter's TOML: the shipped defaults but for bench DNS, nothing internal by
    address, two signing keys, (each authmilter its own) metrics port and ``history``
    (reports.history; "" = no recording)."""
    internal_list = ", ".join(f'"{n}"' for n in internal)
    workers_value = f'"{workers}"' if isinstance(workers, str) else str(workers)
    return f"""# written by bench/milters.py
[milter]
socket = "unix:{socket}"
authserv_id = "bench.authmilter"
workers = {workers_value}
log_level = "{log_level}"
log_target = "stderr"

[metrics]
listen = "{metrics_listen}"

[dns]
nameservers = ["{DNS_IP}:53"]
timeout = 5.0

[trust]
internal_hosts = [{internal_list}]

[reports]
history = "{history}"

[signing]
canonicalization = "relaxed/relaxed"

[[signing.keys]]
domain = "{rsa["domain"]}"
selector = "{rsa["selector"]}"
key_file = "{rsa["pem"]}"

[[signing.keys]]
domain = "{ed["domain"]}"
selector = "{ed["selector"]}"
key_file = "{ed["pem"]}"
"""


def _authmilter(
    run_dir: Path,
    sockets: Path,
    python: str,
    *,
    rsa: dict[str, str],
    ed: dict[str, str],
    log_level: str,
    workers: int | str,
    bare: bool = False,
) -> MilterSpec:
    """authmilter as shipped (recording to SQLite, metrics on); ``bare``: neither."""
    name = "authmilter" if workers == "auto" else f"authmilter-{workers}w"
    if bare:
        name += "-bare"
    sock = sockets / f"{name}.sock"
    cfg = _write(
        run_dir / f"{name}.toml",
        authmilter_config(
            rsa,
            ed,
            log_level=log_level,
            socket=str(sock),
            workers=workers,
            metrics_listen="" if bare else f"127.0.0.1:{free_port()}",  # on, as shipped
            # recording on, as shipped
            history="" if bare else f"sqlite:///{run_dir / name}-history.db",
        ),
    )
    env = {"PYTHONPATH": f"{REPO / 'milter'}"}
    version = subprocess.run(
        [
            python,
            "-c",
            "import authmilter, dkim, dns.version, sys; "
            "print(authmilter.__version__, 'python', sys.version.split()[0], 'dkimpy', "
            "getattr(dkim, '__version__', '?'), 'dnspython', dns.version.version)",
        ],
        capture_output=True,
        text=True,
        env={**os.environ, **env},
        timeout=30,
        check=False,
    ).stdout.strip()
    return MilterSpec(
        name,
        (python, "-m", "authmilter", "run", "-c", str(cfg)),
        str(sock),
        env,
        False,
        version or "?",
    )


def _opendkim_common(name: str, sock: Path) -> str:
    return (
        f"Socket local:{sock}\nAuthservID bench.opendkim\nNameservers {DNS_IP}\n"
        "Syslog no\nUMask 007\nMinimumKeyBits 1024\nAlwaysAddARHeader yes\n"
        "Canonicalization relaxed/relaxed\n"
    )


def _opendkim_verify(run_dir: Path, sockets: Path) -> MilterSpec:
    sock = sockets / "opendkim-verify.sock"
    cfg = _write(run_dir / "opendkim-verify.conf", _opendkim_common("verify", sock) + "Mode v\n")
    return MilterSpec(
        "opendkim-verify",
        ("opendkim", "-f", "-x", str(cfg)),
        str(sock),
        version=_pkg_version("opendkim"),
    )


def _opendkim_sign(run_dir: Path, sockets: Path, key: dict[str, str], suffix: str) -> MilterSpec:
    """opendkim's SignatureAlgorithm is global (an RSA key under ed25519-sha256 gives a bad
    signature labelled ed25519), so each algorithm gets its own instance and tables."""
    name = f"opendkim-sign{suffix}"
    sock = sockets / f"{name}.sock"
    kt = _write(run_dir / f"{name}.keytable", f"k {key['domain']}:{key['selector']}:{key['pem']}\n")
    st = _write(run_dir / f"{name}.signingtable", f"*@{key['domain']} k\n")
    hosts = _write(run_dir / "opendkim.internal", f"127.0.0.1\n{corpus.SUBMIT_IP}\n")
    cfg = _write(
        run_dir / f"{name}.conf",
        _opendkim_common("sign", sock) + f"Mode s\nKeyTable file:{kt}\nSigningTable refile:{st}\n"
        f"InternalHosts file:{hosts}\nOversignHeaders From\n"
        f"SignatureAlgorithm {key['algorithm']}\n",
    )
    return MilterSpec(
        name, ("opendkim", "-f", "-x", str(cfg)), str(sock), version=_pkg_version("opendkim")
    )


def _opendmarc(run_dir: Path, sockets: Path) -> MilterSpec:
    sock = sockets / "opendmarc.sock"
    ignore = _write(run_dir / "opendmarc.ignore", "192.0.2.254\n")
    cfg = _write(
        run_dir / "opendmarc.conf",
        f"""Socket local:{sock}
AuthservID bench.opendmarc
TrustedAuthservIDs bench.opendkim
PublicSuffixList /usr/share/publicsuffix/public_suffix_list.dat
SPFSelfValidate true
SPFIgnoreResults true
RejectFailures true
IgnoreHosts {ignore}
IgnoreAuthenticatedClients true
Syslog false
UMask 007
""",
    )
    return MilterSpec(
        "opendmarc",
        ("opendmarc", "-f", "-c", str(cfg)),
        str(sock),
        resolv_conf=True,
        version=_pkg_version("opendmarc"),
    )


def _dkimpy(
    run_dir: Path, sockets: Path, mode: str, key: dict[str, str] | None = None, suffix: str = ""
) -> MilterSpec:
    """dkimpy-milter looks every SigningTable key name up in both key tables (KeyError when
    one lacks it), so each algorithm gets its own instance, like opendkim."""
    name = f"dkimpy-{mode}{suffix}"
    sock = sockets / f"{name}.sock"
    text = (
        f"Socket local:{sock}\nAuthservID bench.dkimpy\nSyslog no\nUserID root\n"
        f"PidFile {run_dir / name}.pid\nMinimumKeyBits 1024\nUMask 007\n"
        "Canonicalization relaxed/relaxed\n"
    )
    if key is None:
        text += "Mode v\n"
    else:
        ed = key["algorithm"].startswith("ed")
        kt = _write(
            run_dir / f"{name}.keytable",
            f"k {key['domain']}:{key['selector']}:{key['seed' if ed else 'pem']}\n",
        )
        st = _write(run_dir / f"{name}.signingtable", f"*@{key['domain']} k\n")
        hosts = _write(run_dir / "dkimpy.internal", f"127.0.0.1\n{corpus.SUBMIT_IP}\n")
        text += (
            f"Mode s\n{'KeyTableEd25519' if ed else 'KeyTable'} {kt}\n"
            f"SigningTable refile:{st}\nInternalHosts {hosts}\n"
        )
    cfg = _write(run_dir / f"{name}.conf", text)
    pidfile = run_dir / f"{name}.pid"
    pidfile.unlink(missing_ok=True)
    return MilterSpec(
        name,
        ("/usr/bin/python3", "/usr/bin/dkimpy-milter", str(cfg)),
        str(sock),
        resolv_conf=True,
        version=_pkg_version("dkimpy-milter"),
    )


def _pyspf(run_dir: Path, sockets: Path) -> MilterSpec:
    sock = sockets / "pyspf.sock"
    pidfile = run_dir / "pyspf.pid"
    pidfile.unlink(missing_ok=True)
    cfg = _write(
        run_dir / "pyspf-milter.conf",
        f"""debugLevel = 0
TestOnly = 1
HELO_reject = False
Mail_From_reject = False
PermError_reject = False
TempError_Defer = False
Header_Type = AR
Authserv_Id = bench.pyspf
Socket = local:{sock}
PidFile = {pidfile}
UserID = root
InternalHosts = 127.0.0.1
Lookup_Time = 20
""",
    )
    return MilterSpec(
        "pyspf",
        ("/usr/bin/python3", "/usr/bin/pyspf-milter", str(cfg)),
        str(sock),
        resolv_conf=True,
        version=_pkg_version("pyspf-milter"),
    )


def _null(sockets: Path, python: str, *, floor: bool = False) -> MilterSpec:
    name = "floor" if floor else "null"
    sock = sockets / f"{name}.sock"
    return MilterSpec(
        name,
        (python, "-m", "bench.nullmilter", *(("--floor",) if floor else ()), f"unix:{sock}"),
        str(sock),
        {"PYTHONPATH": str(REPO)},
        version="bench/nullmilter.py" + (" --floor" if floor else ""),
    )


def have(binary: str) -> bool:
    """True when ``binary`` is on PATH (or an absolute path that exists)."""
    return shutil.which(binary) is not None or Path(binary).exists()


def python_default() -> str:
    """The Python that runs authmilter and the null milter: Debian's, like the package."""
    return "/usr/bin/python3" if Path("/usr/bin/python3").exists() else sys.executable
