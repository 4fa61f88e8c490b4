"""Run the real ``authmilter run`` daemon as a subprocess for integration tests.

::

    with AuthmilterDaemon(tmp_path, {"milter": {"authserv_id": "mx.test"},
                                     "dns": {"nameservers": [dns.address]}}) as d:
        MilterClient(d.socket).open()

The config is written as TOML (``milter.socket`` defaults to a socket in ``tmp_path``;
``metrics.listen`` to "", so that no two daemons want the shipped default port 9431;
``milter.workers`` to 1),
the daemon is started with ``PYTHONPATH=<repo>/milter``, and the runner polls until the
socket accepts connections. It is stopped with SIGTERM by its own PID (SIGKILL after a
timeout).
"""

from __future__ import annotations

import copy
import math
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from tests.support.service import Service

REPO = Path(__file__).resolve().parents[2]
SRC = REPO / "milter"


# --------------------------------------------------------------------------- TOML


def _toml_key(key: str) -> str:
    if key and all(c.isalnum() or c in "-_" for c in key):
        return key
    return _toml_value(key)


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value) or math.isinf(value):
            raise ValueError("NaN and infinities are not written")
        return repr(value)
    if isinstance(value, str):
        out = ['"']
        for ch in value:
            if ch in ('"', "\\"):
                out.append("\\" + ch)
            elif ch == "\n":
                out.append("\\n")
            elif ch == "\t":
                out.append("\\t")
            elif ord(ch) < 0x20 or ord(ch) == 0x7F:
                out.append(f"\\u{ord(ch):04x}")
            else:
                out.append(ch)
        out.append('"')
        return "".join(out)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, Mapping):
        return "{" + ", ".join(f"{_toml_key(k)} = {_toml_value(v)}" for k, v in value.items()) + "}"
    if isinstance(value, Path):
        return _toml_value(str(value))
    raise TypeError(f"cannot write {type(value).__name__} as TOML")


def _is_table_list(value: Any) -> bool:
    return (
        isinstance(value, list | tuple)
        and bool(value)
        and all(isinstance(v, Mapping) for v in value)
    )


def dump_toml(data: Mapping[str, Any]) -> str:
    """Nested dicts of str/int/float/bool/lists (and lists of tables) as TOML text."""
    lines: list[str] = []
    _dump_table(data, [], lines)
    return "\n".join(lines).lstrip("\n") + "\n"


def _dump_table(table: Mapping[str, Any], path: list[str], lines: list[str]) -> None:
    for key, value in table.items():
        if not isinstance(value, Mapping) and not _is_table_list(value):
            lines.append(f"{_toml_key(key)} = {_toml_value(value)}")
    for key, value in table.items():
        sub = [*path, _toml_key(key)]
        if isinstance(value, Mapping):
            lines.extend(["", f"[{'.'.join(sub)}]"])
            _dump_table(value, sub, lines)
        elif _is_table_list(value):
            for item in value:
                lines.extend(["", f"[[{'.'.join(sub)}]]"])
                _dump_table(item, sub, lines)


# --------------------------------------------------------------------------- daemon


def socket_accepts(spec: str, timeout: float = 0.5) -> bool:
    """True when a connection to ``unix:/path`` or ``inet:PORT@HOST`` succeeds."""
    kind, _, rest = spec.partition(":")
    try:
        if kind in ("unix", "local"):
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
                s.settimeout(timeout)
                s.connect(rest)
        else:
            port, _, host = rest.partition("@")
            with socket.create_connection(
                (host.strip("[]") or "127.0.0.1", int(port)), timeout=timeout
            ):
                pass
    except OSError:
        return False
    return True


