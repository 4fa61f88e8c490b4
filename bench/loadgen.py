"""Milter-protocol load client: N threads, one milter connection per message.

Each thread takes the next message of the corpus, opens a connection to the milter (or to
each milter of a chain, in order, the way Postfix runs several ``smtpd_milters``: the headers
added by one are part of the message the next one sees), replays CONNECT ... EOM with the
envelope and macros of the message set, and records the latency, the final action and the
verdicts in the headers the milters added. One SMTP session per message, one message per
milter connection: this is what Postfix does for an SMTP client that sends one message per
session (``smtp-source`` without ``-d``), and it includes the cost of option negotiation.

A run stops after ``count`` messages or ``duration`` seconds, whichever comes first.
"""

from __future__ import annotations

import collections
import itertools
import re
import resource
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from tests.support.milterclient import MilterClient, Modification, Reply

_RESULT = re.compile(r"(?:^|[;\s])(spf|dkim|dmarc|arc)\s*=\s*([A-Za-z]+)")
_TAG = re.compile(r"(?:^|;)\s*([a-z]+)\s*=\s*([^;]*)")


@dataclass(frozen=True)
class Work:
    """One message with its envelope."""

    raw: bytes
    client_ip: str
    helo: str
    mail_from: str
    rcpts: tuple[str, ...]
    macros: dict[str, str]
    name: str = ""  # file name, for the verdict report


@dataclass(frozen=True)
class Verdict:
    """What the milters said about one message, in comparable form."""

    action: str  # accept reject tempfail discard error
    spf: str = ""
    dkim: str = ""  # every dkim= word, comma-joined in header order
    dmarc: str = ""
    signatures: str = ""  # added DKIM-Signature headers as "a@d", comma-joined
    reply: str = ""  # SMTP reply text of a reject/tempfail
    arc: str = ""  # arc= of the (first) added Authentication-Results


