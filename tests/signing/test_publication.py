"""Safe key rotation (signing.require_published_key): a key signs only while its DNS record is
published and matches; re-checked after the interval; a temperror keeps the last known state.

A fake clock drives the interval (no sleeping, no timing), and a zone that can change
between messages stands in for DNS; every lookup is counted.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import threading
from pathlib import Path

import pytest

from authmilter.config import KeySpec, SigningConfig, from_dict
from authmilter.decision import Action
from authmilter.dnsresolver import Answer, Resolver
from authmilter.engine import Engine
from authmilter.errors import DnsTempError
from authmilter.model import Envelope, Transaction, parse_message
from authmilter.signing.dnscheck import KeyStatus
from authmilter.signing.publication import TEMPERROR_RETRY, KeyPublication
from authmilter.signing.signer import Signer, SigningKey

DATA = Path(__file__).resolve().parent.parent / "data" / "signing"
INTERVAL = 3600.0
MESSAGE = b"From: Alice <alice@example.com>\r\nTo: bob@example.net\r\nSubject: hi\r\n\r\nHello.\r\n"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Zone:
    """TXT records that change during a test; names in ``failing`` time out."""

    def __init__(self) -> None:
        self.records: dict[str, str] = {}
        self.failing: set[str] = set()
        self.lookups: list[str] = []
        self.gate: threading.Event | None = None  # when set: lookups wait for it

    def query(self, name: str, rdtype: str, timeout: float | None = None) -> Answer:
        self.lookups.append(name)
        if self.gate is not None:
            assert self.gate.wait(10)
        if name in self.failing:
            raise DnsTempError(f"{name}/{rdtype}: timed out")
        if name in self.records:
            return Answer(name, rdtype, ((self.records[name].encode(),),))
        return Answer(name, rdtype, (), exists=False)


def record(key: SigningKey) -> str:
    return f"v=DKIM1; k={key.key.key_type}; p={key.key.public_p()}"


@pytest.fixture
def keys(tmp_path: Path) -> dict[str, SigningKey]:
    """Two RSA selectors of example.com (old and new) and an Ed25519 one, by selector."""
    for name in ("rsa2048-pkcs1.pem", "rsa2048-pkcs8.pem", "ed25519.pem"):
        shutil.copyfile(DATA / name, tmp_path / name)
        os.chmod(tmp_path / name, 0o600)
    cfg = SigningConfig(
        keys=(
            KeySpec("example.com", "old", "rsa2048-pkcs1.pem"),
            KeySpec("example.com", "new", "ed25519.pem"),
        )
    )
    return {k.selector: k for k in Signer.from_config(cfg, str(tmp_path)).keys}


def name(key: SigningKey, domain: str = "example.com") -> str:
    return f"{key.selector}._domainkey.{domain}"


def test_a_key_signs_only_while_its_record_is_published(
    keys: dict[str, SigningKey], caplog: pytest.LogCaptureFixture
) -> None:
    zone, clock = Zone(), Clock()
    old, new = keys["old"], keys["new"]
    zone.records[name(old)] = record(old)
    pub = KeyPublication(zone, INTERVAL, clock=clock)
    with caplog.at_level(logging.INFO, logger="authmilter"):
        checks = pub.check([old, new])  # at start
    assert [c.status for c in checks] == [KeyStatus.OK, KeyStatus.MISSING]
    assert pub.signs(old, "example.com") and not pub.signs(new, "example.com")
    assert "signing key new._domainkey.example.com: not published (missing): not signing" in (
        caplog.text
    )
    assert "signing key old._domainkey.example.com: published and matching" in caplog.text
    assert len(zone.lookups) == 2  # the start check is the cached state: no lookup per message

    zone.records[name(new)] = record(new)  # the administrator publishes the new selector
    clock.now += INTERVAL - 1
    assert not pub.signs(new, "example.com")  # not before the interval
    assert len(zone.lookups) == 2
    caplog.clear()
    clock.now += 1
    with caplog.at_level(logging.INFO, logger="authmilter"):
        assert pub.signs(new, "example.com") and pub.signs(old, "example.com")  # both sign
    assert "new._domainkey.example.com: published and matching: signing with it" in caplog.text
    assert len(zone.lookups) == 4

    del zone.records[name(old)]  # the old selector is retired
    clock.now += INTERVAL
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="authmilter"):
        assert not pub.signs(old, "example.com") and pub.signs(new, "example.com")
    assert "old._domainkey.example.com: not published (missing): no longer signing" in caplog.text


def test_a_record_that_does_not_match_the_key_does_not_sign(
    keys: dict[str, SigningKey], caplog: pytest.LogCaptureFixture
) -> None:
    zone = Zone()
    old, new = keys["old"], keys["new"]
    zone.records[name(old)] = record(new).replace("k=ed25519", "k=rsa")  # another key
    zone.records[name(new)] = "v=DKIM1; k=ed25519; p="  # revoked
    pub = KeyPublication(zone, INTERVAL, clock=Clock())
    with caplog.at_level(logging.INFO, logger="authmilter"):
        assert [c.status for c in pub.check([old, new])] == [KeyStatus.MISMATCH] * 2
    assert not pub.signs(old, "example.com") and not pub.signs(new, "example.com")
    assert caplog.text.count("not published (mismatch)") == 2
    assert "refuses?the?record:?key?revoked?(empty?p?)" in caplog.text  # made safe: no spaces


def test_a_temperror_keeps_the_last_known_state(
    keys: dict[str, SigningKey], caplog: pytest.LogCaptureFixture
) -> None:
    zone, clock = Zone(), Clock()
    old, new = keys["old"], keys["new"]
    zone.records[name(old)] = record(old)
    pub = KeyPublication(zone, INTERVAL, clock=clock)
    pub.check([old, new])
    zone.failing = {name(old), name(new)}
    clock.now += INTERVAL
    with caplog.at_level(logging.INFO, logger="authmilter"):
        assert pub.signs(old, "example.com")  # was signing: still signs
        assert not pub.signs(new, "example.com")  # was not: still does not
    assert pub.status(old) == KeyStatus.TEMPERROR
    kept = "DNS lookup failed (temperror): keeping the last known state"
    assert f"old._domainkey.example.com: {kept} (signing)" in caplog.text
    assert f"new._domainkey.example.com: {kept} (not signing)" in caplog.text
    # looked up again sooner than the interval, and one warning per outage, not per lookup
    lookups = len(zone.lookups)
    clock.now += TEMPERROR_RETRY
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="authmilter"):
        assert pub.signs(old, "example.com") and not pub.signs(new, "example.com")
    assert len(zone.lookups) == lookups + 2 and caplog.text == ""
    # DNS is back and the new record is out: the new state holds
    zone.failing.clear()
    zone.records[name(new)] = record(new)
    clock.now += TEMPERROR_RETRY
    assert pub.signs(old, "example.com") and pub.signs(new, "example.com")


def test_a_temperror_at_start_signs_with_a_warning(
    keys: dict[str, SigningKey], caplog: pytest.LogCaptureFixture
) -> None:
    """No known state: the administrator configured the key, so it signs."""
    zone, clock = Zone(), Clock()
    old = keys["old"]
    zone.failing = {name(old)}
    pub = KeyPublication(zone, INTERVAL, clock=clock)
    with caplog.at_level(logging.INFO, logger="authmilter"):
        assert [c.status for c in pub.check([old])] == [KeyStatus.TEMPERROR]
    assert pub.signs(old, "example.com")
    assert [r.levelname for r in caplog.records] == ["WARNING"]
    assert "DNS lookup failed (temperror): signing with it until a lookup says" in caplog.text
    # a lookup that then finds no record stops it (within the retry, not the interval)
    zone.failing.clear()
    clock.now += TEMPERROR_RETRY
    assert not pub.signs(old, "example.com")


def test_a_key_for_the_from_domain_is_checked_per_domain(tmp_path: Path) -> None:
    """A KeyTable key with "%" as domain signs for each From domain it is published in."""
    shutil.copyfile(DATA / "ed25519.pem", tmp_path / "ed.pem")
    os.chmod(tmp_path / "ed.pem", 0o600)
    (tmp_path / "KeyTable").write_text("any %:sel:ed.pem\n")
    (tmp_path / "SigningTable").write_text("*@* any\n")
    cfg = SigningConfig(key_table="KeyTable", signing_table="refile:SigningTable")
    signer = Signer.from_config(cfg, str(tmp_path))
    (key,) = signer.keys
    zone = Zone()
    zone.records["sel._domainkey.a.example"] = record(key)
    pub = KeyPublication(zone, INTERVAL, clock=Clock())
    assert pub.check(signer.keys) == []  # nothing to look up at start
    assert pub.signs(key, "a.example") and not pub.signs(key, "b.example")
    assert pub.signs(key, "a.example") and zone.lookups == [
        "sel._domainkey.a.example",
        "sel._domainkey.b.example",
    ]


def test_messages_meanwhile_use_the_last_state_while_one_looks_up(
    keys: dict[str, SigningKey],
) -> None:
    zone, clock = Zone(), Clock()
    old = keys["old"]
    zone.records[name(old)] = record(old)
    pub = KeyPublication(zone, INTERVAL, clock=clock)
    pub.check([old])
    clock.now += INTERVAL
    zone.gate = threading.Event()  # the next lookup hangs until released
    results: list[bool] = []
    first = threading.Thread(target=lambda: results.append(pub.signs(old, "example.com")))
    first.start()
    try:
        for _ in range(200):  # bounded wait for the first thread's lookup to start
            if len(zone.lookups) == 2:
                break
            threading.Event().wait(0.01)
        assert len(zone.lookups) == 2
        assert pub.signs(old, "example.com")  # no waiting, no second lookup
        assert len(zone.lookups) == 2
    finally:
        zone.gate.set()
        first.join(10)
    assert results == [True]


# ---------------------------------------------------------------------- through the engine


def engine(keys_dir: Path, zone: Resolver, **signing: object) -> Engine:
    for file in ("rsa2048-pkcs1.pem", "ed25519.pem"):
        shutil.copyfile(DATA / file, keys_dir / file)
        os.chmod(keys_dir / file, 0o600)
    cfg = from_dict(
        {
            "milter": {"authserv_id": "mx.test"},
            "signing": {
                "keys": [
                    {"domain": "example.com", "selector": "old", "key_file": "rsa2048-pkcs1.pem"},
                    {"domain": "example.com", "selector": "new", "key_file": "ed25519.pem"},
                ],
                **signing,
            },
        },
        str(keys_dir / "authmilter.toml"),
    )
    return Engine(cfg, zone, signer=Signer.from_config(cfg.signing, str(keys_dir)))


def outbound(eng: Engine) -> tuple[list[str], dict[str, str]]:
    """The selectors that signed an authenticated message, and the decision's log pairs."""
    msg = parse_message(MESSAGE)
    tx = Transaction(
        Envelope(mail_from="alice@example.com", auth_user="alice"), msg.headers, msg.body
    )
    _, decision = eng.evaluate(tx)
    assert decision.action == Action.ACCEPT
    sels = [
        re.findall(r"(?:^|[;\s])s=([\w.-]+);", h.value or "")[0]
        for h in decision.add_headers
        if h.name == "DKIM-Signature"
    ]
    return sels, dict(decision.log)


def test_the_engine_signs_with_published_keys_only(tmp_path: Path) -> None:
    zone = Zone()
    eng = engine(tmp_path, zone)
    signer = eng.signer
    assert signer is not None and eng.publication is not None
    old = next(k for k in signer.keys if k.selector == "old")
    zone.records[name(old)] = record(old)
    sels, log = outbound(eng)
    assert sels == ["old"]
    assert log["signed"] == "1" and log["unpublished"] == "new._domainkey.example.com"
    # with require_published_key = false every configured key signs, and nothing is looked up
    zone = Zone()
    eng = engine(tmp_path, zone, require_published_key=False)
    assert eng.publication is None
    sels, log = outbound(eng)
    assert sorted(sels) == ["new", "old"] and "unpublished" not in log and zone.lookups == []