def _deep_merge(base: dict[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
    for key, value in extra.items():
        if isinstance(value, Mapping) and isinstance(base.get(key), dict):
            _deep_merge(base[key], value)
        else:
            base[key] = copy.deepcopy(value)
    return base


class DaemonError(RuntimeError):
    """The daemon did not start or stop as expected (its log is in the message)."""


class AuthmilterDaemon(Service):
    """``authmilter run -c FILE`` as a subprocess with its own config and socket."""

    def __init__(
        self,
        tmp_path: str | Path,
        config: Mapping[str, Any] | None = None,
        *,
        command: Sequence[str] | None = None,
        start_timeout: float = 20.0,
        stop_timeout: float = 15.0,
        env: Mapping[str, str] | None = None,
    ) -> None:
        """``command`` replaces ``[python, -m, authmilter, run, -c, CONFIG]`` (``{config}``
        and ``{socket}`` in its items are substituted); used to self-test with a stand-in."""
        self.dir = Path(tmp_path)
        self.dir.mkdir(parents=True, exist_ok=True)
        # One worker unless a test asks for more (the shipped default is "auto"): tests
        # signal, count and read the log of the one process they started.
        default = {
            "milter": {"socket": f"unix:{self.dir / 'authmilter.sock'}", "workers": 1},
            "metrics": {"listen": ""},
            # nothing recorded unless a test asks (never the packaged /var/lib path)
            "reports": {"history": ""},
        }
        self.config: dict[str, Any] = _deep_merge(default, config or {})
        self.config_path = self.dir / "authmilter.toml"
        self.socket: str = self.config["milter"]["socket"]
        self._command = list(command) if command else None
        self._start_timeout = start_timeout
        self._stop_timeout = stop_timeout
        self._env = dict(env or {})
        self._log_path = self.dir / "authmilter.stderr"
        self._log_file: Any = None
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def socket_path(self) -> Path | None:
        """The filesystem path of a unix socket (None for inet)."""
        kind, _, rest = self.socket.partition(":")
        return Path(rest) if kind in ("unix", "local") else None

    @property
    def pid(self) -> int:
        """The daemon's process id."""
        if self.proc is None:
            raise DaemonError("daemon not started")
        return self.proc.pid

    def write_config(self, config: Mapping[str, Any] | None = None) -> Path:
        """(Re)write the TOML config, optionally merging ``config`` into it first."""
        if config:
            _deep_merge(self.config, config)
        self.config_path.write_text(dump_toml(self.config), encoding="utf-8")
        return self.config_path

    def argv(self) -> list[str]:
        """The command line that starts the daemon."""
        if self._command is None:
            return [sys.executable, "-m", "authmilter", "run", "-c", str(self.config_path)]
        return [a.format(config=self.config_path, socket=self.socket) for a in self._command]

    def start(self) -> AuthmilterDaemon:
        """Write the config, start the process, wait until the socket accepts connections."""
        self.write_config()
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(
            [str(SRC), str(REPO), *filter(None, [env.get("PYTHONPATH", "")])]
        )
        env.update(self._env)
        self._log_file = self._log_path.open("ab")
        self.proc = subprocess.Popen(
            self.argv(),
            stdin=subprocess.DEVNULL,
            stdout=self._log_file,
            stderr=self._log_file,
            env=env,
            cwd=str(self.dir),
        )
        self.wait_ready()
        return self

    def wait_ready(self, timeout: float | None = None) -> None:
        """Poll until the socket accepts a connection; raise with the log if it died."""
        deadline = time.monotonic() + (self._start_timeout if timeout is None else timeout)
        delay = 0.02
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise DaemonError(f"daemon exited with {self.proc.returncode}:\n{self.log()}")
            if socket_accepts(self.socket):
                return
            time.sleep(delay)
            delay = min(delay * 1.5, 0.2)
        raise DaemonError(f"daemon socket {self.socket} not ready:\n{self.log()}")

    def log(self) -> str:
        """Everything the daemon wrote to stderr/stdout so far."""
        if self._log_file is not None:
            self._log_file.flush()
        try:
            return self._log_path.read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return ""

    def wait_for_log(self, text: str, timeout: float = 10.0) -> str:
        """Poll the log until ``text`` appears; return the log."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            log = self.log()
            if text in log:
                return log
            if self.proc is not None and self.proc.poll() is not None:
                break
            time.sleep(0.05)
        raise DaemonError(f"{text!r} not in the daemon log:\n{self.log()}")

    def reload(self) -> None:
        """SIGUSR1: rebuild the engine from the (re-written) config file."""
        self.signal(signal.SIGUSR1)

    def signal(self, sig: int) -> None:
        """Send a signal to the daemon (by its PID)."""
        if self.proc is None or self.proc.poll() is not None:
            raise DaemonError("daemon is not running")
        os.kill(self.proc.pid, sig)

    def running(self) -> bool:
        """True while the process has not exited."""
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout: float | None = None) -> int | None:
        """SIGTERM, wait, SIGKILL after the timeout; return the exit status."""
        if self.proc is None:
            return None
        limit = self._stop_timeout if timeout is None else timeout
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(limit)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None
        return self.proc.returncode