@dataclass
class RunResult:
    """One measured run."""

    messages: int = 0
    errors: int = 0
    wall_s: float = 0.0
    latencies: list[float] = field(default_factory=list)
    verdicts: collections.Counter[Verdict] = field(default_factory=collections.Counter)
    per_message: list[tuple[str, Verdict]] = field(default_factory=list)
    first_error: str = ""
    sample_headers: list[tuple[str, str]] = field(default_factory=list)
    signed_samples: list[bytes] = field(default_factory=list)  # raw with added headers
    client_cpu_s: float = 0.0

    @property
    def rate(self) -> float:
        """Messages per second (errors excluded)."""
        return (self.messages - self.errors) / self.wall_s if self.wall_s > 0 else 0.0

    def percentile(self, q: float) -> float:
        """Nearest-rank latency percentile in seconds (0 when nothing was measured)."""
        return percentile(self.latencies, q)


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile: the smallest value with at least q% of values <= it."""
    if not values:
        return 0.0
    ordered = sorted(values)
    rank = max(1, -(-len(ordered) * q // 100))  # ceil(n*q/100), at least 1
    return ordered[int(rank) - 1]


def header_line(name: str, value: bytes) -> bytes:
    """A header field as it would appear in the message (CRLF folds, one space after ':')."""
    value = value.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
    sep = b"" if value[:1] in (b" ", b"\t") else b" "
    return name.encode() + b":" + sep + value + b"\r\n"


def unfold(value: bytes) -> str:
    """A header value on one line."""
    return re.sub(r"\r?\n[ \t]*", " ", value.decode("utf-8", "replace")).strip()


def verdict_of(reply: Reply | None, added: Sequence[Modification], error: str = "") -> Verdict:
    """Reduce the replies of a message to a :class:`Verdict`."""
    if reply is None:
        return Verdict("error", reply=error[:80])
    spf = dkim_words = dmarc = arc = ""
    sigs = []
    for mod in added:
        name, text = mod.name.lower(), unfold(mod.value)
        if name == "authentication-results":
            words = _RESULT.findall(text.partition(";")[2])
            spf = spf or next((w for m, w in words if m == "spf"), "")
            dmarc = dmarc or next((w for m, w in words if m == "dmarc"), "")
            arc = arc or next((w for m, w in words if m == "arc"), "")
            found = [w.lower() for m, w in words if m == "dkim"]
            dkim_words = ",".join(filter(None, [dkim_words, *found]))
        elif name == "received-spf" and not spf:
            spf = text.split()[0].lower() if text else ""
        elif name == "dkim-signature":
            tags = {k: v.strip() for k, v in _TAG.findall(text)}
            sigs.append(f"{tags.get('a', '?')}@{tags.get('d', '?')}")
    action = reply.smtp_class
    text = reply.text.strip() if action in ("reject", "tempfail") else ""
    return Verdict(
        action, spf.lower(), dkim_words, dmarc.lower(), ",".join(sigs), text[:80], arc.lower()
    )


def send_chain(
    addresses: Sequence[str], work: Work, timeout: float, queue_id: str
) -> tuple[Reply, list[Modification]]:
    """Send one message through each milter in turn; stop at the first non-accept."""
    raw = work.raw
    added: list[Modification] = []
    reply: Reply | None = None
    for address in addresses:
        with MilterClient(address, timeout=timeout) as client:
            reply = client.send_message(
                raw,
                client_ip=work.client_ip,
                helo=work.helo,
                mail_from=work.mail_from,
                rcpts=work.rcpts,
                macros=work.macros,
                queue_id=queue_id,
            )
        mods = reply.added_headers()
        added.extend(mods)
        if reply.smtp_class != "accept":
            break
        # the next milter sees this one's headers (inserted ones at the top, as Postfix does)
        top = b"".join(header_line(m.name, m.value) for m in mods)
        raw = top + raw
    assert reply is not None
    return reply, added


def run_load(
    addresses: Sequence[str],
    works: Sequence[Work],
    concurrency: int,
    count: int,
    duration: float,
    *,
    timeout: float = 120.0,
    keep_per_message: bool = False,
    keep_signed: int = 0,
    on_tick: Callable[[], None] | None = None,
) -> RunResult:
    """Replay ``works`` (cycling) on ``concurrency`` threads; stop at ``count`` or ``duration``."""
    result = RunResult()
    lock = threading.Lock()
    counter = itertools.count()
    deadline = time.monotonic() + duration

    def worker() -> None:
        while True:
            with lock:
                i = next(counter)
            if i >= count or time.monotonic() >= deadline:
                return
            work = works[i % len(works)]
            qid = f"B{i:09X}"
            start = time.monotonic()
            error = ""
            reply: Reply | None = None
            added: list[Modification] = []
            try:
                reply, added = send_chain(addresses, work, timeout, qid)
            except Exception as exc:  # a failed message is counted, never fatal
                error = f"{type(exc).__name__}: {exc}"
            elapsed = time.monotonic() - start
            verdict = verdict_of(reply, added, error)
            with lock:
                result.messages += 1
                result.latencies.append(elapsed)
                result.verdicts[verdict] += 1
                if error:
                    result.errors += 1
                    result.first_error = result.first_error or error
                if keep_per_message:
                    result.per_message.append((work.name, verdict))
                if not result.sample_headers and added:
                    result.sample_headers = [(m.name, unfold(m.value)) for m in added]
                if len(result.signed_samples) < keep_signed and verdict.signatures:
                    top = b"".join(
                        header_line(m.name, m.value)
                        for m in added
                        if m.name.lower() == "dkim-signature"
                    )
                    result.signed_samples.append(top + work.raw)

    cpu0 = _self_cpu()
    t0 = time.monotonic()
    threads = [
        threading.Thread(target=worker, name=f"load-{n}", daemon=True) for n in range(concurrency)
    ]
    for t in threads:
        t.start()
    for t in threads:
        while t.is_alive():
            t.join(0.5)
            if on_tick is not None:
                on_tick()
            if time.monotonic() > deadline + timeout + 30:
                break  # a hung milter: stop waiting, the caller stops the process
    result.wall_s = time.monotonic() - t0
    result.client_cpu_s = _self_cpu() - cpu0
    return result


def _self_cpu() -> float:
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


def works_from_manifest(set_info: dict[str, Any]) -> list[Work]:
    """The messages of one manifest set, loaded into memory."""
    env = set_info["envelope"]
    out = []
    for path in set_info["files"]:
        with open(path, "rb") as fh:
            raw = fh.read()
        out.append(
            Work(
                raw,
                env["client_ip"],
                env["helo"],
                env["mail_from"],
                tuple(env["rcpts"]),
                dict(env["macros"]),
                name=path,
            )
        )
    return out
