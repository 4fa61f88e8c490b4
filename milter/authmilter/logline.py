"""The one log line per message: ``qid= conn= client= from=<> key=value ... action=``.

Every value that comes from the message or the SMTP session goes through :func:`safe`, so
that no header can split the line or plant a ``key=value`` pair of its own.
"""

from __future__ import annotations

from authmilter.decision import Decision
from authmilter.model import Envelope
from authmilter.results import AuthResults, FromStatus, Result

MAX_VALUE = 200  # characters of one untrusted value in the log


def safe(text: str, limit: int = MAX_VALUE) -> str:
    """Printable, no space or ``=``; anything else becomes ``?``; at most ``limit`` chars."""
    text = text[:limit]
    if text.isprintable() and " " not in text and "=" not in text:
        return text  # the usual value: nothing to replace, no step per character
    return "".join(c if c.isprintable() and c not in " =" else "?" for c in text)


def result_pairs(results: AuthResults) -> tuple[tuple[str, str], ...]:
    """key=value pairs for the checks' results."""
    out: list[tuple[str, str]] = []
    if results.trusted:
        out.append(("trusted", results.trusted.value))
    if results.iprev is not None:
        name = f"({safe(results.iprev.name)})" if results.iprev.name else ""
        out.append(("iprev", f"{results.iprev.result.value}{name}"))
    if results.spf is not None:
        spf = results.spf
        out.append(("spf", f"{spf.result.value}({spf.identity}:{safe(spf.domain)})"))
    for d in results.dkim:
        out.append(("dkim", f"{d.result.value}(d={safe(d.domain)} s={safe(d.selector)})"))
    if results.dmarc is not None:
        dm = results.dmarc
        testing = " t=y" if dm.testing else ""
        out.append(
            (
                "dmarc",
                f"{dm.result.value}(from={safe(dm.from_domain)} p={dm.policy.value}{testing})",
            )
        )
    elif results.from_field is not None and results.from_field.status != FromStatus.OK:
        out.append(("from", results.from_field.status.value))
    if results.arc is not None and results.arc.result != Result.NONE:
        arc = results.arc
        sealer = f"(i={arc.chain} d={safe(arc.sealers[0].domain)})" if arc.sealers else ""
        out.append(("arc", f"{arc.result.value}{sealer}"))
    for w in results.from_warnings:
        shown = f" shows={safe(w.shown)}" if w.shown else ""
        out.append(("from_warning", f"{w.kind.value}(from={safe(w.domain)}{shown})"))
    return tuple(out)


def decision_pairs(decision: Decision) -> tuple[tuple[str, str], ...]:
    """key=value pairs for what was decided, the action last."""
    action = decision.action.value
    if decision.reply is not None:
        action += f"({decision.reply.code} {decision.reply.status})"
    why = (("why", safe(decision.why)),) if decision.why else ()
    return (*decision.log, *why, ("action", action))


def format_line(env: Envelope, conn_id: str, pairs: tuple[tuple[str, str], ...]) -> str:
    """The whole line but for the elapsed time."""
    client = safe(env.client_name)
    if env.client_ip and not client.startswith("["):
        client = f"{client}[{env.client_ip}]"
    head = f"qid={safe(env.queue_id) or '-'} conn={conn_id} client={client or '-'}"
    body = " ".join(f"{k}={v}" for k, v in pairs)
    return f"{head} from=<{safe(env.mail_from)}> {body}"
