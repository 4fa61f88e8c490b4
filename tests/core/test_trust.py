"""Who is "us", what the sender login map means for each source of trust, and which
Authentication-Results outbound mail carries (issue 13, items 5 and 12)."""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Any

import pytest

from authmilter.config import from_dict
from authmilter.decision import Action, Decision
from authmilter.engine import Engine
from authmilter.model import Envelope, parse_message
from authmilter.signing.loginmap import LoginMap
from authmilter.signing.signer import Signer
from authmilter.trust import Trust
from tests.support.engines import BAD_IP, example_zone
from tests.support.keys import shared_ed25519_key, simple_message

LOOPBACK = ipaddress.ip_address("127.0.0.1")
OUTSIDE = ipaddress.ip_address(BAD_IP)
LOGIN = "alice-login"  # a login name that is not part of any address
LOGIN_MAP = LoginMap(
    {"alice@example.com": frozenset({LOGIN}), "@example.com": frozenset({"admin"})}
)
VICTIM = "ceo@victim.example"  # not in the map; the zone has no DMARC record for it
# (trust source, envelope) pairs: every way a client is "us" without a SASL login
NO_SASL = {
    Trust.INTERNAL: Envelope(client_ip=LOOPBACK),
    Trust.DAEMON: Envelope(client_ip=OUTSIDE, daemon_name="ORIGINATING"),
    Trust.LOCAL: Envelope(client_ip=LOOPBACK, daemon_name="LOCAL"),
}
TRUST = {"daemon_names": ["ORIGINATING"], "local_daemon_names": ["LOCAL"]}


def engine(tmp_path: Path, login_map: LoginMap | None = LOGIN_MAP, **trust: Any) -> Engine:
    """An engine that signs example.com with Ed25519, with the given login map and trust.*."""
    key = shared_ed25519_key().write(tmp_path / "ed.key")
    cfg = from_dict(
        {
            "milter": {"authserv_id": "mx.test"},
            "trust": {**TRUST, **trust},
            "signing": {
                "keys": [{"domain": "example.com", "selector": "ed", "key_file": str(key)}]
            },
        }
    )
    signer = Signer.from_config(cfg.signing, "/")
    return Engine(cfg, example_zone(), signer=signer, login_map=login_map)


def send(
    eng: Engine,
    env: Envelope,
    from_addr: str = "alice@example.com",
    mail_from: str | None = None,
    extra: str = "",
) -> tuple[Trust | None, Decision]:
    env = Envelope(
        client_ip=env.client_ip,
        helo="client.example",
        mail_from=from_addr if mail_from is None else mail_from,
        rcpt_to=("bob@example.org",),
        auth_user=env.auth_user,
        daemon_name=env.daemon_name,
    )
    tx = parse_message(simple_message(from_addr=from_addr, extra=extra), env)
    results, decision = eng.evaluate(tx, eng.check_envelope(env))
    return results.trusted, decision


def names(decision: Decision) -> list[str]:
    return [h.name for h in decision.add_headers]


# --------------------------------------------------------------------------- classification


@pytest.mark.parametrize(
    ("env", "trust", "expected"),
    [
        (Envelope(client_ip=LOOPBACK, auth_user="a", daemon_name="LOCAL"), {}, Trust.AUTHENTICATED),
        (NO_SASL[Trust.LOCAL], {}, Trust.LOCAL),  # before internal_hosts: it is 127.0.0.1
        (NO_SASL[Trust.LOCAL], {"local_submission": "sign"}, Trust.LOCAL),
        (NO_SASL[Trust.LOCAL], {"local_submission": "check"}, None),
        (NO_SASL[Trust.LOCAL], {"local_daemon_names": []}, Trust.INTERNAL),  # not configured
        (NO_SASL[Trust.INTERNAL], {}, Trust.INTERNAL),
        (NO_SASL[Trust.DAEMON], {}, Trust.DAEMON),
        (Envelope(client_ip=OUTSIDE, daemon_name="mx.test"), {}, None),
    ],
)
def test_classify(tmp_path: Path, env: Envelope, trust: dict[str, Any], expected: Trust) -> None:
    assert engine(tmp_path, **trust).classify(env) == expected


# --------------------------------------------------------------------------- the login map


def test_sasl_user_may_only_use_the_addresses_the_map_gives_them(tmp_path: Path) -> None:
    eng, user = engine(tmp_path), Envelope(client_ip=OUTSIDE, auth_user=LOGIN)
    trusted, d = send(eng, user)
    assert (trusted, d.action) == (Trust.AUTHENTICATED, Action.ACCEPT)
    assert "DKIM-Signature" in names(d)
    _, d = send(eng, user, from_addr="bob@example.com")  # listed, but admin's
    assert d.action == Action.REJECT and d.reply is not None
    assert (d.reply.code, d.reply.status) == (553, "5.7.1")
    assert d.reply.text == f"sender address bob@example.com is not owned by user {LOGIN}"


