"""Shared by the ``authmilter report`` tests: a config, history rows, a DNS zone, a CLI run."""

from __future__ import annotations

import contextlib
import io
import json
import os
import socket
import sys
from pathlib import Path
from typing import Any

from authmilter.cli import main
from authmilter.reports.history import DkimAuth, HistoryRow, PublishedPolicy, SpfAuth
from authmilter.reports.store import open_store
from tests.support.daemon import REPO, SRC

DAY = 86400
T0 = 1_796_515_200  # 2026-12-06 00:00 UTC
PERIOD = ["--begin", str(T0), "--end", str(T0 + DAY)]

# example.com reports to itself; example.org to an authorised external address and an
# unauthorised one; excluded.example is in reports.exclude_domains; norua.example has no rua
ZONE = """
_dmarc.example.com. 300 IN TXT "v=DMARC1; p=reject; rua=mailto:dmarc@example.com"
_dmarc.example.org. 300 IN TXT "v=DMARC1; p=none; rua=mailto:rua@reports.example.net"
_dmarc.example.net. 300 IN TXT "v=DMARC1; p=none"
example.org._report._dmarc.reports.example.net. 300 IN TXT "v=DMARC1"
_dmarc.unauth.example. 300 IN TXT "v=DMARC1; p=none"
"""
POLICIES = {
    "example.com": PublishedPolicy("example.com", "reject", rua=("mailto:dmarc@example.com",)),
    "example.org": PublishedPolicy(
        "example.org",
        "none",
        rua=("mailto:rua@reports.example.net!50m", "mailto:x@unauth.example", "https://x.test/"),
    ),
    "excluded.example": PublishedPolicy(
        "excluded.example", "none", rua=("mailto:d@excluded.example",)
    ),
    "norua.example": PublishedPolicy("norua.example", "reject"),
}
# per domain: (source ip, count) groups; the DKIM result alternates to make several groups
ROWS = {
    "example.com": [("192.0.2.1", 7), ("192.0.2.2", 3), ("2001:db8::5", 2)],
    "example.org": [("198.51.100.1", 4)],
    "excluded.example": [("192.0.2.9", 2)],
    "norua.example": [("192.0.2.10", 1)],
}


def rows(domains: dict[str, list[tuple[str, int]]] | None = None, t0: int = T0) -> list[HistoryRow]:
    """History rows for the period starting at ``t0``."""
    out = []
    for domain, groups in (domains or ROWS).items():
        for ip, count in groups:
            for n in range(count):
                out.append(
                    HistoryRow(
                        time=t0 + 60 * n + 1,
                        source_ip=ip,
                        envelope_from="" if ip.startswith("2001") else domain,
                        header_from=domain,
                        policy=POLICIES.get(domain) or own_policy(domain),
                        disposition="none",
                        dmarc_dkim="pass",
                        dmarc_spf="fail",
                        dkim=(DkimAuth(domain, "s1", "pass"),),
                        spf=SpfAuth(domain, "mfrom", "softfail"),
                        envelope_to="receiver.example",
                        host="mx1.receiver.example",
                    )
                )
    return out


def own_policy(domain: str) -> PublishedPolicy:
    """p=none, reports to the domain itself (no DNS needed to verify)."""
    return PublishedPolicy(domain, "none", rua=(f"mailto:dmarc@{domain}",))


def fill(dsn: str, history: list[HistoryRow]) -> None:
    """Store ``history`` (migrating first)."""
    store = open_store(dsn)
    store.migrate()
    store.insert(history)
    store.close()


def write_config(tmp: Path, dsn: str, relay_port: int) -> Path:
    """A config for the report command."""
    path = tmp / "authmilter.toml"
    path.write_text(
        f"""
[milter]
authserv_id = "mx.receiver.example"

[dns]
timeout = 2

[reports]
history = "{dsn}"
org_name = "Receiver Example"
email = "dmarc-reports@receiver.example"
extra_contact_info = "https://receiver.example/dmarc"
relay = "smtp://127.0.0.1:{relay_port}"
exclude_domains = ["excluded.example"]
"""
    )
    return path


def free_port() -> int:
    """A loopback TCP port nobody listens on (bound then closed)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def report(*args: str) -> tuple[int, dict[str, Any]]:
    """``authmilter report ARGS --json`` in-process: (exit status, the JSON printed)."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = main(["report", *args, "--json"])
    text = out.getvalue()
    return code, json.loads(text) if text.strip() else {}


def command(*args: str) -> list[str]:
    """``authmilter report ARGS --json`` as a subprocess command line."""
    return [sys.executable, "-m", "authmilter", "report", *args, "--json"]


def env() -> dict[str, str]:
    """The environment a subprocess needs to import the source tree."""
    e = dict(os.environ)
    e["PYTHONPATH"] = os.pathsep.join([str(SRC), str(REPO), *filter(None, [e.get("PYTHONPATH")])])
    return e


def by_domain(result: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The ``--json`` entries by domain."""
    return {r["domain"]: r for r in result["reports"]}
