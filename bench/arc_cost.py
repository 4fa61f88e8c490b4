"""What ARC verification costs per message: CPU of one in-process Session (issue 11 point 5).

    PYTHONPATH=milter python3 -m bench.arc_cost [--messages 2000] [--rounds 5]

The same 2 KB message, three ways, each through a whole Session (SPF, DKIM, DMARC, ARC, the
A-R, the log line; one Session per message, as the adapter makes them; DNS answered from
memory, as a warm cache does):

- ``dkim``: the message with one DKIM signature (rsa-sha256, RSA-2048), no ARC;
- ``arc3``: the same message with a 3-set ARC chain (dkimpy ``arc_sign``, three RSA-2048
  sealers) and no DKIM signature;
- ``dkim+arc3``: both (a forwarded message as it usually arrives).

Also ``dkim`` with ``arc.verify = false`` (``dkim, arc off``): the cost of looking for a
chain that is not there. Modes interleaved (in a rotated order each round), ``--messages``
per round, the best round of each (``time.process_time`` of this process). The target:
``arc3`` at most 1.5x ``dkim``.
"""

from __future__ import annotations

import argparse
import gc
import ipaddress
import time

import dkim
from tests.support.keys import new_rsa_key

from authmilter.config import from_dict
from authmilter.engine import Engine
from authmilter.model import Transaction, parse_message
from authmilter.session import Session
from authmilter.staticresolver import StaticResolver

IP = "192.0.2.25"
TIMESTAMP = 1_796_000_000


def _key() -> tuple[bytes, str]:
    key = new_rsa_key()
    return key.private, key.txt


def _seal(message: bytes, domain: str, pem: bytes, instance: int) -> bytes:
    srv = f"mx{instance}.{domain}"
    cv = "; arc=pass" if instance > 1 else ""
    message = (
        f"Authentication-Results: {srv}; spf=pass smtp.mailfrom=example.com{cv}\r\n".encode()
        + message
    )
    fields = dkim.arc_sign(message, b"arc", domain.encode(), pem, srv.encode(), timestamp=TIMESTAMP)
    return b"".join(fields) + message


def world() -> tuple[StaticResolver, dict[str, bytes]]:
    """The zone and the three messages (each about 2 KB before its signatures)."""
    records: dict[tuple[str, str], list[str]] = {
        ("example.com", "TXT"): [f"v=spf1 ip4:{IP} -all"],
        ("_dmarc.example.com", "TXT"): ["v=DMARC1; p=reject"],
    }
    pem, record = _key()
    records[("sel._domainkey.example.com", "TXT")] = [record]
    sealers = []
    for domain in ("lists.example.org", "fwd.example.net", "mx.example.edu"):
        spem, srecord = _key()
        records[(f"arc._domainkey.{domain}", "TXT")] = [srecord]
        sealers.append((domain, spem))
    head = (
        b"From: Alice <alice@example.com>\r\nTo: bob@example.org\r\nSubject: bench\r\n"
        b"Date: Tue, 01 Dec 2026 12:00:00 +0000\r\nMessage-ID: <b1@example.com>\r\n"
    )
    body = b"Hello,\r\n\r\n" + b"a line of an ordinary message body, about 2 KB in all.\r\n" * 34
    plain = head + b"\r\n" + body
    signed = bytes(dkim.sign(plain, b"sel", b"example.com", pem)) + plain
    sealed_plain, sealed_signed = plain, signed
    for n, (domain, spem) in enumerate(sealers, 1):
        sealed_plain = _seal(sealed_plain, domain, spem, n)
        sealed_signed = _seal(sealed_signed, domain, spem, n)
    messages = {"dkim": signed, "arc3": sealed_plain, "dkim+arc3": sealed_signed}
    return StaticResolver(records), messages


def _one(engine: Engine, tx: Transaction, n: int) -> tuple[str, str]:
    session = Session(engine, str(n))
    session.connect("client.example", ipaddress.ip_address(IP), "")
    session.helo("mail.example.com")
    session.mail_from("<alice@example.com>", None, f"Q{n}")
    session.recipient("<bob@example.org>")
    for h in tx.headers:
        session.header(h.name, h.value)
    session.end_of_headers()
    session.body(tx.body)
    decision = session.end_of_message()
    arc = session.results.arc.result.value if session.results and session.results.arc else "-"
    return str(decision.action), arc


def _round(engine: Engine, tx: Transaction, count: int) -> float:
    started = time.process_time()
    for n in range(count):
        _one(engine, tx, n)
    return (time.process_time() - started) / count


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--messages", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    resolver, messages = world()
    base = {"milter": {"authserv_id": "mx.bench"}, "trust": {"internal_hosts": []}}
    engines = {
        "on": Engine(from_dict(base), resolver),
        "off": Engine(from_dict({**base, "arc": {"verify": False}}), resolver),
    }
    # parsed once, outside the measurement: the MTA hands the milter fields, not a message
    parsed = {name: parse_message(raw) for name, raw in messages.items()}
    modes = {
        "dkim": ("on", parsed["dkim"]),
        "dkim, arc off": ("off", parsed["dkim"]),
        "arc3": ("on", parsed["arc3"]),
        "dkim+arc3": ("on", parsed["dkim+arc3"]),
    }
    for name, (engine, tx) in modes.items():  # warm up, and check the verdicts
        outcome = _one(engines[engine], tx, 0)
        size = len(tx.raw_message())
        print(f"{name}: {size} bytes, {len(tx.headers)} fields, action/arc = {outcome}")
    best = {name: float("inf") for name in modes}
    order = list(modes)
    for r in range(args.rounds):
        for name in order[r % len(order) :] + order[: r % len(order)]:  # rotated each round
            engine, tx = modes[name]
            gc.collect()
            best[name] = min(best[name], _round(engines[engine], tx, args.messages))
    print(f"\nbest of {args.rounds} rounds of {args.messages} messages, CPU ms per message:")
    for name, seconds in best.items():
        ratio = seconds / best["dkim"]
        print(f"  {name:14s} {seconds * 1000:6.3f} ms  {ratio:4.2f}x dkim")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
