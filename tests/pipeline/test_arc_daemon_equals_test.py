"""The daemon and ``authmilter test --json`` agree on ARC messages too (the differential
test of test_daemon_equals_test.py, over chains: passing, broken, trusted, malformed)."""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Callable
from pathlib import Path

import pytest

from authmilter.model import Envelope, parse_message
from tests.pipeline.test_daemon_equals_test import Corpus, _probe, cli_answer, daemon_answer
from tests.support.arcchains import (
    LIST,
    LIST_IP,
    LIST_SENDER,
    add_list,
    chain,
    fake_sets,
    list_forwarded,
    seal,
    three_hops,
)
from tests.support.daemon import AuthmilterDaemon
from tests.support.dnsserver import DnsServer
from tests.support.engines import example_zone
from tests.support.keys import simple_message
from tests.support.zones import serve

ENV = Envelope(
    client_ip=ipaddress.ip_address(LIST_IP),
    client_name="lists.example.org",
    helo="lists.example.org",
    mail_from=LIST_SENDER,
    rcpt_to=("bob@example.org",),
)


def arc_corpus(trusted: list[str]) -> Corpus:
    resolver = add_list(example_zone())
    hops = three_hops()
    for hop in hops:
        (name, rdtype), values = hop.record
        resolver.add(name, rdtype, values[0])
    corpus = Corpus(
        f"arc-trusted{len(trusted)}",
        {"milter": {"authserv_id": "mx.test"}, "arc": {"trusted_sealers": trusted}},
        [],
        resolver,
    )
    listed = list_forwarded()
    messages = {
        "list": listed,
        "list-altered": listed.replace(b"list footer", b"altered"),
        "three-hops": chain(simple_message(), hops),
        "oldest-pass-2": seal(
            seal(simple_message(), hops[0]).replace(b"Hello.", b"Hello, again."), hops[1]
        ),
        "cv-fail": seal(listed, hops[1], cv="fail"),
        "fifty-one": fake_sets(51),
        "no-chain": simple_message(),
        "list-resealed": seal(listed, LIST),
    }
    for pid, raw in messages.items():
        _probe(pid, parse_message(raw, ENV), ENV, corpus)
    return corpus


@pytest.mark.parametrize("trusted", [[], [LIST.domain]], ids=["untrusted", "trusted"])
def test_daemon_and_test_agree_on_arc(
    trusted: list[str],
    authmilter_daemon: Callable[..., AuthmilterDaemon],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    corpus = arc_corpus(trusted)
    with DnsServer() as dns:
        assert corpus.resolver is not None
        serve(dns, corpus.resolver)
        config = {
            **corpus.config,
            "trust": {"internal_hosts": []},
            "dns": {"nameservers": [dns.address], "timeout": 2.0},
        }
        daemon = authmilter_daemon(config)
        differences = []
        actions = {}
        for probe in corpus.probes:
            from_daemon = daemon_answer(daemon.socket, probe)
            from_test = cli_answer(daemon.config_path, dns.address, probe, tmp_path, capsys)
            actions[probe.id] = from_daemon["action"]
            if from_daemon != from_test:
                differences.append((probe.id, from_daemon, from_test))
        assert not differences, json.dumps(differences[:3], indent=1, default=str)
        assert len(corpus.probes) == 8
        assert actions["list"] == ("accept" if trusted else "reject")
        assert actions["list-altered"] == "reject"  # the chain fails: no override
