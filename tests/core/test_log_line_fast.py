"""The per-message log line: written without a LogRecord, yet where and as logging would."""

from __future__ import annotations

import io
import logging
import logging.handlers
import os
import re
import sys
from collections.abc import Iterator

import pytest

from authmilter import logsetup
from authmilter.config import MilterConfig

LINE = "qid=Q1 conn=7 client=mx.example[192.0.2.25] from=<a@example.com> action=accept ms=1.2"
STAMP = r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}"


@pytest.fixture
def stderr(monkeypatch: pytest.MonkeyPatch) -> Iterator[io.StringIO]:
    """What setup_logging's stderr handler writes (the logger is restored afterwards)."""
    logger = logging.getLogger("authmilter")
    saved = logger.handlers[:], logger.propagate, logger.level
    stream = io.StringIO()
    real = logsetup.setup_logging

    def setup(cfg: MilterConfig) -> None:  # pytest swaps sys.stderr between phases
        monkeypatch.setattr(sys, "stderr", stream)
        real(cfg)

    monkeypatch.setattr(logsetup, "setup_logging", setup)
    yield stream
    logger.handlers[:], logger.propagate = saved[0], saved[1]
    logger.setLevel(saved[2])
    monkeypatch.setattr(logsetup, "_lines", None)


def test_the_line_is_what_the_stderr_formatter_writes(stderr: io.StringIO) -> None:
    logsetup.setup_logging(MilterConfig())
    logsetup.info_line(LINE)
    logging.getLogger("authmilter").info("%s", LINE)  # the same line the ordinary way
    fast, ordinary = stderr.getvalue().splitlines()
    assert re.fullmatch(rf"{STAMP} INFO {re.escape(LINE)}", fast), fast
    assert fast.split(" ", 2)[2] == ordinary.split(" ", 2)[2]
    assert stderr.getvalue().count("\n") == 2


def test_the_level_is_honoured(stderr: io.StringIO) -> None:
    logsetup.setup_logging(MilterConfig(log_level="warning"))
    logsetup.info_line(LINE)
    assert stderr.getvalue() == ""


def test_another_handler_gets_an_ordinary_record(
    stderr: io.StringIO, caplog: pytest.LogCaptureFixture
) -> None:
    logsetup.setup_logging(MilterConfig())
    logging.getLogger("authmilter").addHandler(caplog.handler)
    logsetup.info_line(LINE)
    assert [r.getMessage() for r in caplog.records] == [LINE]
    assert stderr.getvalue().endswith(f" INFO {LINE}\n")  # and the configured one too


def test_without_setup_it_is_plain_logging(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, "authmilter")
    logsetup.info_line(LINE)
    assert [(r.levelno, r.getMessage()) for r in caplog.records] == [(logging.INFO, LINE)]


def test_syslog_goes_through_its_handler(
    stderr: io.StringIO, monkeypatch: pytest.MonkeyPatch
) -> None:
    sent: list[str] = []

    class FakeSyslog(logging.Handler):
        LOG_MAIL = 2

        def __init__(self, address: str, facility: int) -> None:
            super().__init__()

        def emit(self, record: logging.LogRecord) -> None:
            sent.append(self.format(record))

    monkeypatch.setattr(logging.handlers, "SysLogHandler", FakeSyslog)
    logsetup.setup_logging(MilterConfig(log_target="syslog"))
    logsetup.info_line(LINE)
    assert sent == [f"authmilter[{os.getpid()}]: {LINE}"]
    assert stderr.getvalue() == ""


def test_a_failing_stream_falls_back_to_logging(
    stderr: io.StringIO, monkeypatch: pytest.MonkeyPatch
) -> None:
    logsetup.setup_logging(MilterConfig())
    errors: list[str] = []
    handler = logging.getLogger("authmilter").handlers[0]
    monkeypatch.setattr(handler, "handleError", lambda record: errors.append(record.getMessage()))

    class Broken(io.StringIO):
        def write(self, text: str) -> int:
            raise BrokenPipeError

    monkeypatch.setattr(handler, "stream", Broken())
    logsetup.info_line(LINE)  # never raises: logging reports its own failure
    assert errors == [LINE]


def test_another_format_is_honoured(stderr: io.StringIO) -> None:
    logsetup.setup_logging(MilterConfig())
    handler = logging.getLogger("authmilter").handlers[0]
    handler.setFormatter(logging.Formatter("%(levelname)s|%(message)s"))
    logsetup.info_line(LINE)
    assert stderr.getvalue() == f"INFO|{LINE}\n"
