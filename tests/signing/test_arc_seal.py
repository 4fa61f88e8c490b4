"""When authmilter seals (RFC 8617 5.1), with which instance and cv=, and the [arc] sealing
configuration: keys under the signing keys' rules, errors naming arc.key, ``test --json``."""

from __future__ import annotations

import functools
import json
from pathlib import Path

import dkim
import pytest

from authmilter import cli
from authmilter.compose import build_engine
from authmilter.config import from_dict
from authmilter.decision import Action
from authmilter.errors import ConfigError
from authmilter.model import Envelope, HeaderField, parse_message
from authmilter.results import ArcResult, Result
from authmilter.signing.arcseal import BODY_SPEC, Sealer, chain_status
from tests.support import arcseal as a
from tests.support.engines import BAD_IP, GOOD_IP, example_zone
from tests.support.keys import shared_ed25519_key, shared_rsa_key, sign, simple_message

ARC = ["ARC-Authentication-Results", "ARC-Message-Signature", "ARC-Seal"]


@functools.cache  # one signature (its t= is the second it was made in)
def signed_message() -> bytes:
    return sign(simple_message(), "example.com", "rsa")


def fake_sets(count: int) -> list[HeaderField]:
    """``count`` ARC sets, newest on top (what chain_status counts, not signatures)."""
    out = []
    for i in range(count, 0, -1):
        out += [
            HeaderField("ARC-Seal", f" i={i}; a=rsa-sha256; cv=pass; d=x; s=y; b=".encode()),
            HeaderField("ARC-Message-Signature", f" i={i}; a=rsa-sha256; b=".encode()),
            HeaderField("ARC-Authentication-Results", f" i={i}; x.example; none".encode()),
        ]
    return out


# ---------------------------------------------------------------------- chain status


def test_no_chain_is_instance_one_cv_none() -> None:
    status = chain_status((), None)
    assert (status.instance, status.cv, status.skip) == (1, "none", "")
    assert chain_status((), ArcResult(Result.NONE)).cv == "none"


def test_passing_chain_continues() -> None:
    status = chain_status(fake_sets(3), ArcResult(Result.PASS, chain=3))
    assert (status.instance, status.cv) == (4, "pass")


def test_failed_chain_is_cv_fail_next_instance() -> None:
    status = chain_status(fake_sets(2), ArcResult(Result.FAIL, chain=2))
    assert (status.instance, status.cv) == (3, "fail")


@pytest.mark.parametrize("result", [Result.PASS, Result.FAIL])
def test_fifty_sets_are_never_sealed(result: Result) -> None:
    assert chain_status(fake_sets(50), ArcResult(result, chain=50)).skip == "chain-limit"
    assert chain_status(fake_sets(49), ArcResult(result, chain=49)).instance == 50


def test_unknown_status_is_not_sealed() -> None:
    sets = fake_sets(1)
    assert chain_status(sets, None).skip == "chain-not-verified"
    assert chain_status(sets, ArcResult(Result.TEMPERROR, chain=1)).skip == "chain-temperror"
    assert chain_status(sets, ArcResult(Result.PASS, chain=2)).skip == "chain-mismatch"
    assert chain_status(sets[1:], ArcResult(Result.PASS, chain=1)).skip == "chain-mismatch"
    garbage = [HeaderField("ARC-Seal", b" cv=pass; b=")]
    assert chain_status(garbage, ArcResult(Result.FAIL)).skip == "chain-fail-no-instance"


def test_fifty_sets_through_the_engine_add_nothing() -> None:
    message = b"".join(h.raw() for h in fake_sets(50)) + signed_message()
    decision, _ = a.run(a.engine(a.sealer()), message, arc=ArcResult(Result.PASS, chain=50))
    assert decision.action == Action.ACCEPT
    assert a.arc_names(decision) == []
    assert ("arc_seal", "no(chain-limit)") in decision.log


@pytest.mark.parametrize("count", [50, 51])
def test_long_chains_verified_by_the_engine_add_nothing(count: int) -> None:
    message = b"".join(h.raw() for h in fake_sets(count)) + signed_message()
    decision, results = a.run(a.engine(a.sealer()), message)
    assert results is not None and results.arc is not None
    assert results.arc.result == Result.FAIL  # bogus signatures, or too many sets
    assert a.arc_names(decision) == []
    assert ("arc_seal", "no(chain-limit)") in decision.log


