"""A private PostgreSQL cluster for the tests: ``initdb`` + ``pg_ctl`` in a temp dir.

The server listens only on a unix socket in its own temp dir (no TCP), with trust auth. It
runs as the current user, or as ``nobody`` when the tests run as root (initdb refuses root).
Stopped by its postmaster PID. ``database()`` creates a fresh database and returns its DSN.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any, Self

from tests.support.service import Service

PG_BIN = Path("/usr/lib/postgresql/15/bin")
PORT = 5432  # only names the socket file: the server opens no TCP port


def postgres_available() -> str | None:
    """None when a private cluster can be started, else why not (a skip reason)."""
    if not (PG_BIN / "initdb").exists():
        return f"PostgreSQL server binaries not found in {PG_BIN} (Debian: postgresql-15)"
    try:
        import psycopg  # noqa: F401
    except ImportError:
        return "psycopg 3 is not installed (Debian: python3-psycopg)"
    if os.geteuid() == 0:
        try:
            pwd.getpwnam("nobody")
        except KeyError:
            return "running as root and there is no 'nobody' user to run initdb as"
    return None


class PostgresCluster(Service):
    """One private cluster; ``dsn(db)`` connects over its unix socket."""

    def __init__(self, *, fsync: bool = False) -> None:
        self.fsync = fsync
        self.dir = Path(tempfile.mkdtemp(prefix="authmilter-pg-"))
        self.data = self.dir / "data"
        self.pid: int | None = None
        self.user = pwd.getpwuid(os.geteuid()).pw_name
        self._as: dict[str, Any] = {}
        if os.geteuid() == 0:
            entry = pwd.getpwnam("nobody")
            self.user = "nobody"
            self._as = {"user": entry.pw_uid, "group": entry.pw_gid, "extra_groups": []}
            os.chown(self.dir, entry.pw_uid, entry.pw_gid)

    def _run(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            args, capture_output=True, text=True, check=False, cwd=self.dir, **self._as
        )

    def start(self) -> Self:
        """initdb (the first time), then start and wait until it accepts connections."""
        if not self.data.exists():
            self._initdb()
        options = (
            f"-c listen_addresses='' -k {self.dir} -p {PORT} "
            f"-c fsync={'on' if self.fsync else 'off'} -c max_connections=50"
        )
        done = self._run(
            str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-l", str(self.dir / "log"),
            "-o", options, "-w", "-t", "60", "start",
        )  # fmt: skip
        if done.returncode:
            raise RuntimeError(f"pg_ctl start failed: {done.stderr.strip()} {self.log()}")
        self.pid = int((self.data / "postmaster.pid").read_text().split()[0])
        return self

    def _initdb(self) -> None:
        done = self._run(
            str(PG_BIN / "initdb"), "-D", str(self.data), "-A", "trust", "-U", self.user,
            "--no-sync", "-E", "UTF8", "--locale=C",
        )  # fmt: skip
        if done.returncode:
            raise RuntimeError(f"initdb failed: {done.stderr.strip()}")

    def dsn(self, database: str = "postgres") -> str:
        """A libpq URI reaching ``database`` over the unix socket."""
        return f"postgresql://{self.user}@/{database}?host={self.dir}&port={PORT}"

    def database(self) -> str:
        """Create a fresh database; its DSN."""
        import psycopg

        name = "t" + uuid.uuid4().hex[:12]
        with psycopg.connect(self.dsn(), autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {name}")
        return self.dsn(name)

    def log(self) -> str:
        """The server log (for failure messages)."""
        path = self.dir / "log"
        return path.read_text(errors="replace")[-2000:] if path.exists() else ""

    def stop(self) -> None:
        """Halt the server and remove its directory."""
        self.halt()
        shutil.rmtree(self.dir, ignore_errors=True)

    def halt(self) -> None:
        """Fast shutdown by PID and wait (bounded) for it to go; ``start()`` starts it again."""
        if self.pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGINT)
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline and _alive(self.pid):
                time.sleep(0.05)
            if _alive(self.pid):
                os.kill(self.pid, signal.SIGKILL)
            self.pid = None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie is gone for our purposes (pg_ctl's child, reaped by init)
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"
