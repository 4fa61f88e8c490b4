"""The milters under test: how each is configured, started and pointed at the bench DNS.

DNS: the bench DNS server listens on ``DNS_IP`` port 53 (a loopback address of its own), so
every milter can reach it without a port number. opendkim and authmilter are told so in
their config (``Nameservers``, ``dns.nameservers``); opendmarc (libresolv and libspf2),
dkimpy-milter and pyspf-milter (dnspython's default resolver) only read /etc/resolv.conf, so
they run in a private mount namespace with a bind-mounted resolv.conf (:func:`with_resolv_conf`);
the host's /etc/resolv.conf is never changed.

Targets are chains of milters, as in ``smtpd_milters = a, b``: see :mod:`bench.loadgen`.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
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


# Targets: name -> chain of milter names, and what they are compared on.
INBOUND_TARGETS: dict[str, tuple[str, ...]] = {
    "authmilter": ("authmilter",),
    "authmilter-2w": ("authmilter-2w",),  # milter.workers = 2: both cores
    "opendkim": ("opendkim-verify",),
    "opendmarc": ("opendmarc",),
    "opendkim+opendmarc": ("opendkim-verify", "opendmarc"),
    "dkimpy-milter": ("dkimpy-verify",),
    "pyspf-milter": ("pyspf",),
    "null": ("null",),
}
SIGN_TARGETS: dict[str, tuple[str, ...]] = {
    "authmilter": ("authmilter",),
    "authmilter-2w": ("authmilter-2w",),
    "opendkim": ("opendkim-sign",),
    "dkimpy-milter": ("dkimpy-sign",),
    "null": ("null",),
}
SIGN_ED_TARGETS = {
    **SIGN_TARGETS,
    "opendkim": ("opendkim-sign-ed",),
    "dkimpy-milter": ("dkimpy-sign-ed",),
}


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
    run_dir: Path, manifest: dict[str, Any], python: str, log_level: str = "info"
) -> dict[str, MilterSpec]:
    """Write every config file into ``run_dir``; return the milter specs by name."""
    run_dir.mkdir(parents=True, exist_ok=True)
    _write(run_dir / "resolv.conf", f"nameserver {DNS_IP}\noptions timeout:5 attempts:1\n")
    keys = _keys(manifest)
    rsa = keys[(corpus.SIGN_RSA_DOMAIN, corpus.RSA_SELECTOR)]
    ed = keys[(corpus.SIGN_ED_DOMAIN, corpus.ED_SELECTOR)]
    specs = [
        _authmilter(run_dir, python, rsa, ed, log_level),
        _authmilter(run_dir, python, rsa, ed, log_level, workers=2),
        _opendkim_verify(run_dir),
        _opendkim_sign(run_dir, rsa, ""),
        _opendkim_sign(run_dir, ed, "-ed"),
        _opendmarc(run_dir),
        _dkimpy(run_dir, "verify"),
        _dkimpy(run_dir, "sign", rsa),
        _dkimpy(run_dir, "sign", ed, "-ed"),
        _pyspf(run_dir),
        _null(run_dir, python),
    ]
    return {s.name: s for s in specs}


def authmilter_config(
    rsa: dict[str, str],
    ed: dict[str, str],
    *,
    log_level: str,
    socket: str,
    internal: tuple[str, ...] = (),
    workers: int = 1,
    history: str = "",
) -> str:
    """authmilter's TOML: bench DNS, nothing internal by address, two signing keys;
    ``history``: reports.history ("" = no recording)."""
    internal_list = ", ".join(f'"{n}"' for n in internal)
    return f"""# written by bench/milters.py
[milter]
socket = "unix:{socket}"
authserv_id = "bench.authmilter"
workers = {workers}
log_level = "{log_level}"
log_target = "stderr"

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
    python: str,
    rsa: dict[str, str],
    ed: dict[str, str],
    log_level: str,
    *,
    workers: int = 1,
) -> MilterSpec:
    name = "authmilter" if workers == 1 else f"authmilter-{workers}w"
    sock = run_dir / f"{name}.sock"
    cfg = _write(
        run_dir / f"{name}.toml",
        authmilter_config(rsa, ed, log_level=log_level, socket=str(sock), workers=workers),
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


def _opendkim_verify(run_dir: Path) -> MilterSpec:
    sock = run_dir / "opendkim-verify.sock"
    cfg = _write(run_dir / "opendkim-verify.conf", _opendkim_common("verify", sock) + "Mode v\n")
    return MilterSpec(
        "opendkim-verify",
        ("opendkim", "-f", "-x", str(cfg)),
        str(sock),
        version=_pkg_version("opendkim"),
    )


def _opendkim_sign(run_dir: Path, key: dict[str, str], suffix: str) -> MilterSpec:
    """opendkim's SignatureAlgorithm is global (an RSA key under ed25519-sha256 gives a bad
    signature labelled ed25519), so each algorithm gets its own instance and tables."""
    name = f"opendkim-sign{suffix}"
    sock = run_dir / f"{name}.sock"
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


def _opendmarc(run_dir: Path) -> MilterSpec:
    sock = run_dir / "opendmarc.sock"
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
    run_dir: Path, mode: str, key: dict[str, str] | None = None, suffix: str = ""
) -> MilterSpec:
    """dkimpy-milter looks every SigningTable key name up in both key tables (KeyError when
    one lacks it), so each algorithm gets its own instance, like opendkim."""
    name = f"dkimpy-{mode}{suffix}"
    sock = run_dir / f"{name}.sock"
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


def _pyspf(run_dir: Path) -> MilterSpec:
    sock = run_dir / "pyspf.sock"
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


def _null(run_dir: Path, python: str) -> MilterSpec:
    sock = run_dir / "null.sock"
    return MilterSpec(
        "null",
        (python, "-m", "bench.nullmilter", f"unix:{sock}"),
        str(sock),
        {"PYTHONPATH": str(REPO)},
        version="bench/nullmilter.py",
    )


def have(binary: str) -> bool:
    """True when ``binary`` is on PATH (or an absolute path that exists)."""
    return shutil.which(binary) is not None or Path(binary).exists()


def python_default() -> str:
    """The Python that runs authmilter and the null milter: Debian's, like the package."""
    return "/usr/bin/python3" if Path("/usr/bin/python3").exists() else sys.executable
