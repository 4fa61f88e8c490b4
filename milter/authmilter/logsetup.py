"""Logging: stderr (systemd's journal picks it up) or syslog, by config.

The one line per message goes through :func:`info_line`. With the stderr handler that
:func:`setup_logging` installed still the logger's only one, the line is written to that
handler's stream directly (under its lock), exactly as its formatter would have written
it, without a ``LogRecord``, the caller lookup or the formatter's per-record work. In every
other case (syslog, a level above INFO, filters, handlers added by someone else: a test's
caplog, ``authmilter test -v``) it is an ordinary ``log.info`` call.
"""

from __future__ import annotations

import logging
import logging.handlers
import sys
import time

from authmilter.config import MilterConfig

_FACILITIES = logging.handlers.SysLogHandler.facility_names
STDERR_FORMAT = "%(asctime)s %(levelname)s %(message)s"

log = logging.getLogger("authmilter")


class _StreamLines:
    """INFO lines written to one StreamHandler's stream as its :data:`STDERR_FORMAT` would."""

    def __init__(self, handler: logging.StreamHandler) -> None:  # type: ignore[type-arg]
        self.handler = handler
        self.formatter = handler.formatter
        self._second = -1
        self._stamp = ""

    def usable(self) -> bool:
        """Whether the logger still writes INFO lines through this handler alone, unfiltered."""
        handlers = log.handlers
        return (
            len(handlers) == 1
            and handlers[0] is self.handler
            and self.handler.formatter is self.formatter
            and not log.filters
            and not self.handler.filters
            and self.handler.level <= logging.INFO
            and not log.disabled
            and log.isEnabledFor(logging.INFO)
        )

    def write(self, text: str) -> None:
        """One line: ``2026-12-07 05:19:32,123 INFO text`` (logging.Formatter's asctime)."""
        now = time.time()
        second = int(now)
        if second != self._second:  # strftime once a second, not once a line
            self._stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(now))
            self._second = second
        line = f"{self._stamp},{int((now - second) * 1000):03d} INFO {text}\n"
        handler = self.handler
        handler.acquire()
        try:
            handler.stream.write(line)
            handler.stream.flush()
        finally:
            handler.release()


_lines: _StreamLines | None = None


def info_line(text: str) -> None:
    """Log one INFO line (already formatted) on the ``authmilter`` logger, cheaply."""
    lines = _lines
    if lines is not None and lines.usable():
        try:
            lines.write(text)
        except Exception:  # noqa: BLE001  (e.g. EPIPE: logging's own handling reports it)
            log.info("%s", text)
        return
    log.info("%s", text)


def setup_logging(cfg: MilterConfig) -> None:
    """Configure the ``authmilter`` logger once per process."""
    global _lines
    handler: logging.Handler
    if cfg.log_target == "syslog":
        facility = _FACILITIES.get(cfg.syslog_facility, logging.handlers.SysLogHandler.LOG_MAIL)
        handler = logging.handlers.SysLogHandler(address="/dev/log", facility=facility)
        handler.setFormatter(logging.Formatter("authmilter[%(process)d]: %(message)s"))
        _lines = None
    else:
        stream = logging.StreamHandler(sys.stderr)
        stream.setFormatter(logging.Formatter(STDERR_FORMAT))
        handler = stream
        _lines = _StreamLines(stream)
    log.handlers[:] = [handler]
    log.setLevel(cfg.log_level.upper())
    log.propagate = False
