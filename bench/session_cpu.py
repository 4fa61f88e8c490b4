"""CPU per message of the in-process path libmilter drives: adapter + Session, no sockets.

    PYTHONPATH=milter python3 -m bench.session_cpu [--messages 2000] [--rounds 7]
        [--metrics on|off] [--log on|off] [--session-only] [--profile N]

One connection per message (as Postfix makes them): an :class:`AuthMilter` (the adapter,
with libmilter's context replaced by a stub that takes the header edits) fed through the
same entry points libmilter's callbacks use (``header_bytes``, ``eoh``, ``body``, ``eom``
...), for an inbound 2 KB message with one RSA-2048 signature (relaxed/relaxed) that
passes SPF, DKIM and DMARC; DNS answered from memory. The log line is written through
:func:`authmilter.logsetup.setup_logging` to stderr, which is redirected to /dev/null;
metrics are on as shipped (in memory). ``--session-only`` drives the Session without the
adapter. Reported: CPU time of this process per message (``time.process_time``), the
median and range of ``--rounds`` rounds. ``--profile N`` prints cProfile's top N instead.
The machine's other load makes single rounds noisy: compare medians of the same run.
"""

from __future__ import annotations

import argparse
import cProfile
import ipaddress
import os
import pstats
import socket
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

import dkim
import Milter
from tests.support.keys import new_rsa_key

from authmilter import metrics
from authmilter.config import from_dict
from authmilter.engine import Engine
from authmilter.logsetup import setup_logging
from authmilter.milter_adapter import AuthMilter
from authmilter.model import parse_message
from authmilter.session import Session
from authmilter.staticresolver import StaticResolver

GOOD_IP = "192.0.2.25"
LINE = b"a line of an ordinary message body, about seventy characters long.\r\n"
BODY = b"Hello,\r\n\r\n" + LINE * 28  # ~2 KB


class StubMilter(AuthMilter):
    """The adapter with libmilter's side stubbed: macros, replies and header edits."""

    _protocol = 0
    macros: dict[str, str] = {"i": "", "{daemon_name}": "smtpd", "{auth_authen}": ""}  # noqa: RUF012

    def getsymval(self, name: str) -> str:
        return self.macros.get(name, "")

    def setreply(self, *args: Any) -> None:
        pass

    def addheader(self, *args: Any) -> None:
        pass

    def chgheader(self, *args: Any) -> None:
        pass

    def quarantine(self, *args: Any) -> None:
        pass


def world() -> tuple[Engine, bytes]:
    """An engine over a static zone and a signed 2 KB message that passes everything."""
    key = new_rsa_key()
    pem = key.private
    static = StaticResolver(
        {
            ("example.com", "TXT"): [f"v=spf1 ip4:{GOOD_IP} -all"],
            ("_dmarc.example.com", "TXT"): ["v=DMARC1; p=reject"],
            ("sel._domainkey.example.com", "TXT"): [key.txt],
        }
    )
    cfg = from_dict({"milter": {"authserv_id": "mx.bench"}, "trust": {"internal_hosts": []}})
    head = (
        b"Received: from mail.example.com (mail.example.com [192.0.2.25])\r\n"
        b"\tby mx.bench (Postfix) with ESMTPS id 4Q1\r\n"
        b"\tfor <bob@example.org>; Tue, 01 Dec 2026 12:00:00 +0000 (UTC)\r\n"
        b"From: Alice <alice@example.com>\r\nTo: Bob <bob@example.org>\r\n"
        b"Subject: a message of about two kilobytes\r\n"
        b"Date: Tue, 01 Dec 2026 12:00:00 +0000\r\nMessage-ID: <b1@example.com>\r\n"
        b"MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n"
    )
    plain = head + b"\r\n" + BODY
    signed = bytes(dkim.sign(plain, b"sel", b"example.com", pem)) + plain
    return Engine(cfg, static), signed


Run = Callable[[int], str]  # message number -> the log line


