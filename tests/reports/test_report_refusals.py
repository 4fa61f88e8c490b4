"""``authmilter report`` when the relay refuses recipients: partly (sent, never re-sent to the
ones that took it) or wholly (a permanent refusal is marked skipped, with the reason)."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from authmilter.reports.history import PublishedPolicy
from tests.reports import reportsetup
from tests.reports.reportsetup import PERIOD, ZONE, by_domain, fill, report, rows, write_config
from tests.support.dnsserver import DnsServer
from tests.support.service import serve_in_thread
from tests.support.smtpsink import SmtpSink, _Handler, _Server

REFUSED = "refuse"  # local parts starting with this are refused at RCPT (550), MAIL (553)
DROP_AT_QUIT = threading.Event()  # set: the sink answers QUIT with 421, not 221


class RefusingSink(SmtpSink):
    """A sink that answers 550 to RCPT TO:<refuse...@...>."""

    def start(self) -> RefusingSink:
        """Listen with the refusing handler."""
        self._server = _Server(("127.0.0.1", 0), _RefusingHandler)
        self._server.sink = self
        self.port = self._server.server_address[1]
        self._thread = serve_in_thread(self._server)
        return self


class _RefusingHandler(_Handler):
    refuse_next = False
    refuse_sender = False

    def _reply(self, text: str) -> None:
        if self.refuse_next and text.startswith("250 2.1.5"):
            self.refuse_next = False
            text = "550 5.1.1 no such user"
        if self.refuse_sender and text.startswith("250 2.1.0"):
            self.refuse_sender = False
            text = "553 5.7.1 sender not allowed"
        if text.startswith("221") and DROP_AT_QUIT.is_set():
            text = "421 4.4.2 closing"  # not 221: smtplib's context manager raises on it
        super()._reply(text)

    def handle(self) -> None:
        original = self.rfile.readline

        def readline(limit: int = -1) -> bytes:
            line = original(limit)
            if line.upper().startswith(b"RCPT TO:<" + REFUSED.upper().encode()):
                self.refuse_next = True
            if line.upper().startswith(b"MAIL FROM:<" + REFUSED.upper().encode()):
                self.refuse_sender = True
            return line

        self.rfile.readline = readline  # type: ignore[method-assign]
        super().handle()


def test_partial_and_whole_refusals(
    history_dsn: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    policies = {
        "partly.example": PublishedPolicy(
            "partly.example",
            "none",
            rua=("mailto:ok@partly.example", "mailto:refuse@partly.example"),
        ),
        "wholly.example": PublishedPolicy(
            "wholly.example", "none", rua=("mailto:refuse@wholly.example",)
        ),
    }
    for domain, policy in policies.items():
        monkeypatch.setitem(reportsetup.POLICIES, domain, policy)
    fill(history_dsn, rows({d: [("192.0.2.1", 2)] for d in policies}))
    with DnsServer(ZONE) as dns, RefusingSink() as sink:
        cfg = write_config(tmp_path, history_dsn, sink.port)
        args = ["-c", str(cfg), *PERIOD, "--nameserver", dns.address]
        code, first = report(*args)
        assert code == 0
        got = by_domain(first)
        assert got["partly.example"]["status"] == "sent"
        assert "refuse@partly.example (550)" in got["partly.example"]["reason"]
        assert got["wholly.example"]["status"] == "skipped"
        assert "550" in got["wholly.example"]["reason"]
        # one message (the sink lists every RCPT it saw, the refused one too)
        assert [m.rcpt_to[0] for m in sink.messages] == ["ok@partly.example"]
        code, second = report(*args)
        assert code == 0
        assert {e["status"] for e in by_domain(second).values()} == {"skipped"}
        assert len(sink.messages) == 1


def test_refused_sender_is_retried_and_a_lost_quit_is_still_sent(
    history_dsn: str, tmp_path: Path
) -> None:
    fill(history_dsn, rows({"example.com": [("192.0.2.1", 3)]}))
    with DnsServer(ZONE) as dns, RefusingSink() as sink:
        cfg = write_config(tmp_path, history_dsn, sink.port)
        refusing = tmp_path / "refusing.toml"
        refusing.write_text(
            cfg.read_text().replace("dmarc-reports@receiver.example", "refuse@receiver.example")
        )
        code, first = report("-c", str(refusing), *PERIOD, "--nameserver", dns.address)
        assert code == 75  # the relay settings need fixing: the report waits, it is not lost
        assert "MAIL FROM" in by_domain(first)["example.com"]["reason"]
        assert sink.messages == []
        DROP_AT_QUIT.set()
        try:
            code, second = report("-c", str(cfg), *PERIOD, "--nameserver", dns.address)
        finally:
            DROP_AT_QUIT.clear()
        assert code == 0
        assert by_domain(second)["example.com"]["status"] == "sent"
        code, third = report("-c", str(cfg), *PERIOD, "--nameserver", dns.address)
        assert by_domain(third)["example.com"]["status"] == "skipped"
        assert len(sink.messages) == 1
