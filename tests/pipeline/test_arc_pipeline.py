"""ARC through the whole pipeline: engine, A-R, log line, ``authmilter test --json``, and
the trusted-sealer override of a DMARC reject (RFC 8617, issue 11 point 2)."""

from __future__ import annotations

import ipaddress
import json
from pathlib import Path
from typing import Any

import pytest

from authmilter.cli import main
from authmilter.decision import Action
from authmilter.model import Envelope, parse_message
from authmilter.results import Result
from tests.pipeline.test_hostile_input import parse_ar
from tests.support.arcchains import (
    LIST,
    LIST_IP,
    LIST_SENDER,
    Hop,
    add_list,
    list_forwarded,
    three_hops,
    zone,
)
from tests.support.engines import example_zone, make_engine
from tests.support.keys import new_rsa_key, simple_message
from tests.support.zones import zone_text

ENV = Envelope(
    client_ip=ipaddress.ip_address(LIST_IP),
    client_name="lists.example.org",
    helo="lists.example.org",
    mail_from=LIST_SENDER,
    rcpt_to=("bob@example.org",),
)


def evaluate(message: bytes, **sections: Any) -> tuple[Any, Any]:
    engine = make_engine(add_list(example_zone()), **sections)
    tx = parse_message(message, ENV)
    return engine.evaluate(tx)


def ar_field(decision: Any) -> str:
    values = [h.value for h in decision.add_headers if h.name == "Authentication-Results"]
    assert len(values) == 1
    return str(values[0])


def ar_of(decision: Any) -> str:
    values = [h.value for h in decision.add_headers if h.name == "Authentication-Results"]
    assert len(values) == 1
    return " ".join(str(values[0]).split())


def test_list_mail_from_a_reject_domain_is_rejected_without_trusted_sealers() -> None:
    results, decision = evaluate(list_forwarded())
    assert results.arc.result is Result.PASS
    assert results.arc.newest_vouches_dmarc is False  # not read: the sealer is not trusted
    assert results.dmarc.result is Result.FAIL
    assert [d.result for d in results.dkim] == [Result.FAIL]  # the list broke it
    assert decision.action is Action.REJECT
    assert decision.dmarc_override == ""


def test_a_trusted_sealer_lifts_the_reject() -> None:
    results, decision = evaluate(list_forwarded(), arc={"trusted_sealers": ["Lists.Example.ORG."]})
    assert results.arc.newest_vouches_dmarc is True
    assert results.dmarc.result is Result.FAIL  # never turned into a pass
    assert decision.action is Action.ACCEPT
    assert decision.dmarc_override == "trusted_forwarder"
    assert ("arc_override", "lists.example.org") in decision.log
    ar = ar_of(decision)
    assert "arc=pass (1 sets) smtp.remote-ip=198.51.100.20;" in ar
    assert "dmarc=fail (p=reject dis=none) reason=" in ar
    assert ar.endswith("header.from=example.com (overridden: trusted ARC sealer lists.example.org)")
    _, infos = parse_ar(ar_field(decision))  # authres reads it back, arc and all
    methods = {i["method"]: i for i in infos}
    assert methods["arc"]["result"] == "pass"
    assert methods["arc"]["smtp.remote-ip"] == LIST_IP
    assert (methods["dmarc"]["result"], methods["dmarc"]["header.from"]) == ("fail", "example.com")


def test_quarantine_is_lifted_too() -> None:
    resolver = add_list(example_zone())
    resolver._records[("_dmarc.example.com", "TXT")] = ((b"v=DMARC1; p=quarantine",),)
    engine = make_engine(
        resolver, arc={"trusted_sealers": ["lists.example.org"]}, dmarc={"quarantine": "hold"}
    )
    _, decision = engine.evaluate(parse_message(list_forwarded(), ENV))
    assert (decision.action, decision.dmarc_override) == (Action.ACCEPT, "trusted_forwarder")


def test_another_trusted_sealer_does_not_help() -> None:
    _, decision = evaluate(list_forwarded(), arc={"trusted_sealers": ["other.example.org"]})
    assert decision.action is Action.REJECT


def test_a_trusted_sealer_whose_aar_does_not_vouch_changes_nothing() -> None:
    hop = Hop(LIST.domain, LIST.selector, results="spf=pass smtp.mailfrom=x@lists.example.org")
    results, decision = evaluate(list_forwarded(hop), arc={"trusted_sealers": [LIST.domain]})
    assert results.arc.result is Result.PASS and not results.arc.newest_vouches_dmarc
    assert decision.action is Action.REJECT


def test_a_forged_seal_in_the_trusted_sealers_name_fails_the_chain() -> None:
    """The attacker writes d=lists.example.org but cannot sign with the list's key."""
    forged = Hop(LIST.domain, LIST.selector, new_rsa_key(1024), LIST.results)
    results, decision = evaluate(list_forwarded(forged), arc={"trusted_sealers": [LIST.domain]})
    assert results.arc.result is Result.FAIL
    assert decision.action is Action.REJECT
    assert "arc=fail" in " ".join(str(decision.add_headers)) or decision.add_headers == ()