def adapter_run(engine: Engine, raw: bytes) -> Run:
    """One message through the adapter's entry points, as libmilter calls them."""
    tx = parse_message(raw)
    # libmilter hands over header values with LF folds and (HDR_LEADSPC) the leading space
    # (pymilter passes the field name as text, the value as bytes: @decode("bytes"))
    headers = [(h.name, h.value.replace(b"\r\n", b"\n")) for h in tx.headers]
    body = tx.body
    family, addr = socket.AF_INET, (GOOD_IP, 40000)

    def one(n: int) -> str:
        m = StubMilter(lambda: engine, str(n))
        m._protocol = Milter.P_HDR_LEADSPC  # negotiated: values keep their leading space
        m.connect("mail.example.com", family, addr)
        m.hello("mail.example.com")
        m.envfrom_bytes(b"<alice@example.com>")
        m.envrcpt_bytes(b"<bob@example.org>")
        for name, value in headers:
            m.header_bytes(name, value)
        m.eoh()
        m.body(body)
        m.eom()
        m.close()
        return m.session.last_line

    return one


def session_run(engine: Engine, raw: bytes) -> Run:
    """One message through a Session alone."""
    tx = parse_message(raw)
    client = ipaddress.ip_address(GOOD_IP)

    def one(n: int) -> str:
        s = Session(engine, str(n))
        s.connect("mail.example.com", client, "smtpd")
        s.helo("mail.example.com")
        s.mail_from("<alice@example.com>", None, f"Q{n}")
        s.recipient("<bob@example.org>")
        for h in tx.headers:
            s.header(h.name, h.value)
        s.end_of_headers()
        s.body(tx.body)
        s.end_of_message()
        return s.last_line

    return one


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python3 -m bench.session_cpu")
    p.add_argument("--messages", type=int, default=2000, help="messages per round")
    p.add_argument("--rounds", type=int, default=7)
    p.add_argument("--metrics", choices=("on", "off"), default="on")
    p.add_argument("--log", choices=("on", "off"), default="on")
    p.add_argument("--session-only", action="store_true")
    p.add_argument("--profile", type=int, default=0, metavar="N")
    args = p.parse_args(argv)

    devnull = open(os.devnull, "w")  # noqa: SIM115 (kept open for the logger)
    real_stderr, sys.stderr = sys.stderr, devnull
    engine, raw = world()
    setup_logging(engine.config.milter)
    if args.log == "off":
        import logging

        logging.getLogger("authmilter").setLevel(logging.WARNING)
    if args.metrics == "on":
        from prometheus_client import CollectorRegistry

        metrics.enable(CollectorRegistry())
    one = (session_run if args.session_only else adapter_run)(engine, raw)
    for n in range(50):  # warm up: keys parsed, caches filled
        line = one(n)
    sys.stderr = real_stderr
    for want in ("spf=pass", "dkim=pass", "dmarc=pass", "action=accept"):  # the verdict
        if want not in line:
            raise SystemExit(f"unexpected verdict: {line}")
    what = "Session" if args.session_only else "adapter + Session"
    print(
        f"python {sys.version.split()[0]}, {what}, metrics {args.metrics}, log {args.log}, "
        f"{len(raw)}-octet message, {args.messages} messages x {args.rounds} rounds"
    )
    if args.profile:
        prof = cProfile.Profile()
        sys.stderr = devnull
        prof.runcall(lambda: [one(n) for n in range(args.messages)])
        sys.stderr = real_stderr
        pstats.Stats(prof).sort_stats("tottime").print_stats(args.profile)
        return 0
    per_message: list[float] = []
    for _ in range(args.rounds):
        sys.stderr = devnull
        started = time.process_time()
        for n in range(args.messages):
            one(n)
        per_message.append((time.process_time() - started) / args.messages * 1000)
        sys.stderr = real_stderr
    print(
        f"CPU ms/message: median {statistics.median(per_message):.3f} "
        f"(min {min(per_message):.3f}, max {max(per_message):.3f})"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
