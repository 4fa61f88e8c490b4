"""Logging: stderr (systemd's journal picks it up) or syslog, by config."""

from __future__ import annotations

import logging
import logging.handlers
import sys

from authmilter.config import MilterConfig

_FACILITIES = logging.handlers.SysLogHandler.facility_names


def setup_logging(cfg: MilterConfig) -> None:
    """Configure the ``authmilter`` logger once per process."""
    handler: logging.Handler
    if cfg.log_target == "syslog":
        facility = _FACILITIES.get(cfg.syslog_facility, logging.handlers.SysLogHandler.LOG_MAIL)
        handler = logging.handlers.SysLogHandler(address="/dev/log", facility=facility)
        handler.setFormatter(logging.Formatter("authmilter[%(process)d]: %(message)s"))
    else:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    root = logging.getLogger("authmilter")
    root.handlers[:] = [handler]
    root.setLevel(cfg.log_level.upper())
    root.propagate = False