def test_with_arc_verify_off_there_is_no_arc_result_and_no_override() -> None:
    results, decision = evaluate(
        list_forwarded(), arc={"verify": False, "trusted_sealers": [LIST.domain]}
    )
    assert results.arc is None
    assert decision.action is Action.REJECT


def test_oldest_pass_in_the_ar() -> None:
    hops = three_hops()
    from tests.support.arcchains import seal

    first = seal(simple_message(), hops[0])
    message = seal(first.replace(b"Hello.", b"Hello, changed."), hops[1])
    resolver = zone(hops)
    engine = make_engine(resolver)
    results, decision = engine.evaluate(parse_message(message, ENV))
    assert results.arc.result is Result.PASS and results.arc.oldest_pass == 2
    assert "arc=pass (2 sets) header.oldest-pass=2 smtp.remote-ip=198.51.100.20" in ar_of(decision)


def test_a_failed_chain_says_why_in_fixed_words() -> None:
    bad = list_forwarded().replace(b"list footer", b"altered footer")
    results, decision = evaluate(bad)
    assert results.arc.result is Result.FAIL
    # refused (DMARC reject): the A-R it would have carried is not added; the log says arc
    assert decision.action is Action.REJECT


def test_the_log_line_names_the_chain_and_the_override() -> None:
    from authmilter import logline

    results, decision = evaluate(list_forwarded(), arc={"trusted_sealers": [LIST.domain]})
    pairs = dict(logline.result_pairs(results) + logline.decision_pairs(decision))
    assert pairs["arc"] == "pass(i=1 d=lists.example.org)"
    assert pairs["arc_override"] == "lists.example.org"
    assert pairs["action"] == "accept"


def _test_json(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], message: bytes, config: str = ""
) -> dict[str, Any]:
    (tmp_path / "msg.eml").write_bytes(message)
    (tmp_path / "z.zone").write_text(zone_text(add_list(example_zone())))
    (tmp_path / "a.toml").write_text(
        '[milter]\nauthserv_id = "mx.test"\n[trust]\ninternal_hosts = []\n' + config
    )
    args = [
        "test", "--json", "-c", str(tmp_path / "a.toml"), "--zone", str(tmp_path / "z.zone"),
        "--client-ip", LIST_IP, "--helo", "lists.example.org", "--mail-from", LIST_SENDER,
        "--rcpt", "bob@example.org", str(tmp_path / "msg.eml"),
    ]  # fmt: skip
    assert main(args) == 0
    out: dict[str, Any] = json.loads(capsys.readouterr().out)
    return out


def test_json_has_the_arc_object(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    r = _test_json(
        tmp_path, capsys, list_forwarded(), '[arc]\ntrusted_sealers = ["lists.example.org"]\n'
    )
    assert r["arc"] == {
        "result": "pass",
        "chain": 1,
        "oldest_pass": 0,
        "sealers": [
            {"instance": 1, "domain": "lists.example.org", "selector": "arc", "result": "pass"}
        ],
        "reason": "",
    }
    assert r["action"] == "accept"
    assert r["dmarc"]["result"] == "fail" and r["dmarc"]["override"] == "trusted_forwarder"
    assert "arc_override=lists.example.org" in r["log"]
    assert "arc=pass(i=1 d=lists.example.org)" in r["log"]


def test_json_arc_object_without_a_chain(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    r = _test_json(tmp_path, capsys, simple_message())
    assert r["arc"] == {"result": "none", "chain": 0, "oldest_pass": None, "sealers": [],
                        "reason": ""}  # fmt: skip
    r = _test_json(tmp_path, capsys, simple_message(), "[arc]\nverify = false\n")
    assert r["arc"]["result"] == "none" and r["arc"]["reason"] == "not checked"


def test_trusted_sealers_must_be_domain_names() -> None:
    from authmilter.config import from_dict
    from authmilter.errors import ConfigError

    with pytest.raises(ConfigError, match="trusted_sealers"):
        from_dict({"arc": {"trusted_sealers": ["not a domain"]}})
    cfg = from_dict({"arc": {"trusted_sealers": ["Lists.Example.org.", "bücher.example"]}})
    assert cfg.arc.trusted_sealer_names() == {"lists.example.org", "xn--bcher-kva.example"}


def test_a_message_without_a_chain_says_arc_none() -> None:
    """RFC 8617 section 10: the A-R reports the ARC method for every inbound message."""
    accept = {"reject": False, "quarantine": "none"}  # the A-R of an accepted message
    results, decision = evaluate(simple_message(), dmarc=accept)
    assert results.arc.result is Result.NONE
    assert "arc=none smtp.remote-ip=198.51.100.20;" in ar_of(decision)
    _, decision = evaluate(simple_message(), dmarc=accept, arc={"verify": False})
    assert " arc=" not in ar_of(decision)
