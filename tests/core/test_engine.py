"""The engine end to end over a StaticResolver: the verdicts the issue names."""

from __future__ import annotations

import ipaddress

import pytest

from authmilter.config import from_dict
from authmilter.decision import Action, Decision
from authmilter.engine import Engine
from authmilter.logline import result_pairs
from authmilter.model import Envelope, parse_message
from authmilter.results import Result
from authmilter.staticresolver import StaticResolver
from tests.support.engines import example_zone, make_engine
from tests.support.keys import sign, simple_message

GOOD_IP = ipaddress.ip_address("192.0.2.25")
BAD_IP = ipaddress.ip_address("203.0.113.9")


def zone(temperror: str = "") -> StaticResolver:
    return example_zone(*temperror.split())


engine = make_engine


def run(
    eng: Engine,
    message: bytes,
    ip: ipaddress.IPv4Address | ipaddress.IPv6Address = GOOD_IP,
    mail_from: str = "alice@example.com",
    auth: str | None = None,
) -> Decision:
    env = Envelope(
        client_ip=ip,
        helo="mail.example.com",
        mail_from=mail_from,
        auth_user=auth,
        rcpt_to=("bob@example.org",),
    )
    tx = parse_message(message, env)
    return eng.evaluate(tx, eng.check_envelope(env))[1]


def ar(decision: Decision) -> str:
    values = [h.value for h in decision.add_headers if h.name == "Authentication-Results"]
    assert len(values) == 1
    assert values[0] is not None
    return values[0]


@pytest.mark.parametrize("kind", ["rsa", "ed25519"])
def test_signed_message_passes(kind: str) -> None:
    msg = sign(simple_message(), "example.com", "rsa" if kind == "rsa" else "ed", kind)
    d = run(engine(), msg)
    assert d.action == Action.ACCEPT and d.reply is None
    header = ar(d)
    assert header.startswith("mx.test;")
    assert "dkim=pass" in header and "dmarc=pass" in header and "spf=pass" in header


def test_both_signatures_in_one_message_pass() -> None:
    msg = sign(sign(simple_message(), "example.com", "rsa"), "example.com", "ed", "ed25519")
    eng = engine()
    env = Envelope(client_ip=GOOD_IP, mail_from="alice@example.com")
    results = eng.authenticate(parse_message(msg, env))
    assert [r.result for r in results.dkim] == [Result.PASS, Result.PASS]
    assert [r.algorithm for r in results.dkim] == ["ed25519-sha256", "rsa-sha256"]


def test_modified_body_fails_and_spoof_from_elsewhere_is_rejected() -> None:
    msg = sign(simple_message(), "example.com", "rsa").replace(b"Hello.", b"Hullo.")
    d = run(engine(), msg, ip=BAD_IP)
    assert d.action == Action.REJECT
    assert d.reply is not None and (d.reply.code, d.reply.status) == (550, "5.7.26")
    assert "example.com" in d.reply.text


def test_unsigned_spoof_of_reject_domain_is_rejected() -> None:
    d = run(engine(), simple_message(), ip=BAD_IP, mail_from="spoof@attacker.example")
    assert d.action == Action.REJECT and d.reply is not None and d.reply.status == "5.7.26"


def test_key_lookup_timeout_under_reject_is_tempfail_not_reject() -> None:
    msg = sign(simple_message(), "example.com", "rsa")
    eng = engine(zone(temperror="rsa._domainkey.example.com"))
    env = Envelope(client_ip=BAD_IP, mail_from="alice@example.com")
    results = eng.authenticate(parse_message(msg, env))
    assert results.dkim[0].result == Result.TEMPERROR
    assert results.dmarc is not None and results.dmarc.result == Result.TEMPERROR
    d = run(eng, msg, ip=BAD_IP)
    assert d.action == Action.TEMPFAIL
    assert d.reply is not None and d.reply.code == 451