@pytest.mark.parametrize("trust", list(NO_SASL))
def test_without_sasl_only_addresses_the_map_lists_are_ours(tmp_path: Path, trust: Trust) -> None:
    eng, env = engine(tmp_path), NO_SASL[trust]
    trusted, d = send(eng, env, from_addr="bob@example.com")  # listed (@example.com)
    assert (trusted, d.action) == (trust, Action.ACCEPT)
    assert "DKIM-Signature" in names(d)
    for from_addr, mail_from in ((VICTIM, VICTIM), ("bob@example.com", VICTIM)):
        _, d = send(eng, env, from_addr=from_addr, mail_from=mail_from)
        assert d.action == Action.REJECT and d.reply is not None, d
        assert (d.reply.code, d.reply.status) == (553, "5.7.1")
        assert d.reply.text == f"sender address {VICTIM} is not in the sender login map"
        assert d.add_headers == () and d.why == "sender-login-mismatch"
    _, d = send(eng, env, from_addr="bob@example.com", mail_from="")  # a bounce: allowed
    assert d.action == Action.ACCEPT
    _, d = send(eng, env, from_addr="bob@example.com, carol@example.net")
    assert d.reply is not None and d.reply.text == "the From field must hold exactly one address"


@pytest.mark.parametrize("trust", list(NO_SASL))
def test_without_a_login_map_trusted_mail_is_signed_as_before(tmp_path: Path, trust: Trust) -> None:
    trusted, d = send(engine(tmp_path, login_map=None), NO_SASL[trust], from_addr=VICTIM)
    assert (trusted, d.action) == (trust, Action.ACCEPT)


def test_local_submission_sign_ignores_the_login_map(tmp_path: Path) -> None:
    eng = engine(tmp_path, local_submission="sign")
    trusted, d = send(eng, NO_SASL[Trust.LOCAL], from_addr="root@example.com", mail_from="")
    assert (trusted, d.action) == (Trust.LOCAL, Action.ACCEPT)
    assert "DKIM-Signature" in names(d)
    _, d = send(eng, NO_SASL[Trust.LOCAL], from_addr=VICTIM)
    assert d.action == Action.ACCEPT and "DKIM-Signature" not in names(d)  # no key for it
    _, d = send(eng, NO_SASL[Trust.INTERNAL], from_addr=VICTIM)  # other sources still bound
    assert d.action == Action.REJECT


def test_local_submission_check_is_inbound_mail(tmp_path: Path) -> None:
    eng = engine(tmp_path, local_submission="check")
    trusted, d = send(eng, NO_SASL[Trust.LOCAL], from_addr="bob@example.com")
    assert trusted is None  # SPF fails for 127.0.0.1, no signature: example.com p=reject
    assert d.action == Action.REJECT and d.reply is not None and d.reply.status == "5.7.26"


# --------------------------------------------------------------------------- outbound A-R

FORGED = "Authentication-Results: mx.test; dmarc=pass header.from=example.com\n"


def test_default_outbound_mail_carries_no_ar_and_no_login_name(tmp_path: Path) -> None:
    eng = engine(tmp_path)
    for env in (Envelope(client_ip=OUTSIDE, auth_user=LOGIN), *NO_SASL.values()):
        trusted, d = send(eng, env, extra=FORGED)
        assert trusted is not None and d.action == Action.ACCEPT
        assert names(d) == ["DKIM-Signature"], d.add_headers
        assert [(e.name, e.index) for e in d.remove_headers] == [("Authentication-Results", 1)]
        assert not any(LOGIN in (h.value or "") for h in d.add_headers)


@pytest.mark.parametrize(
    ("mode", "sasl", "internal"),
    [
        ("anonymous", "mx.test;\n\tauth=pass", "mx.test; none (internal host, not checked)"),
        ("full", f"mx.test;\n\tauth=pass smtp.auth={LOGIN}", "mx.test; none (internal host,"),
    ],
)
def test_auth_results_modes(tmp_path: Path, mode: str, sasl: str, internal: str) -> None:
    eng = engine(tmp_path, auth_results=mode)
    for env, expected in (
        (Envelope(client_ip=OUTSIDE, auth_user=LOGIN), sasl),
        (NO_SASL[Trust.INTERNAL], internal),
    ):
        _, d = send(eng, env, extra=FORGED)
        ars = [h.value for h in d.add_headers if h.name == "Authentication-Results"]
        assert len(ars) == 1 and (ars[0] or "").startswith(expected), ars
        assert [(e.name, e.index) for e in d.remove_headers] == [("Authentication-Results", 1)]
    assert "DKIM-Signature" in names(d)
