"""The libmilter adapter driven by a fake context: bytes in, header edits and replies out."""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any

import Milter
import pytest

from authmilter.config import from_dict
from authmilter.engine import Engine
from authmilter.milter_adapter import AuthMilter
from authmilter.model import parse_message
from authmilter.staticresolver import StaticResolver
from tests.support import engines
from tests.support.keys import sign, simple_message


class FakeCtx:
    """Records what the adapter asks of libmilter."""

    def __init__(self, macros: dict[str, str] | None = None) -> None:
        self.macros = macros or {}
        self.priv: Any = None
        self.reply: tuple[str, ...] | None = None
        self.added: list[tuple[str, str, int]] = []
        self.changed: list[tuple[str, int, str | None]] = []
        self.quarantined: str | None = None

    def getpriv(self) -> Any:
        return self.priv

    def setpriv(self, priv: Any) -> None:
        self.priv = priv

    def getsymval(self, name: str) -> str | None:
        return self.macros.get(name)

    def setreply(self, rcode: str, xcode: str, *msg: str) -> None:
        self.reply = (rcode, xcode, *msg)

    def addheader(self, name: str, value: str, idx: int) -> None:
        self.added.append((name, value, idx))

    def chgheader(self, name: str, idx: int, value: str | None) -> None:
        self.changed.append((name, idx, value))

    def quarantine(self, reason: str) -> None:
        self.quarantined = reason


def make_engine(**conf: dict[str, object]) -> Engine:
    return engines.make_engine(**conf)


def feed(
    message: bytes,
    ip: str = "192.0.2.25",
    *,
    macros: dict[str, str] | None = None,
    engine: Engine | None = None,
    mail_from: str = "<alice@example.com>",
    split_body: int = 7,
) -> tuple[FakeCtx, int]:
    eng = engine or make_engine()
    ctx = FakeCtx(macros)
    m = AuthMilter(lambda: eng, "1")
    m._setctx(ctx)
    m._protocol = Milter.P_HDR_LEADSPC
    assert m.connect("client.example", socket.AF_INET, (ip, 4711)) == Milter.CONTINUE
    m.hello("mail.example.com")
    assert m.envfrom(mail_from) == Milter.CONTINUE
    rc = m.envrcpt("<bob@example.org>")
    if rc != Milter.CONTINUE:
        return ctx, rc
    tx = parse_message(message)
    for h in tx.headers:  # as Postfix sends them: leading space kept, LF inside folds
        m.header_bytes(h.name, h.value.replace(b"\r\n", b"\n"))
    for i in range(0, len(tx.body), split_body):
        m.body(tx.body[i : i + split_body])
    return ctx, m.eom()


def test_signed_message_gets_one_authentication_results_at_top() -> None:
    msg = sign(simple_message(extra="X-Folded: one\n two\n"), "example.com", "rsa")
    ctx, rc = feed(msg)
    assert rc == Milter.ACCEPT
    assert len(ctx.added) == 1
    name, value, idx = ctx.added[0]
    assert (name, idx) == ("Authentication-Results", 0)
    assert "dkim=pass" in value and "dmarc=pass" in value and "\r" not in value


def test_spoof_is_rejected_with_5_7_26() -> None:
    ctx, rc = feed(simple_message(), ip="203.0.113.9")
    assert rc == Milter.REJECT
    assert ctx.reply is not None and ctx.reply[:2] == ("550", "5.7.26")
    assert ctx.added == []


def test_forged_ar_removed_highest_index_first() -> None:
    msg = simple_message(
        extra="Authentication-Results: mx.test; dkim=pass\n"
        "Authentication-Results: mx.test; spf=pass\n"
    )
    ctx, rc = feed(sign(msg, "example.com", "rsa"))
    assert rc == Milter.ACCEPT
    assert ctx.changed == [("Authentication-Results", 2, None), ("Authentication-Results", 1, None)]


def test_percent_in_reply_text_is_doubled() -> None:
    eng = make_engine(dmarc={"reject_text": "100% rejected for {domain}"})
    ctx, rc = feed(simple_message(), ip="203.0.113.9", engine=eng)
    assert rc == Milter.REJECT
    assert ctx.reply is not None and ctx.reply[2] == "100%% rejected for example.com"


