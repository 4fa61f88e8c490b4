"""A private, throw-away Postfix instance (Debian's real ``postfix``) for end-to-end tests.

It writes its own config directory (main.cf + master.cf, nothing chrooted), its own queue
and data directories, listens on free loopback ports (an inbound smtpd and a submission
smtpd with ``milter_macro_daemon_name=ORIGINATING``), relays everything to an SMTP sink on
loopback and logs to its own ``maillog``. It must run as root (``postfix -c DIR start``)
and never touches ``/etc/postfix/main.cf`` or another instance::

    with SmtpSink() as sink, PostfixInstance(base, milter=daemon.socket,
                                             sink_port=sink.port) as pf:
        smtplib.SMTP("127.0.0.1", pf.port).sendmail(...)

SASL for the submission port: a :class:`~tests.support.saslauth.FakeDovecotAuth` socket
(``sasl_users={"alice": "pw"}``), so Postfix hands the milter a real ``{auth_authen}``;
the port then refuses unauthenticated clients (``require_sasl``), as the README's
submission service does. Local submission: :meth:`PostfixInstance.sendmail` runs the real
``sendmail`` into this instance (pickup, cleanup, ``non_smtpd_milters``);
``local_daemon_name`` gives pickup its own cleanup service with that
``milter_macro_daemon_name``, as the README shows. Every directory it uses must be
traversable by the ``postfix`` user (see :func:`make_shared_dir`).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Mapping
from pathlib import Path

from tests.support.saslauth import FakeDovecotAuth
from tests.support.service import Service

POSTFIX = "/usr/sbin/postfix"
_SERVICES = """\
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
proxywrite unix -       -       n       -       1       proxymap
smtp      unix  -       -       n       -       -       smtp
relay     unix  -       -       n       -       -       smtp
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
local     unix  -       n       n       -       -       local
virtual   unix  -       n       n       -       -       virtual
lmtp      unix  -       -       n       -       -       lmtp
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
"""


class PostfixError(RuntimeError):
    """Postfix did not start or stop; the message carries its output and maillog."""


def postfix_available() -> str | None:
    """None when a private Postfix can run here, else the reason it cannot."""
    if not Path(POSTFIX).exists():
        return "postfix is not installed"
    if os.geteuid() != 0:
        return "a private Postfix instance must be started as root"
    try:
        import pwd

        pwd.getpwnam("postfix")
    except KeyError:
        return "there is no postfix user"
    return None


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def make_shared_dir(prefix: str = "authmilter-e2e-") -> Path:
    """A fresh directory under /tmp that the ``postfix`` user can traverse (mode 0755)."""
    path = Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))
    path.chmod(0o755)
    return path


class PostfixInstance(Service):
    """Context manager: configure, start, and stop one private Postfix."""

    def __init__(
        self,
        tmp_dir: str | Path,
        milter: str | None,
        sink_port: int,
        *,
        extra_main_cf: Mapping[str, str] | None = None,
        mynetworks: str = "127.0.0.0/8",
        submission: bool = True,
        sasl_users: Mapping[str, str] | None = None,
        require_sasl: bool = True,
        local_daemon_name: str = "",
        hostname: str = "mx.test.example",
        start_timeout: float = 30.0,
        listeners: Callable[[PostfixInstance], str] | None = None,
    ) -> None:
        """``milter``: ``unix:/path`` or ``inet:PORT@HOST`` (None: no milter).

        ``mynetworks`` "" keeps loopback out of mynetworks (inbound-like clients).
        ``listeners``: the master.cf text of the SMTP services, given this instance (its
        ``port``, ``submission_port`` and ``dir``), instead of the built-in smtpd and
        submission lines; it must listen on ``port`` (and ``submission_port``).
        """
        self.dir = Path(tmp_dir) / f"postfix-{os.getpid()}-{free_port()}"
        self.config_dir = self.dir / "etc"
        self.queue_dir = self.dir / "queue"
        self.data_dir = self.dir / "data"
        self.maillog_path = self.dir / "maillog"
        self.milter = milter
        self.sink_port = sink_port
        self.extra_main_cf = dict(extra_main_cf or {})
        self.mynetworks = mynetworks
        self.submission = submission
        self.sasl_users = dict(sasl_users or {})
        self.require_sasl = require_sasl
        self.local_daemon_name = local_daemon_name
        self.hostname = hostname
        self.start_timeout = start_timeout
        self.listeners = listeners
        self.port = free_port()
        self.submission_port = free_port() if submission else 0
        self.syslog_name = f"postfix-test-{self.port}"
        self.sasl: FakeDovecotAuth | None = None
        self._master_pid: int | None = None

    # ------------------------------------------------------------------ config

    def main_cf(self) -> dict[str, str]:
        """The main.cf parameters that will be written."""
        params = {
            "compatibility_level": "3.6",
            "config_directory": str(self.config_dir),
            "queue_directory": str(self.queue_dir),
            "data_directory": str(self.data_dir),
            "mail_owner": "postfix",
            "setgid_group": "postdrop",
            "syslog_name": self.syslog_name,
            "maillog_file": str(self.maillog_path),
            "maillog_file_prefixes": str(self.dir),
            "myhostname": self.hostname,
            "mydomain": "test.example",
            "myorigin": "$myhostname",
            "mydestination": "",
            "local_recipient_maps": "",
            "alias_maps": "",
            "alias_database": "",
            "relay_domains": "",
            "inet_interfaces": "127.0.0.1",
            "inet_protocols": "ipv4",
            "mynetworks": self.mynetworks,
            "relayhost": f"[127.0.0.1]:{self.sink_port}",
            "smtp_dns_support_level": "disabled",
            # anything relays (static:OK); reject_unauth_destination only satisfies smtpd
            "smtpd_relay_restrictions": "check_client_access static:OK, reject_unauth_destination",
            "smtpd_recipient_restrictions": "",
            "smtpd_client_restrictions": "",
            "smtpd_tls_security_level": "none",
            "smtp_tls_security_level": "none",
            "smtpd_sasl_auth_enable": "no",
            "biff": "no",
            "append_dot_mydomain": "no",
            "smtputf8_enable": "no",
            "minimal_backoff_time": "2s",
            "maximal_backoff_time": "4s",
            "queue_run_delay": "2s",
            "milter_default_action": "tempfail",
            "milter_protocol": "6",
            "milter_connect_timeout": "5s",
            "milter_command_timeout": "30s",
            "milter_content_timeout": "60s",
            "import_environment": "MAIL_CONFIG MAIL_DEBUG MAIL_LOGTAG TZ LANG=C",
        }
        if self.milter:
            params["smtpd_milters"] = self.milter
            params["non_smtpd_milters"] = self.milter
        params.update(self.extra_main_cf)
        return params

    def master_cf(self) -> str:
        """The master.cf text: our smtpd ports plus the standard services, none chrooted."""
        lines = [f"127.0.0.1:{self.port} inet n - n - - smtpd"]
        if self.listeners is not None:
            lines = [self.listeners(self).rstrip("\n")]
        elif self.submission:
            lines.append(f"127.0.0.1:{self.submission_port} inet n - n - - smtpd")
            opts = {
                "syslog_name": f"{self.syslog_name}/submission",
                "milter_macro_daemon_name": "ORIGINATING",
            }
            if self.sasl_users:
                opts.update(
                    {
                        "smtpd_sasl_auth_enable": "yes",
                        "smtpd_sasl_type": "dovecot",
                        "smtpd_sasl_path": str(self.dir / "auth"),
                        "smtpd_sasl_security_options": "noanonymous",
                        "smtpd_tls_auth_only": "no",
                    }
                )
                if self.require_sasl:
                    only_sasl = "permit_sasl_authenticated,reject"
                    opts["smtpd_client_restrictions"] = only_sasl
                    opts["smtpd_relay_restrictions"] = only_sasl
            lines.extend(f"  -o {k}={v}" for k, v in opts.items())
        services = _SERVICES
        if self.local_daemon_name:
            pickup = next(x for x in services.splitlines() if x.startswith("pickup "))
            services = services.replace(
                pickup,
                f"{pickup}\n  -o cleanup_service_name=pickup-cleanup\n"
                "pickup-cleanup unix n - n - 0 cleanup\n"
                f"  -o milter_macro_daemon_name={self.local_daemon_name}",
            )
        return "\n".join(lines) + "\n" + services

    def write_config(self) -> None:
        """Create the directories and write main.cf and master.cf."""
        for d in (self.dir, self.config_dir, self.queue_dir):
            d.mkdir(parents=True, exist_ok=True)
            d.chmod(0o755)
        main = "".join(f"{k} = {v}\n" for k, v in self.main_cf().items())
        (self.config_dir / "main.cf").write_text(main, encoding="utf-8")
        (self.config_dir / "master.cf").write_text(self.master_cf(), encoding="utf-8")

    # ------------------------------------------------------------------ life cycle

    def _postfix(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(
            [POSTFIX, "-c", str(self.config_dir), *args],
            capture_output=True,
            text=True,
            env=_environment(),
            timeout=60,
            check=False,
        )
        if check and proc.returncode != 0:
            raise PostfixError(
                f"postfix {' '.join(args)} exited {proc.returncode}:\n{proc.stdout}"
                f"{proc.stderr}\n{self.maillog()}"
            )
        return proc

    def start(self) -> PostfixInstance:
        """Write the config, start master, wait until the smtpd port accepts connections."""
        reason = postfix_available()
        if reason:
            raise PostfixError(reason)
        self.write_config()
        if self.sasl_users:
            self.sasl = FakeDovecotAuth(self.dir / "auth", self.sasl_users).start()
        self._postfix("start")
        deadline = time.monotonic() + self.start_timeout
        ports = [self.port] + ([self.submission_port] if self.submission else [])
        while time.monotonic() < deadline:
            if all(_accepts(p) for p in ports) and self.master_pid() is not None:
                self._master_pid = self.master_pid()
                return self
            if "fatal:" in self.maillog():
                break
            time.sleep(0.1)
        self.stop()
        raise PostfixError(f"postfix did not open its ports:\n{self.maillog()}")

    def sendmail(self, mail_from: str, rcpts: list[str], data: bytes) -> None:
        """Submit a message with the real ``sendmail`` (as root) into this instance."""
        subprocess.run(
            ["/usr/sbin/sendmail", "-C", str(self.config_dir), "-i", "-f", mail_from, "--", *rcpts],
            input=data,
            capture_output=True,
            env=_environment(),
            timeout=60,
            check=True,
        )

    def master_pid(self) -> int | None:
        """The master process id from its pid file (None when not running)."""
        try:
            pid = int((self.queue_dir / "pid" / "master.pid").read_text().strip())
        except (OSError, ValueError):
            return None
        return pid if _alive(pid) else None

    def stop(self, timeout: float = 30.0) -> None:
        """``postfix stop`` and wait until master is gone; stop the SASL stand-in."""
        pid = self._master_pid or self.master_pid()
        if pid is not None:
            self._postfix("stop", check=False)
            deadline = time.monotonic() + timeout
            while _alive(pid) and time.monotonic() < deadline:
                time.sleep(0.1)
            if _alive(pid):
                self._postfix("abort", check=False)
                deadline = time.monotonic() + 10
                while _alive(pid) and time.monotonic() < deadline:
                    time.sleep(0.1)
        self._master_pid = None
        if self.sasl is not None:
            self.sasl.stop()
            self.sasl = None

    def maillog(self) -> str:
        """The instance's log so far."""
        try:
            return self.maillog_path.read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return ""

    def wait_for_log(self, text: str, timeout: float = 30.0) -> str:
        """Poll the maillog until ``text`` appears; return the log."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            log = self.maillog()
            if text in log:
                return log
            time.sleep(0.1)
        raise PostfixError(f"{text!r} not in the maillog:\n{self.maillog()}")

    def postqueue(self) -> str:
        """``postqueue -p`` output for this instance (what is still queued)."""
        proc = subprocess.run(
            ["/usr/sbin/postqueue", "-c", str(self.config_dir), "-p"],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        return proc.stdout + proc.stderr

    def cleanup(self) -> None:
        """Remove the instance directory (after stop)."""
        shutil.rmtree(self.dir, ignore_errors=True)


def _environment() -> dict[str, str]:
    """Ours, without MAIL_CONFIG and friends (``-c``/``-C`` name the instance)."""
    return {k: v for k, v in os.environ.items() if not k.startswith("MAIL_")}


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # a zombie is gone for our purposes
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1][:1]
    except (OSError, IndexError):
        return False
    return state != "Z"


def _accepts(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
            s.settimeout(2)
            return s.recv(4).startswith(b"220")
    except OSError:
        return False