def test_trusted_mail_with_a_chain_is_not_sealed() -> None:
    # the verifier does not run for our own users' mail: its cv= would be a guess
    eng = a.engine(a.sealer(), trust={"internal_hosts": ["192.0.2.0/24"]})
    message = b"".join(h.raw() for h in fake_sets(1)) + simple_message()
    decision, _ = a.run(eng, message)
    assert a.arc_names(decision) == []
    assert ("arc_seal", "no(chain-not-verified)") in decision.log


# ---------------------------------------------------------------------- when we seal


def test_accepted_message_gets_the_set_on_top_in_order() -> None:
    decision, _ = a.run(a.engine(a.sealer()), signed_message())
    # inserted one by one at the top: ARC-Seal ends up first, then AMS, then AAR
    assert [e.name for e in decision.add_headers][-3:] == ARC
    assert ("arc_seal", "none(i=1)") in decision.log


def test_body_hash_streams_with_the_dkim_specs() -> None:
    eng = a.engine(a.sealer())
    simple = (b"simple", b"simple")
    headers = sign(simple_message(), "example.com", "rsa", canonicalize=simple)
    specs = eng.body_specs(Envelope(daemon_name="smtpd"), parse_message(headers).headers)
    assert specs == {BODY_SPEC, ("simple", "sha256", None)}
    off = a.engine(None)
    assert BODY_SPEC not in off.body_specs(Envelope(), ())


def test_rejected_message_is_not_sealed() -> None:
    decision, _ = a.run(a.engine(a.sealer()), simple_message(), ip=BAD_IP)
    assert decision.action == Action.REJECT
    assert decision.add_headers == ()


def test_tempfailed_message_is_not_sealed() -> None:
    eng = a.engine(a.sealer(), resolver=example_zone("_dmarc.example.com"))
    decision, _ = a.run(eng, simple_message(), ip=BAD_IP)
    assert decision.action == Action.TEMPFAIL
    assert decision.add_headers == ()


def test_seal_daemon_names_limit_sealing() -> None:
    seal = a.sealer(daemon_names=("lists",))
    decision, _ = a.run(a.engine(seal), signed_message(), daemon_name="smtpd")
    assert a.arc_names(decision) == []
    assert not any(k == "arc_seal" for k, _ in decision.log)
    decision, _ = a.run(a.engine(seal), signed_message(), daemon_name="lists")
    assert a.arc_names(decision) == ARC


def test_outbound_mail_is_sealed_with_the_anonymous_a_r() -> None:
    eng = a.engine(a.sealer(), trust={"internal_hosts": ["192.0.2.0/24"]})
    decision, results = a.run(eng, simple_message(), ip=GOOD_IP)
    assert results is not None and results.trusted
    assert "Authentication-Results" not in [e.name for e in decision.add_headers]
    assert a.arc_names(decision) == ARC
    aar = a.tags(decision, "ARC-Authentication-Results")
    assert aar["i"] == "1"
    message = a.deliver(simple_message(), decision)
    cv, _, reason = a.dkimpy_verify(message, ("forwarder.example", "arc", shared_rsa_key()))
    assert cv == dkim.CV_Pass, reason


def test_our_edits_are_what_the_seal_covers() -> None:
    # a forged A-R with our authserv-id is removed before the AMS is computed
    forged = b"Authentication-Results: mx.test; dmarc=pass\r\n" + signed_message()
    decision, _ = a.run(a.engine(a.sealer(signed_headers=("From", "Subject"))), forged)
    assert [(e.name, e.index) for e in decision.remove_headers] == [("Authentication-Results", 1)]
    ams = a.tags(decision, "ARC-Message-Signature")
    assert ams["h"].lower() == "from:subject:from"


# ---------------------------------------------------------------------- configuration


def _write_key(tmp_path: Path, mode: int = 0o600, ed25519: bool = False) -> Path:
    key = shared_ed25519_key() if ed25519 else shared_rsa_key()
    path = tmp_path / "arc.key"
    key.write(path)
    path.chmod(mode)
    return path


def _config(**arc: object) -> dict[str, object]:
    return {"arc": {"seal": True, "domain": "forwarder.example", "selector": "arc", **arc}}


def test_compose_loads_the_sealing_key(tmp_path: Path) -> None:
    key = _write_key(tmp_path, ed25519=True)
    eng = build_engine(from_dict(_config(key=str(key))), example_zone())
    assert isinstance(eng.sealer, Sealer)
    assert eng.sealer.key.algorithm == "ed25519-sha256"
    assert build_engine(from_dict({}), example_zone()).sealer is None