def test_two_from_fields_never_pass() -> None:
    msg = sign(simple_message(extra="From: Mallory <m@evil.example>\n"), "example.com", "rsa")
    d = run(engine(), msg)
    assert d.action == Action.REJECT
    d2 = run(engine(dmarc={"multiple_from": "strictest"}), msg)
    assert d2.action != Action.ACCEPT or "dmarc=pass" not in ar(d2)


def test_sasl_user_is_not_dmarc_checked_or_rejected() -> None:
    d = run(engine(), simple_message(), ip=BAD_IP, auth="alice")
    assert d.action == Action.ACCEPT
    assert d.add_headers == ()  # trust.auth_results = "none": no A-R tells the login name
    full = engine(trust={"internal_hosts": [], "auth_results": "full"})
    header = ar(run(full, simple_message(), ip=BAD_IP, auth="alice"))
    assert "dmarc=" not in header and "smtp.auth=alice" in header


def test_internal_host_is_not_checked() -> None:
    eng = Engine(from_dict({"trust": {"internal_hosts": ["203.0.113.0/24"]}}), zone())
    d = run(eng, simple_message(), ip=BAD_IP, mail_from="spoof@attacker.example")
    assert d.action == Action.ACCEPT


def test_forged_authentication_results_are_removed() -> None:
    msg = simple_message(
        extra="Authentication-Results: MX.TEST; dkim=pass header.d=example.com\n"
        "Authentication-Results: other.example; spf=pass\n"
        "Authentication-Results: mx.test; garbage (((\n"
    )
    d = run(engine(), sign(msg, "example.com", "rsa"))
    assert sorted(e.index for e in d.remove_headers) == [1, 3]
    assert all(e.name == "Authentication-Results" for e in d.remove_headers)


def test_quarantine_hold_and_header() -> None:
    resolver = zone()
    resolver.add("_dmarc.example.net", "TXT", "v=DMARC1; p=quarantine")
    msg = simple_message(from_addr="a@example.net")
    d = run(engine(resolver), msg, ip=BAD_IP, mail_from="a@example.net")
    assert d.action == Action.QUARANTINE and d.why == "dmarc:quarantine:example.net"
    d = run(
        engine(resolver, dmarc={"quarantine": "header"}), msg, ip=BAD_IP, mail_from="a@example.net"
    )
    assert d.action == Action.ACCEPT
    assert any(h.name == "X-Authmilter-Quarantine" for h in d.add_headers)


def test_headers_are_safe_for_libmilter() -> None:
    msg = sign(simple_message(), "example.com", "rsa")
    for h in run(engine(), msg).add_headers:
        assert h.value is not None and "\r" not in h.value
        for line in h.value.split("\n")[1:]:
            assert line[:1] in (" ", "\t")


def test_from_with_two_addresses_of_one_domain_is_evaluated() -> None:
    """Two mailboxes of one domain: DMARC runs for that domain (no multiple-From reject)."""
    msg = sign(simple_message(from_addr="alice@example.com, bob@example.com"), "example.com", "rsa")
    d = run(engine(), msg, ip=BAD_IP)
    assert d.action == Action.ACCEPT, d
    assert "dkim=pass" in ar(d) and "dmarc=pass" in ar(d)
    spoof = simple_message(from_addr="a@example.com, <b@example.com>")
    d = run(engine(), spoof, ip=BAD_IP, mail_from="x@attacker.example")
    assert d.action == Action.REJECT and d.reply is not None and d.reply.status == "5.7.26"


# --------------------------------------------------------------------------- From warnings

DECEPTIVE = '"ceo@victim.example" <alice@example.com>'
FLAG_TEXT = "display-name: the From display name shows an address in another domain"


def _flag_headers(d: Decision, name: str = "X-Authmilter-From-Warning") -> list[str | None]:
    return [h.value for h in d.add_headers if h.name == name]


