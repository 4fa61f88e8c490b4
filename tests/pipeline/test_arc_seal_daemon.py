"""A sealing daemon adds the ARC set ``authmilter test --json`` shows, and it verifies.

The real daemon, driven over the milter protocol, and ``authmilter test`` get the same
message against the same loopback DNS server; their header edits must be the same but for
the seals' ``t=`` and ``b=`` (the second they were made in), and the message as the daemon
leaves it must verify in dkimpy and in authmilter's own verifier.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import dkim
import pytest

from authmilter.model import Envelope
from authmilter.results import Result
from tests.pipeline.test_daemon_equals_test import Probe, cli_answer, daemon_answer
from tests.support import arcseal as a
from tests.support.daemon import AuthmilterDaemon
from tests.support.dnsserver import DnsServer
from tests.support.engines import GOOD_IP
from tests.support.keys import shared_rsa_key, sign, simple_message
from tests.support.zones import serve

FWD = ("forwarder.example", "arc", shared_rsa_key())
_T = re.compile(r"\bt=\d+")
_B = re.compile(r"(?<![A-Za-z.])b=[\sA-Za-z0-9+/=]*\Z")


def _comparable(answer: dict[str, Any]) -> list[tuple[str, str, int]]:
    signed = ("ARC-Seal", "ARC-Message-Signature")
    return [
        (name, _B.sub("b=", _T.sub("t=T", value)) if name in signed else value, index)
        for name, value, index in answer["add"]
    ]


def test_daemon_seals_as_test_shows(
    authmilter_daemon: Callable[..., AuthmilterDaemon],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    key = FWD[2].write(tmp_path / "arc.key")
    raw = sign(simple_message(), "example.com", "rsa")
    env = Envelope(
        client_ip=ipaddress.ip_address(GOOD_IP),
        client_name="client.example",
        helo="client.example",
        mail_from="alice@example.com",
        rcpt_to=("bob@example.org",),
    )
    probe = Probe("sealed", raw, env)
    with DnsServer() as dns:
        serve(dns, a.zone_with(FWD))
        config = {
            "milter": {"authserv_id": "mx.test"},
            "trust": {"internal_hosts": []},
            "dns": {"nameservers": [dns.address], "timeout": 2.0},
            "arc": {"seal": True, "domain": FWD[0], "selector": FWD[1], "key": str(key)},
        }
        daemon = authmilter_daemon(config)
        from_daemon = daemon_answer(daemon.socket, probe)
        from_test = cli_answer(daemon.config_path, dns.address, probe, tmp_path, capsys)
    assert from_daemon["action"] == from_test["action"] == "accept"
    assert _comparable(from_daemon) == _comparable(from_test)
    names = [name for name, _, _ in from_daemon["add"]]
    assert names[-3:] == ["ARC-Authentication-Results", "ARC-Message-Signature", "ARC-Seal"]
    delivered = raw.replace(b"\r\n", b"\n")
    for name, value, index in from_daemon["add"]:
        assert index == 0
        delivered = f"{name}: {value}\n".encode() + delivered
    cv, _, reason = a.dkimpy_verify(delivered, FWD)
    assert cv == dkim.CV_Pass, reason
    assert a.our_verify(delivered, FWD).result == Result.PASS