@pytest.mark.parametrize("missing", ["domain", "selector", "key"])
def test_seal_needs_domain_selector_key(tmp_path: Path, missing: str) -> None:
    values = {"domain": "forwarder.example", "selector": "arc", "key": str(_write_key(tmp_path))}
    values[missing] = ""
    with pytest.raises(ConfigError, match=f"arc.{missing}"):
        build_engine(from_dict({"arc": {"seal": True, **values}}), example_zone())


def test_missing_key_names_arc_key(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"arc\.key"):
        build_engine(from_dict(_config(key=str(tmp_path / "nope"))), example_zone())


def test_unsafe_key_names_arc_key_never_content(tmp_path: Path) -> None:
    key = _write_key(tmp_path, mode=0o644)
    with pytest.raises(ConfigError) as err:
        build_engine(from_dict(_config(key=str(key))), example_zone())
    text = str(err.value)
    assert "arc.key" in text and "0644" in text
    assert "PRIVATE" not in text and shared_rsa_key().public_b64[:20] not in text


def test_test_command_warns_about_an_unsafe_key(tmp_path: Path) -> None:
    # authmilter test without milter.user: reported and used, as for signing keys
    warnings: list[str] = []
    cfg = from_dict(_config(key=str(_write_key(tmp_path, mode=0o644))))
    eng = build_engine(cfg, example_zone(), warn_unsafe_keys=warnings.append)
    assert eng.sealer is not None
    assert len(warnings) == 1 and "arc.key" in warnings[0]


def test_unreadable_key_content_is_never_quoted(tmp_path: Path) -> None:
    path = tmp_path / "arc.key"
    path.write_text("secret-ish not a key\n")
    path.chmod(0o600)
    with pytest.raises(ConfigError) as err:
        build_engine(from_dict(_config(key=str(path))), example_zone())
    assert "arc.key" in str(err.value) and "secret-ish" not in str(err.value)


def test_seal_needs_verify(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"arc\.verify"):
        cfg = from_dict(_config(key=str(_write_key(tmp_path)), verify=False))
        build_engine(cfg, example_zone())


def test_arc_fields_cannot_be_signed(tmp_path: Path) -> None:
    cfg = from_dict(_config(key=str(_write_key(tmp_path)), signed_headers=["From", "ARC-Seal"]))
    with pytest.raises(ConfigError, match=r"arc\.signed_headers"):
        build_engine(cfg, example_zone())


# ---------------------------------------------------------------------- authmilter test


def test_test_json_lists_the_three_fields(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    key = _write_key(tmp_path)
    zone = tmp_path / "zone.txt"
    txt = shared_rsa_key().txt
    dkim_txt = " ".join(f'"{txt[i : i + 200]}"' for i in range(0, len(txt), 200))
    records = {
        "example.com": f'TXT "v=spf1 ip4:{GOOD_IP} -all"',
        "_dmarc.example.com": 'TXT "v=DMARC1; p=reject"',
        "rsa._domainkey.example.com": f"TXT {dkim_txt}",
    }
    zone.write_text("".join(f"{name}. 300 IN {rr}\n" for name, rr in records.items()))
    config = tmp_path / "authmilter.toml"
    config.write_text(
        '[milter]\nauthserv_id = "mx.test"\n[trust]\ninternal_hosts = []\n'
        f'[arc]\nseal = true\ndomain = "forwarder.example"\nselector = "arc"\nkey = "{key}"\n'
    )
    message = tmp_path / "message.eml"
    message.write_bytes(signed_message())
    argv = ["test", "-c", str(config), "--zone", str(zone), "--client-ip", GOOD_IP]
    argv += ["--helo", "client.example", "--mail-from", "alice@example.com"]
    assert cli.main([*argv, "--rcpt", "bob@example.org", "--json", str(message)]) == 0
    report = json.loads(capsys.readouterr().out)
    added = report["headers"]["add"]
    assert [h["name"] for h in added][-3:] == ARC
    assert all(h["index"] == 0 for h in added)
    delivered = signed_message().replace(b"\r\n", b"\n")
    for h in added:
        delivered = f"{h['name']}: {h['value']}\n".encode() + delivered
    cv, _, reason = a.dkimpy_verify(delivered, ("forwarder.example", "arc", shared_rsa_key()))
    assert cv == dkim.CV_Pass, reason
