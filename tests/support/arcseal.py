"""ARC sealing in tests: sealers over test keys, a message through a session as Postfix
sends it, the message as the MTA passes it on, and dkimpy (the oracle) to verify chains."""

from __future__ import annotations

import dataclasses
import functools
import ipaddress
from collections.abc import Callable, Iterable
from typing import Any

import dkim

from authmilter.checks.arc_verify import verify_arc
from authmilter.cli import run_session
from authmilter.config import from_dict
from authmilter.decision import Decision
from authmilter.engine import Engine
from authmilter.model import parse_message, to_crlf
from authmilter.results import ArcResult, AuthResults, Result
from authmilter.session import Session
from authmilter.signing.arcseal import Sealer
from authmilter.signing.keys import PrivateKeyFile, parse_private_key
from authmilter.staticresolver import StaticResolver
from tests.support.engines import GOOD_IP, example_zone
from tests.support.keys import DkimKey, new_rsa_key, shared_ed25519_key, shared_rsa_key


@functools.cache
def hop_key(n: int) -> DkimKey:
    """A distinct RSA-2048 key per hop (hop 0 is the shared test key)."""
    return shared_rsa_key() if n == 0 else new_rsa_key(2048)


def sealer(
    key: DkimKey | None = None,
    domain: str = "forwarder.example",
    selector: str = "arc",
    **kw: Any,
) -> Sealer:
    """A sealer with ``key`` (default: the shared RSA key)."""
    key = key or shared_rsa_key()
    private = PrivateKeyFile(parse_private_key(key.private, "test key"), "test key")
    return Sealer(domain, selector, private, **kw)


def ed25519_sealer(domain: str = "forwarder.example", selector: str = "ed") -> Sealer:
    """A sealer with the shared Ed25519 key."""
    return sealer(shared_ed25519_key(), domain, selector)


def zone_with(*keys: tuple[str, str, DkimKey]) -> StaticResolver:
    """:func:`example_zone` plus the (domain, selector, key) records."""
    zone = example_zone()
    for domain, selector, key in keys:
        zone.add(f"{selector}._domainkey.{domain}", "TXT", key.txt)
    return zone


def engine(
    seal: Sealer | None,
    resolver: StaticResolver | None = None,
    authserv_id: str = "mx.test",
    **sections: Any,
) -> Engine:
    """An MX-like engine (see tests/support/engines.py) that seals with ``seal``."""
    milter = {"authserv_id": authserv_id, **sections.pop("milter", {})}
    trust = {"internal_hosts": [], **sections.pop("trust", {})}
    cfg = from_dict({"milter": milter, "trust": trust, **sections})
    return Engine(cfg, resolver if resolver is not None else example_zone(), sealer=seal)


def run(
    eng: Engine,
    message: bytes,
    *,
    ip: str = GOOD_IP,
    mail_from: str = "alice@example.com",
    daemon_name: str = "smtpd",
    arc: ArcResult | None = None,
) -> tuple[Decision, AuthResults | None]:
    """One message through a session as Postfix feeds it; ``arc`` replaces the verifier's
    result (a chain status that real signatures cannot give, e.g. 50 passing sets)."""
    if arc is not None:
        eng = _with_arc(eng, arc)
    session = Session(eng)
    tx = parse_message(message)
    decision = run_session(
        session,
        tx,
        client=("client.example", ipaddress.ip_address(ip), daemon_name),
        helo="client.example",
        mail_from=mail_from,
        rcpts=["bob@example.org"],
        auth_user=None,
    )
    return decision, session.results


def _with_arc(eng: Engine, arc: ArcResult) -> Engine:
    """The engine, its checks' results carrying ``arc``."""

    class WithArc(Engine):
        def authenticate(self, *args: Any, **kw: Any) -> AuthResults:
            return dataclasses.replace(super().authenticate(*args, **kw), arc=arc)

    fields = {f.name: getattr(eng, f.name) for f in dataclasses.fields(eng) if f.init}
    return WithArc(**fields)


def deliver(message: bytes, decision: Decision) -> bytes:
    """The message as the MTA passes it on: each added field inserted at the top in turn."""
    assert not decision.remove_headers
    message = to_crlf(message)
    for edit in decision.add_headers:
        assert edit.index == 0 and edit.value is not None
        value = edit.value.replace("\n", "\r\n").encode()
        message = edit.name.encode() + b": " + value + b"\r\n" + message
    return message


def arc_names(decision: Decision) -> list[str]:
    """The ARC fields a decision adds, in the order they are added."""
    return [e.name for e in decision.add_headers if e.name.startswith("ARC-")]


def dnsfunc(*keys: tuple[str, str, DkimKey]) -> Callable[..., bytes | None]:
    """dkimpy's TXT lookup over (domain, selector, key) triples."""
    records = {f"{s}._domainkey.{d}.".encode(): k.txt.encode() for d, s, k in keys}

    def lookup(name: bytes, timeout: int = 5) -> bytes | None:
        return records.get(name)

    return lookup


def dkimpy_verify(message: bytes, *keys: tuple[str, str, DkimKey]) -> tuple[Any, list[Any], str]:
    """dkimpy's ``arc_verify`` (cv, per-set results newest first, reason)."""
    cv, results, reason = dkim.arc_verify(message, dnsfunc=dnsfunc(*keys))
    return cv, list(results), str(reason)


def oracle_arc(message: bytes, *keys: tuple[str, str, DkimKey]) -> ArcResult:
    """What the verifier would say, according to dkimpy (pass, fail or none)."""
    cv, results, _ = dkimpy_verify(message, *keys)
    chain = len(results)
    if cv == dkim.CV_Pass:
        return ArcResult(Result.PASS, chain=chain)
    if cv == dkim.CV_None and not chain:
        return ArcResult(Result.NONE)
    return ArcResult(Result.FAIL, chain=chain)


def our_verify(message: bytes, *keys: tuple[str, str, DkimKey]) -> ArcResult:
    """authmilter's own verifier on ``message``, with the keys of ``keys`` in DNS."""
    return verify_arc(parse_message(message), zone_with(*keys))


def dkimpy_seal(
    message: bytes, key: DkimKey, domain: str, selector: str, *, srv_id: str, ar: str
) -> bytes:
    """``message`` with an Authentication-Results ``ar`` by ``srv_id`` and dkimpy's ARC set."""
    message = to_crlf(f"Authentication-Results: {srv_id}; {ar}\n".encode() + message)
    fields = dkim.arc_sign(
        message, selector.encode(), domain.encode(), key.private, srv_id.encode()
    )
    assert len(fields) == 3, fields
    return b"".join(fields) + message


def tags(decision: Decision, name: str) -> dict[str, str]:
    """The tag=value pairs of the field ``name`` a decision adds."""
    (value,) = [e.value for e in decision.add_headers if e.name == name]
    assert value is not None
    pairs: Iterable[list[str]] = (
        t.split("=", 1) for t in value.replace("\n", "").replace("\t", "").split(";") if "=" in t
    )
    return {k.strip(): v.strip().replace(" ", "") for k, v in pairs}