def test_internal_error_is_tempfail_and_logged(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    eng = make_engine()

    def boom(*_a: object, **_k: object) -> None:
        raise RuntimeError("boom")

    monkeypatch.setattr(Engine, "evaluate", boom)
    ctx, rc = feed(simple_message(), engine=eng)
    assert rc == Milter.TEMPFAIL
    assert ctx.reply is not None and ctx.reply[:2] == ("451", "4.3.0")
    assert "internal error in eom" in caplog.text


def test_on_error_accept(monkeypatch: pytest.MonkeyPatch) -> None:
    eng = make_engine(milter={"authserv_id": "mx.test", "on_error": "accept"})

    def boom(*_a: object, **_k: object) -> None:
        raise RuntimeError("boom")

    monkeypatch.setattr(Engine, "evaluate", boom)
    _, rc = feed(simple_message(), engine=eng)
    assert rc == Milter.ACCEPT


def test_authenticated_sender_accepted() -> None:
    ctx, rc = feed(simple_message(), ip="203.0.113.9", macros={"{auth_authen}": "alice"})
    assert rc == Milter.ACCEPT
    assert ctx.added == []  # no keys, and no A-R by default (trust.auth_results)
    full = make_engine(trust={"internal_hosts": [], "auth_results": "full"})
    ctx, rc = feed(
        simple_message(), ip="203.0.113.9", macros={"{auth_authen}": "alice"}, engine=full
    )
    assert rc == Milter.ACCEPT
    assert "smtp.auth=alice" in ctx.added[0][1]


def test_quarantine_action() -> None:
    resolver = StaticResolver({("_dmarc.example.net", "TXT"): ["v=DMARC1; p=quarantine"]})
    eng = Engine(make_engine().config, resolver)
    ctx, rc = feed(
        simple_message(from_addr="a@example.net"),
        ip="203.0.113.9",
        engine=eng,
        mail_from="<a@example.net>",
    )
    assert rc == Milter.ACCEPT
    assert ctx.quarantined


def test_authenticated_mail_is_signed_from_the_streamed_body(tmp_path: Path) -> None:
    import os
    import shutil

    from authmilter.checks.dkim_verify import verify_dkim
    from authmilter.config import DkimConfig
    from authmilter.model import HeaderField, Transaction
    from authmilter.results import Result
    from authmilter.signing.signer import Signer

    data = Path(__file__).resolve().parent.parent / "data" / "signing"
    key = tmp_path / "k.pem"
    shutil.copyfile(data / "rsa2048-pkcs8.pem", key)
    os.chmod(key, 0o600)
    cfg = from_dict(
        {
            "milter": {"authserv_id": "mx.test"},
            "trust": {"internal_hosts": []},
            "signing": {
                "keys": [{"domain": "example.com", "selector": "s1", "key_file": str(key)}]
            },
        }
    )
    signer = Signer.from_config(cfg.signing, str(tmp_path))
    resolver = StaticResolver(  # the key is published (signing.require_published_key)
        {
            ("s1._domainkey.example.com", "TXT"): [
                f"v=DKIM1; k=rsa; p={signer.keys[0].key.public_p()}"
            ]
        }
    )
    eng = Engine(cfg, resolver, signer=signer)
    message = simple_message(body="line one  \nline two\n\n\n" * 500)
    ctx, rc = feed(
        message, ip="203.0.113.9", macros={"{auth_authen}": "alice"}, engine=eng, split_body=1000
    )
    assert rc == Milter.ACCEPT
    sigs = [v for n, v, _ in ctx.added if n == "DKIM-Signature"]
    assert len(sigs) == 1
    received = parse_message(message)
    sig = HeaderField("DKIM-Signature", sigs[0].replace("\n", "\r\n").encode())
    tx = Transaction(headers=(sig, *received.headers), body=received.body)
    assert [r.result for r in verify_dkim(tx, resolver, DkimConfig())] == [Result.PASS]


def test_a_collected_connection_never_deadlocks_on_the_guards_lock() -> None:
    """Debian's pymilter leaves connections to the cyclic GC, which may run their finalizer
    on a thread that holds the session guard's lock (found: the daemon hung after about 18
    connections). The finalizer only queues the bookkeeping; the next connection runs it."""
    import gc
    import threading

    from authmilter.sessionguard import SessionGuard

    guard = SessionGuard(10, 600.0)
    eng = engines.make_engine()

    def collect_while_holding_the_lock() -> None:
        m = AuthMilter(lambda: eng, "1", guard)
        m.cycle = m  # only the cyclic GC frees it, as with Debian's pymilter
        del m
        with guard._lock:
            gc.collect()  # the finalizer runs here, on this thread

    worker = threading.Thread(target=collect_while_holding_the_lock, daemon=True)
    worker.start()
    worker.join(10)
    assert not worker.is_alive(), "deadlock: the finalizer took the guard's lock"
    assert guard.live() == 1  # queued, not yet undone
    AuthMilter(lambda: eng, "2", guard)  # the next connection runs the queued bookkeeping
    assert guard.live() == 1
