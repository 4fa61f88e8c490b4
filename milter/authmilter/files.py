"""Reading the files the config names, with errors that name the file and the problem.

Errors never quote a file's content: a path mistyped as ``/etc/shadow`` must not put a line
of it into the log.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import BinaryIO

from authmilter.errors import ConfigError

MAX_SIZE = 64 << 20  # no config file, table, key, zone or list is read past this


def open_regular(path: str | Path, what: str) -> tuple[BinaryIO, os.stat_result]:
    """Open a regular file for reading; its stat taken from the open descriptor."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except FileNotFoundError:
        raise ConfigError(f"{path}: {what} does not exist") from None
    except PermissionError:
        raise ConfigError(f"{path}: {what} is not readable (permission denied)") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot open {what}: {exc.strerror}") from None
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        os.close(fd)
        kind = "a directory" if stat.S_ISDIR(st.st_mode) else "not a regular file"
        raise ConfigError(f"{path}: {what} is {kind}")
    return os.fdopen(fd, "rb"), st


def read_bytes(path: str | Path, what: str) -> bytes:
    """The whole file (at most :data:`MAX_SIZE` bytes)."""
    fh, _ = open_regular(path, what)
    with fh:
        try:
            data = fh.read(MAX_SIZE + 1)
        except OSError as exc:
            raise ConfigError(f"{path}: cannot read {what}: {exc.strerror}") from None
    if len(data) > MAX_SIZE:
        raise ConfigError(f"{path}: {what} is larger than {MAX_SIZE >> 20} MB")
    return data


def read_text(path: str | Path, what: str) -> str:
    """The whole file as UTF-8 text."""
    data = read_bytes(path, what)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise ConfigError(f"{path}:{line}: {what} is not UTF-8 text") from None
