"""Self-tests of the SMTP sink, the TOML writer and the daemon runner (with a stand-in)."""

from __future__ import annotations

import signal
import smtplib
import sys
import tomllib
from pathlib import Path

import pytest

from tests.support.daemon import AuthmilterDaemon, DaemonError, dump_toml, socket_accepts
from tests.support.smtpsink import SmtpSink

pytestmark = pytest.mark.integration


def test_sink_receives_envelope_and_exact_bytes(smtp_sink: SmtpSink) -> None:
    data = b"From: a@example.org\r\nSubject: caf\xc3\xa9\r\n\r\n.leading dot\r\nline\r\n"
    with smtplib.SMTP("127.0.0.1", smtp_sink.port) as client:
        client.ehlo("client.test")
        assert "8bitmime" in client.esmtp_features
        client.sendmail(
            "a@example.org",
            ["b@example.com", "c@example.com"],
            data,
            mail_options=["BODY=8BITMIME"],
        )
        client.rset()
        client.sendmail("", ["d@example.com"], b"Subject: two\r\n\r\nx\r\n")
    first, second = smtp_sink.wait_for(2, timeout=10)
    assert first.mail_from == "a@example.org"
    assert first.rcpt_to == ("b@example.com", "c@example.com")
    assert first.data == data  # dot-unstuffed, bytes untouched
    assert first.helo == "client.test" and "BODY=8BITMIME" in first.mail_args
    assert first.header_values("Subject") == ["café"]
    assert second.mail_from == "" and second.rcpt_to == ("d@example.com",)


def test_sink_wait_for_times_out() -> None:
    with SmtpSink() as sink, pytest.raises(TimeoutError, match="0 of 1"):
        sink.wait_for(1, timeout=0.2)


def test_toml_round_trip() -> None:
    config = {
        "milter": {"socket": "unix:/tmp/x y/a.sock", "authserv_id": "mx.test", "timeout": 30},
        "dns": {"nameservers": ["127.0.0.1:5353"], "timeout": 1.5},
        "trust": {"internal_hosts": [], "authenticated": True},
        "signing": {
            "keys": [
                {"domain": "example.org", "selector": "s1", "key_file": "/k/a.pem"},
                {
                    "domain": "example.net",
                    "selector": 's"2',
                    "key_file": "C:\\k",
                    "signers": ["*@example.net"],
                },
            ],
        },
        "top": "line\nbreak\ttab\x01",
    }
    text = dump_toml(config)
    assert tomllib.loads(text) == config


def test_toml_rejects_unknown_types() -> None:
    with pytest.raises(TypeError):
        dump_toml({"a": object()})


STAND_IN = """
import os, signal, socket, sys, time
path = sys.argv[1].partition(":")[2]
sys.stderr.write("stand-in starting\\n"); sys.stderr.flush()
time.sleep(0.3)  # the runner must poll, not assume
s = socket.socket(socket.AF_UNIX); s.bind(path); s.listen(5)
signal.signal(signal.SIGUSR1, lambda *a: (sys.stderr.write("reloaded\\n"), sys.stderr.flush()))
signal.signal(signal.SIGTERM, lambda *a: (os.unlink(path), sys.exit(0)))
while True:
    c, _ = s.accept(); c.close()
"""


def stand_in(tmp_path: Path, script: str = STAND_IN) -> AuthmilterDaemon:
    program = tmp_path / "standin.py"
    program.write_text(script)
    return AuthmilterDaemon(
        tmp_path,
        {"milter": {"authserv_id": "x"}},
        command=[sys.executable, str(program), "{socket}"],
        start_timeout=10,
    )


def test_runner_waits_for_socket_reloads_and_stops(tmp_path: Path) -> None:
    daemon = stand_in(tmp_path)
    with daemon:
        assert socket_accepts(daemon.socket)
        assert daemon.config_path.read_text().startswith("[milter]")
        assert "stand-in starting" in daemon.log()
        daemon.reload()
        daemon.wait_for_log("reloaded")
        pid = daemon.pid
    assert not daemon.running() and daemon.proc is not None and daemon.proc.returncode == 0
    assert not socket_accepts(daemon.socket)
    with pytest.raises(ProcessLookupError):
        import os

        os.kill(pid, 0)


def test_runner_reports_a_daemon_that_dies(tmp_path: Path) -> None:
    daemon = stand_in(tmp_path, "import sys; sys.stderr.write('bad config\\n'); sys.exit(78)")
    with pytest.raises(DaemonError, match=r"(?s)exited with 78.*bad config"):
        daemon.start()


def test_runner_kills_a_daemon_ignoring_sigterm(tmp_path: Path) -> None:
    script = STAND_IN.replace("lambda *a: (os.unlink(path), sys.exit(0))", "signal.SIG_IGN")
    daemon = stand_in(tmp_path, script)
    daemon.start()
    assert daemon.stop(timeout=0.5) == -signal.SIGKILL
