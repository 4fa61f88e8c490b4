"""Processes the harness starts: each one by its PID, stopped on exit, error or Ctrl-C."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import IO


class ProcError(RuntimeError):
    """A process did not start or become ready (its log tail is in the message)."""


def _log_tail(path: Path, n: int = 25) -> str:
    try:
        lines = path.read_text(errors="replace").splitlines()
    except FileNotFoundError:
        return "(no log)"
    return "\n".join(lines[-n:])


def unix_accepts(path: str, timeout: float = 0.5) -> bool:
    """True when a unix stream socket at ``path`` accepts a connection."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(timeout)
        try:
            s.connect(path)
        except OSError:
            return False
    return True


def with_resolv_conf(resolv_conf: Path, argv: Sequence[str]) -> list[str]:
    """Run ``argv`` in a private mount namespace where /etc/resolv.conf is ``resolv_conf``.

    The host file is not touched; ``unshare`` and ``sh`` exec, so the PID stays the same.
    """
    script = f'mount --bind "{resolv_conf}" /etc/resolv.conf && exec "$@"'
    return ["unshare", "--mount", "--propagation", "private", "sh", "-c", script, "sh", *argv]


class Proc:
    """One child process with its output in a log file."""

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        log: Path,
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
    ) -> None:
        self.name = name
        self.argv = list(argv)
        self.log = log
        self.env = dict(env) if env is not None else None
        self.cwd = cwd
        self.popen: subprocess.Popen[bytes] | None = None
        self._fh: IO[bytes] | None = None

    @property
    def pid(self) -> int:
        """The process id (ProcError if not started)."""
        if self.popen is None:
            raise ProcError(f"{self.name} not started")
        return self.popen.pid

    def start(self) -> Proc:
        """Start it (stdin closed, stdout and stderr to the log)."""
        self.log.parent.mkdir(parents=True, exist_ok=True)
        self._fh = self.log.open("ab")
        self.popen = subprocess.Popen(
            self.argv,
            stdin=subprocess.DEVNULL,
            stdout=self._fh,
            stderr=subprocess.STDOUT,
            env=self.env,
            cwd=self.cwd,
        )
        return self

    def alive(self) -> bool:
        """True while it has not exited."""
        return self.popen is not None and self.popen.poll() is None

    def wait_unix_socket(self, path: str, timeout: float = 30.0) -> None:
        """Poll until the socket accepts connections; ProcError if it dies or times out."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.alive():
                raise ProcError(f"{self.name} exited ({self._rc()}):\n{_log_tail(self.log)}")
            if unix_accepts(path):
                return
            time.sleep(0.05)
        raise ProcError(f"{self.name}: {path} not ready after {timeout} s:\n{_log_tail(self.log)}")

    def _rc(self) -> int | None:
        return self.popen.returncode if self.popen is not None else None

    def stop(self, timeout: float = 10.0) -> int | None:
        """SIGTERM by PID, wait, SIGKILL after ``timeout``; return the exit status."""
        if self.popen is None:
            return None
        if self.popen.poll() is None:
            try:
                os.kill(self.popen.pid, signal.SIGTERM)
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                os.kill(self.popen.pid, signal.SIGKILL)
                self.popen.wait(5)
            except ProcessLookupError:
                pass
        if self._fh is not None:
            self._fh.close()
            self._fh = None
        return self.popen.returncode


class ProcGroup:
    """Processes stopped in reverse start order when the block ends (also on error)."""

    def __init__(self) -> None:
        self.procs: list[Proc] = []

    def add(self, proc: Proc) -> Proc:
        """Start ``proc`` and remember it."""
        self.procs.append(proc)
        return proc.start()

    def stop_all(self) -> None:
        """Stop every process, last started first."""
        while self.procs:
            self.procs.pop().stop()

    def __enter__(self) -> ProcGroup:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop_all()
