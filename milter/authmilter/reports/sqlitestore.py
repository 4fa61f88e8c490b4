"""The SQLite history store (``reports.history = "sqlite:///PATH"``, one host).

The database file is created on first use by whoever opens it (the daemon, as its own user);
its directory must exist. WAL mode lets ``authmilter report`` read while the daemon writes;
writers wait up to :data:`BUSY_TIMEOUT_MS` for the write lock.

Claims (exactly once on one host): a claim is a POSIX byte-range lock (``fcntl.lockf``) on
``PATH.claims``, at an offset derived from (domain, begin, end), plus an in-process set so
that two threads of one process exclude each other too (POSIX locks are per process). The
kernel drops the lock when the holder exits or is killed, so a dead run never blocks the
next one. While the claim is held the report is sent; no database transaction is open, so
the daemon keeps writing rows meanwhile. At a clean exit the outcome is written in one short
``BEGIN IMMEDIATE`` transaction *while the lock is still held*; a run that dies before that
commit leaves no mark and the next run sends again with the same report id (the receiver
de-duplicates by id). A second run that finds the lock held gets None, and one that takes the
lock after the mark was committed reads the mark and gets None: one send per report.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import os
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

from authmilter.errors import ConfigError
from authmilter.reports.sqlstore import SqlStore, StoreError

BUSY_TIMEOUT_MS = 10000  # how long a writer waits for SQLite's write lock

_held: set[tuple[str, str]] = set()  # claims held by this process's threads
_held_lock = threading.Lock()
_lock_fds: dict[str, int] = {}  # one fd per lock file per process (closing any fd drops locks)


def sqlite_path(dsn: str) -> Path:
    """The database file of ``sqlite:///PATH``; ConfigError when its directory is missing."""
    raw = dsn.removeprefix("sqlite://")
    path = Path("/" + raw.lstrip("/") if raw.startswith("/") else raw)  # sqlite:////x: /x
    if not path.is_absolute() or path.name == "":
        raise ConfigError(f"reports.history: {dsn!r}: the path must be absolute (sqlite:///PATH)")
    if not path.parent.is_dir():
        raise ConfigError(f"reports.history: directory {str(path.parent)!r} does not exist")
    return path


class SqliteStore(SqlStore):
    """History in one SQLite file."""

    def __init__(self, path: Path, host: str = "") -> None:
        super().__init__(host)
        self.path = path
        self._conn: sqlite3.Connection | None = None

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            # Switching a new file to WAL takes an exclusive lock and SQLite may answer
            # "database is locked" at once, without its busy handler (two workers starting
            # together): retry within the busy timeout.
            deadline = time.monotonic() + BUSY_TIMEOUT_MS / 1000
            while True:
                try:
                    self._conn = self._open()
                    break
                except sqlite3.OperationalError as exc:
                    if "locked" not in str(exc) or time.monotonic() > deadline:
                        raise StoreError(f"history {self.path}: {exc}") from None
                    time.sleep(0.05)
                except sqlite3.Error as exc:
                    raise StoreError(f"history {self.path}: {exc}") from None
        return self._conn

    def _open(self) -> sqlite3.Connection:
        conn = sqlite3.connect(
            self.path,
            timeout=BUSY_TIMEOUT_MS / 1000,
            isolation_level=None,
            check_same_thread=False,
        )
        try:
            conn.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
        except sqlite3.Error:
            conn.close()
            raise
        return conn

    @contextmanager
    def _transaction(self, *, write: bool) -> Iterator[Any]:
        conn = self._connection()
        try:
            cur = conn.cursor()
            cur.execute("BEGIN IMMEDIATE" if write else "BEGIN")
        except sqlite3.Error as exc:
            self.close()
            raise StoreError(f"history {self.path}: {exc}") from None
        try:
            yield cur
            conn.execute("COMMIT")
        except BaseException as exc:
            try:
                conn.execute("ROLLBACK")
            except sqlite3.Error:
                self.close()
            if isinstance(exc, sqlite3.Error):
                raise StoreError(f"history {self.path}: {exc}") from None
            raise

    @contextmanager
    def _hold(self, domain: str, begin: int, end: int) -> Iterator[Any]:
        key = f"{domain}\0{begin}\0{end}"
        with _claim_lock(f"{self.path}.claims", key) as got:
            if not got:
                yield None
                return
            # Not in a transaction: the status read and the mark are short statements.
            yield _MarkCursor(self)

    def close(self) -> None:
        """Release the connection (reopened on next use)."""
        if self._conn is not None:
            conn, self._conn = self._conn, None
            with suppress(sqlite3.Error):
                conn.close()


class _MarkCursor:
    """The cursor a claim uses: each statement in its own short write transaction."""

    def __init__(self, store: SqliteStore) -> None:
        self._store = store
        self._rows: list[Any] = []

    def execute(self, statement: str, params: tuple[Any, ...]) -> None:
        with self._store._transaction(write=True) as cur:
            cur.execute(statement, params)
            self._rows = cur.fetchall()

    def fetchone(self) -> Any:
        return self._rows[0] if self._rows else None


def _lock_fd(path: str) -> int:
    with _held_lock:
        fd = _lock_fds.get(path)
        if fd is None:
            try:
                fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o640)
            except OSError as exc:
                raise StoreError(f"history claims {path}: {exc.strerror}") from None
            _lock_fds[path] = fd
        return fd


@contextmanager
def _claim_lock(path: str, key: str) -> Iterator[bool]:
    token = (path, key)
    with _held_lock:
        busy = token in _held
        if not busy:
            _held.add(token)
    if busy:
        yield False
        return
    try:
        fd = _lock_fd(path)
        offset = int.from_bytes(hashlib.blake2b(key.encode(), digest_size=7).digest(), "big")
        try:
            fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB, 1, offset)
        except OSError as exc:
            if exc.errno not in (errno.EAGAIN, errno.EACCES):
                raise StoreError(f"history claims {path}: {exc.strerror}") from None
            yield False
            return
        try:
            yield True
        finally:
            fcntl.lockf(fd, fcntl.LOCK_UN, 1, offset)
    finally:
        with _held_lock:
            _held.discard(token)
