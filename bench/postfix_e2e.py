"""End to end: Debian's Postfix with ``smtp-source`` in front and ``smtp-sink`` behind.

A private Postfix instance (``tests/support/postfix.py``: own config and queue directories,
nothing chrooted, loopback only, relaying everything to the sink) calls the milters of one
configuration through ``smtpd_milters``; ``smtp-source`` sends one signed 2 KB corpus message
N times over S parallel SMTP sessions (one message per session). The rate is messages
accepted per second of ``smtp-source`` wall time (the milters run inside the SMTP dialogue);
CPU is the milters' and the Postfix process tree's. ``smtp-sink -D`` keeps what was
delivered, so one delivered message's Authentication-Results can be shown.
"""

from __future__ import annotations

import os
import pwd
import re
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench import corpus
from bench.procs import Proc
from bench.procstat import cpu_seconds

SMTP_SOURCE = "/usr/sbin/smtp-source"
SMTP_SINK = "/usr/sbin/smtp-sink"


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _count_delivered(dump: Path) -> int:
    try:
        data = dump.read_bytes()
    except FileNotFoundError:
        return 0
    return len(re.findall(rb"(?m)^X-Client-Addr: ", data)) or data.count(b"\nMessage-ID: ")


def run(  # noqa: PLR0915 (one linear procedure)
    bench: Any,
    work: Path,
    manifest: dict[str, Any],
    quick: bool,
    log: Callable[[str], None],
) -> dict[str, Any]:
    """Run authmilter and opendkim+opendmarc behind Postfix; return the results."""
    from tests.support.postfix import PostfixError, PostfixInstance, postfix_available

    reason = postfix_available()
    if reason or not Path(SMTP_SOURCE).exists() or not Path(SMTP_SINK).exists():
        return {"error": reason or "smtp-source/smtp-sink not found (package postfix)"}
    n, sessions = (200, 4) if quick else (3000, 16)
    src = Path(manifest["sets"]["inbound-2k-rsa"]["files"][0])
    msg_file = work / "postfix" / "message.txt"
    msg_file.parent.mkdir(parents=True, exist_ok=True)
    msg_file.write_bytes(src.read_bytes().replace(b"\r\n", b"\n"))  # smtp-source adds CRLF
    work.chmod(0o755)
    (work / "postfix").chmod(0o755)
    configs = {
        "authmilter": ("authmilter",),
        "opendkim+opendmarc": ("opendkim-verify", "opendmarc"),
    }
    runs: list[dict[str, Any]] = []
    argv_text = ""
    for name, chain in configs.items():
        if not bench.ensure(chain):
            runs.append({"name": name, "error": "milter did not start"})
            continue
        for m in chain:
            # Postfix's smtpd runs as user postfix: it must reach the sockets
            os.chmod(bench.specs[m].socket, 0o666)  # noqa: S103
            os.chmod(Path(bench.specs[m].socket).parent, 0o755)  # noqa: S103
        sink_port = _free_port()
        sinkdir = work / "postfix" / "sink"
        sinkdir.mkdir(exist_ok=True)
        pw = pwd.getpwnam("postfix")
        os.chown(sinkdir, pw.pw_uid, pw.pw_gid)  # smtp-sink -u postfix writes the dump
        dump = sinkdir / f"{name}.mbox"
        dump.unlink(missing_ok=True)
        sink = Proc(
            "smtp-sink",
            [SMTP_SINK, "-u", "postfix", "-D", str(dump), f"127.0.0.1:{sink_port}", "256"],
            work / "postfix" / f"sink-{name}.log",
        ).start()
        milter_spec = ", ".join(bench.specs[m].address for m in chain)
        try:
            with PostfixInstance(
                work / "postfix",
                milter_spec,
                sink_port,
                submission=False,
                mynetworks="",
                hostname="mx.receiver.example",
                extra_main_cf={"in_flow_delay": "0", "non_smtpd_milters": ""},
            ) as pf:
                master = pf.master_pid()
                assert master is not None
                argv = [
                    SMTP_SOURCE,
                    "-s",
                    str(sessions),
                    "-m",
                    str(n),
                    "-F",
                    str(msg_file),
                    "-f",
                    f"bounce@{corpus.INBOUND_DOMAIN}",
                    "-t",
                    corpus.RCPT,
                    "-M",
                    corpus.INBOUND_HELO,
                    f"127.0.0.1:{pf.port}",
                ]
                argv_text = " ".join(argv).replace(str(work), "bench/work")
                pids = [bench.procs[m].pid for m in chain]
                cpu0 = [cpu_seconds(p) for p in pids]
                pcpu0 = cpu_seconds(master)
                t0 = time.monotonic()
                out = subprocess.run(argv, capture_output=True, text=True, timeout=600, check=False)
                wall = time.monotonic() - t0
                mcpu = sum(cpu_seconds(p) - c for p, c in zip(pids, cpu0, strict=True))
                pcpu = cpu_seconds(master) - pcpu0
                deadline = time.monotonic() + (30 if quick else 120)
                while _count_delivered(dump) < n and time.monotonic() < deadline:
                    time.sleep(0.5)
                delivered = _count_delivered(dump)
                text = dump.read_text(errors="replace") if dump.exists() else ""
                first = text[: text.find("\n\n", text.find("Message-ID:")) + 1 or 8192]
                ars = re.findall(r"(?m)^Authentication-Results: (.*(?:\n[ \t].*)*)", first)
                sample = " / ".join(re.sub(r"\s+", " ", a) for a in ars)[:400] or "(none)"
                runs.append(
                    {
                        "name": name,
                        "messages": n,
                        "sessions": sessions,
                        "wall_s": wall,
                        "rate": n / wall,
                        "milter_cpu_ms": mcpu * 1000 / n,
                        "postfix_cpu_ms": pcpu * 1000 / n,
                        "delivered": delivered,
                        "sample_ar": sample.replace("|", "/"),
                        "smtp_source_rc": out.returncode,
                        "smtp_source_err": out.stderr[-300:],
                    }
                )
                log(
                    f"  {name:20} {n / wall:7.1f} msg/s, milter {mcpu * 1000 / n:.2f} ms/msg, "
                    f"delivered {delivered}/{n}"
                )
            pf.cleanup()
        except PostfixError as exc:
            runs.append({"name": name, "error": str(exc)[:300]})
        finally:
            sink.stop()
    ok = [r for r in runs if "error" not in r]
    if not ok:
        return {"error": "; ".join(f"{r['name']}: {r['error']}" for r in runs)}
    return {
        "runs": ok,
        "command": argv_text,
        "description": (
            f"Private Postfix {bench_version()} (not chrooted, loopback), "
            "`smtpd_milters` = the milter(s); client 127.0.0.1 (allowed by the corpus SPF "
            "record), not in mynetworks. Rate = messages / smtp-source wall time. Postfix "
            "CPU = its master process tree (smtpd, cleanup, qmgr, smtp)."
        ),
    }


def bench_version() -> str:
    """Postfix's mail_version."""
    try:
        out = subprocess.run(
            ["/usr/sbin/postconf", "-d", "-h", "mail_version"],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
    except OSError:
        return "?"
    return out.stdout.strip()