def test_from_warning_flag_by_default_keeps_the_dmarc_pass() -> None:
    msg = sign(simple_message(from_addr=DECEPTIVE), "example.com", "rsa")
    eng = engine()
    env = Envelope(client_ip=GOOD_IP, mail_from="alice@example.com", rcpt_to=("b@example.org",))
    results, d = eng.evaluate(parse_message(msg, env), eng.check_envelope(env))
    assert results.dmarc is not None and results.dmarc.result == Result.PASS
    assert d.action == Action.ACCEPT and d.flag_from
    assert _flag_headers(d) == [FLAG_TEXT]
    header = ar(d).replace("\n\t", " ")
    assert "dmarc=pass (p=reject dis=none)" in header
    assert "(From display name shows an address in another domain)" in header
    assert "victim.example" not in header  # fixed words only
    assert ("from_warning", "display-name(from=example.com shows=victim.example)") in (
        result_pairs(results)
    )


def test_from_warning_off() -> None:
    msg = sign(simple_message(from_addr=DECEPTIVE), "example.com", "rsa")
    eng = engine(**{"from": {"display_name_check": "off"}})
    env = Envelope(client_ip=GOOD_IP, mail_from="alice@example.com")
    results = eng.authenticate(parse_message(msg, env))
    assert results.from_warnings == ()
    d = run(eng, msg)
    assert d.action == Action.ACCEPT and not _flag_headers(d)
    assert "From display name" not in ar(d)


def test_from_warning_reject() -> None:
    msg = sign(simple_message(from_addr=DECEPTIVE), "example.com", "rsa")
    d = run(engine(**{"from": {"display_name_check": "reject"}}), msg)
    assert d.action == Action.REJECT and d.reply is not None
    assert (d.reply.code, d.reply.status) == (550, "5.7.1")
    assert d.reply.text == "the From field's display name shows an address in another domain"
    assert d.why == "from:display-name" and d.add_headers == ()


def test_mailsploit_local_part_is_flagged() -> None:
    resolver = zone()
    resolver.add("evil.example", "TXT", f"v=spf1 ip4:{BAD_IP} -all")
    msg = simple_message(from_addr="=?utf-8?b?Y2VvQHZpY3RpbS5leGFtcGxlAA==?=@evil.example")
    d = run(engine(resolver), msg, ip=BAD_IP, mail_from="a@evil.example")
    assert d.action == Action.ACCEPT
    assert _flag_headers(d) == [
        "local-part: the From local part hides an encoded word or another address"
    ]


def test_ordinary_display_name_is_not_flagged() -> None:
    msg = sign(
        simple_message(from_addr='"alice@example.com" <alice@example.com>'), "example.com", "rsa"
    )
    d = run(engine(), msg)
    assert d.action == Action.ACCEPT and not d.flag_from and not _flag_headers(d)


def test_trusted_senders_are_not_checked() -> None:
    msg = simple_message(from_addr=DECEPTIVE)
    eng = engine(**{"from": {"display_name_check": "reject"}})
    d = run(eng, msg, ip=BAD_IP, auth="alice")
    assert d.action == Action.ACCEPT and not _flag_headers(d)


def test_flag_header_in_the_message_is_removed_and_replaced() -> None:
    forged = "X-Authmilter-From-Warning: none\nx-authmilter-from-warning: safe to pay\n"
    msg = sign(simple_message(from_addr=DECEPTIVE, extra=forged), "example.com", "rsa")
    d = run(engine(), msg)
    removed = [(e.name, e.index) for e in d.remove_headers if e.name != "Authentication-Results"]
    assert removed == [("X-Authmilter-From-Warning", 2), ("X-Authmilter-From-Warning", 1)]
    assert _flag_headers(d) == [FLAG_TEXT]
    clean = sign(simple_message(extra=forged), "example.com", "rsa")
    assert len(run(engine(), clean).remove_headers) == 2  # removed even when nothing is found
    off = engine(**{"from": {"display_name_check": "off"}})
    assert run(off, clean).remove_headers == ()


def test_flag_header_name_is_configurable() -> None:
    msg = sign(simple_message(from_addr=DECEPTIVE), "example.com", "rsa")
    d = run(engine(**{"from": {"flag_header": "X-Spoof"}}), msg)
    assert _flag_headers(d, "X-Spoof") == [FLAG_TEXT] and not _flag_headers(d)
