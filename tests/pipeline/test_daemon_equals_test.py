"""``authmilter test --json`` and the real daemon give the same answer to every message.

For every message of the spoofing corpus, the hostile-input corpus (a sample of the
generator and every fixed extreme) and the conformance messages, the daemon is driven over
the milter protocol by the project's milter client, and ``authmilter test`` is run on the
same message and envelope, both against the same loopback DNS server. The action, the SMTP
reply and the header edits (names, values, positions) must be the same. This test is what
keeps the two paths one. The spoofing messages also come from our own senders (a SASL login,
a trusted daemon name) under each ``trust.auth_results``; by default no header either path
adds may carry the login name.
"""

from __future__ import annotations

import dataclasses
import json
import socket
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from authmilter.cli import main
from authmilter.model import Envelope, Transaction, parse_message
from authmilter.staticresolver import StaticResolver
from tests.pipeline import test_hostile_input as hostile
from tests.pipeline import test_spoofing_corpus as spoofing
from tests.support.daemon import AuthmilterDaemon
from tests.support.dnsserver import DnsServer
from tests.support.milterclient import SMFIP_HDR_LEADSPC, MilterClient, Reply
from tests.support.zones import serve

REPO = Path(__file__).resolve().parents[2]
HOSTILE_SAMPLE = 120  # generated hostile messages (seed 1) besides the fixed extremes
QUEUE_ID = "4ABCDEF123"
LIBMILTER_MAX_DATA = 65535  # libmilter refuses a longer command (MILTER_MAX_DATA_SIZE)


@dataclass(frozen=True)
class Probe:
    """One message and its envelope."""

    id: str
    raw: bytes
    env: Envelope


@dataclass
class Corpus:
    """Messages that share a DNS zone and a config."""

    name: str
    config: dict[str, Any]
    probes: list[Probe]
    resolver: StaticResolver | None = None
    zone_files: Sequence[Path] = ()
    skipped: dict[str, str] = field(default_factory=dict)  # id -> why it cannot be compared
    secret: str = ""  # text no added header may carry (the SASL login under the default)


# --------------------------------------------------------------------------- the corpora


def _carried(tx: Transaction, env: Envelope) -> str:
    """Why the milter protocol cannot carry this message as it is ("" when it can)."""
    if any("\0" in s for s in (env.helo, env.mail_from, env.client_name, *env.rcpt_to)):
        return "NUL in the envelope: the milter protocol sends C strings (and SMTP refuses it)"
    for h in tx.headers:
        if len(h.name) + len(h.value) + 2 > LIBMILTER_MAX_DATA:
            return "a field over libmilter's command size: it drops the connection"
        if b"\0" in h.value or "\0" in h.name:
            return "NUL in a header field: the milter protocol sends C strings"
        try:
            h.name.encode("utf-8")
        except UnicodeEncodeError:
            return "non-UTF-8 header name: pymilter answers before authmilter sees it"
    return ""


def _probe(pid: str, tx: Transaction, env: Envelope, corpus: Corpus) -> None:
    why = _carried(tx, env)
    if why:
        corpus.skipped[pid] = why
    else:
        corpus.probes.append(Probe(pid, tx.raw_message(), env))


def spoofing_corpora() -> list[Corpus]:
    by_config: dict[tuple[tuple[str, str, object], ...], Corpus] = {}
    for case in spoofing.CASES:
        sections: dict[str, dict[str, object]] = {}
        for section, key, value in case.config:
            sections.setdefault(section, {})[key] = value
        corpus = by_config.setdefault(
            case.config,
            Corpus(
                f"spoofing{len(by_config)}",
                {"milter": {"authserv_id": spoofing.AUTHSERV}, **sections},
                [],
                spoofing.zone(),
            ),
        )
        tx, env = spoofing.build(case)
        _probe(case.id, tx, env, corpus)
    return list(by_config.values())


LOGIN = "alice-login"  # part of no address in the corpus


def trusted_corpora() -> list[Corpus]:
    """The spoofing messages from a SASL user and a trusted daemon, per auth_results mode."""
    corpora = []
    for mode in ("none", "anonymous", "full"):
        trust = {"daemon_names": ["ORIGINATING"], "auth_results": mode}
        corpus = Corpus(
            f"trusted-{mode}",
            {"milter": {"authserv_id": spoofing.AUTHSERV}, "trust": trust},
            [],
            spoofing.zone(),
            secret="" if mode == "full" else LOGIN,
        )
        for case in spoofing.CASES:
            tx, env = spoofing.build(case)
            for how, ours in (
                ("auth", {"auth_user": LOGIN}),
                ("daemon", {"daemon_name": "ORIGINATING"}),
            ):
                _probe(f"{case.id}/{how}", tx, dataclasses.replace(env, **ours), corpus)
        corpora.append(corpus)
    return corpora


def hostile_corpus() -> Corpus:
    corpus = Corpus("hostile", {"milter": {"authserv_id": hostile.AUTHSERV}}, [], hostile.zone())
    for case in hostile.generate(1, HOSTILE_SAMPLE):
        _probe(f"gen{case.index}", case.tx, case.tx.envelope, corpus)
    for name, make in hostile.EXTREMES.items():
        tx = parse_message(make(), hostile.SPOOF_ENV)
        _probe(name, tx, hostile.SPOOF_ENV, corpus)
    return corpus


def conformance_corpus() -> Corpus:
    data = REPO / "tests" / "data" / "dkim"
    examples = REPO / "conf" / "examples"
    import ipaddress

    good = Envelope(
        client_ip=ipaddress.ip_address("192.0.2.25"),
        client_name="mail.example.net",
        helo="mail.example.net",
        mail_from="alice@example.net",
        rcpt_to=("bob@example.org",),
    )
    corpus = Corpus(
        "conformance",
        {"milter": {"authserv_id": "mx.conformance.test"}},
        [],
        zone_files=(examples / "example.net.zone", data / "rfc8463-a2.zone"),
    )
    for path in (
        examples / "signed.eml",
        examples / "tampered.eml",
        data / "rfc8463-a3.eml",
        data / "dkimpy-rfc6376.signed.msg",
    ):
        tx = parse_message(path.read_bytes(), good)
        _probe(path.name, tx, good, corpus)
        _probe(path.name + "@elsewhere", tx, _replace_ip(good, "203.0.113.9"), corpus)
    return corpus


def _replace_ip(env: Envelope, ip: str) -> Envelope:
    import ipaddress

    return dataclasses.replace(env, client_ip=ipaddress.ip_address(ip))


CORPORA: list[Callable[[], list[Corpus]]] = [
    spoofing_corpora,
    trusted_corpora,
    lambda: [hostile_corpus()],
    lambda: [conformance_corpus()],
]


# --------------------------------------------------------------------------- both paths


def normalise_value(value: str) -> str:
    """Header values compared without the leading space and with LF folds."""
    value = value.replace("\r\n", "\n")
    return value[1:] if value.startswith(" ") else value


def daemon_answer(sock: str, probe: Probe) -> dict[str, Any]:
    """Drive the daemon the way Postfix does and read its answer."""
    env = probe.env
    tx = parse_message(probe.raw)
    with MilterClient(sock) as m:
        conn_macros = {"j": "mx.test.example"}
        if env.daemon_name:
            conn_macros["{daemon_name}"] = env.daemon_name
        name = env.client_name or "unknown"
        if env.client_ip is None:
            reply = m.connect(name, "U", macros=conn_macros)
        else:
            family = "6" if env.client_ip.version == 6 else "4"
            reply = m.connect(name, family, str(env.client_ip), 40000, macros=conn_macros)
        assert reply is None or reply.action == "continue", reply
        m.helo(env.helo)
        macros = {"i": QUEUE_ID}
        if env.auth_user:
            macros["{auth_authen}"] = env.auth_user
        m.mail(env.mail_from, macros=macros)
        last: Reply | None = None
        accepted = 0
        for rcpt in env.rcpt_to or ("postmaster",):
            reply = m.rcpt(rcpt)
            if reply is None or reply.action == "continue":
                accepted += 1
            else:
                last = reply
        if not accepted:
            assert last is not None
            return _from_milter(last)
        m.data()
        lead = bool(m.protocol & SMFIP_HDR_LEADSPC)
        for h in tx.headers:
            value = h.value.replace(b"\r\n", b"\n")
            if not lead and value.startswith(b" "):
                value = value[1:]
            m.header(h.name.encode("utf-8", "surrogateescape"), value)
        m.eoh()
        if tx.body:
            m.body(tx.body)
        return _from_milter(m.eom(macros={"i": QUEUE_ID}))


def _from_milter(reply: Reply) -> dict[str, Any]:
    smtp: tuple[int, str, str] | None = None
    action = reply.smtp_class
    if reply.action == "replycode":
        code, status, text = reply.text.rstrip("\r\n").split(" ", 2)
        smtp = (int(code), status, text.replace("%%", "%"))
    if action == "accept" and reply.quarantine() is not None:
        action = "quarantine"
    adds = [(m.name, normalise_value(m.text), m.index) for m in reply.added_headers()]
    removes = [(m.name, m.index) for m in reply.header_changes() if not m.value]
    return {"action": action, "reply": smtp, "add": adds, "remove": removes}


def cli_answer(
    config_path: Path, nameserver: str, probe: Probe, tmp: Path, capsys: pytest.CaptureFixture[str]
) -> dict[str, Any]:
    """Run ``authmilter test --json`` on the probe and read the same fields."""
    env = probe.env
    message = tmp / "message.eml"
    message.write_bytes(probe.raw)
    argv = ["test", "-c", str(config_path), "--nameserver", nameserver, "--json"]
    argv += ["--mail-from", f"<{env.mail_from}>", "--helo", env.helo]
    argv += ["--client-name", env.client_name or "unknown"]
    if env.client_ip is not None:
        argv += ["--client-ip", str(env.client_ip)]
    if env.auth_user:
        argv += ["--auth-user", env.auth_user]
    if env.daemon_name:
        argv += ["--daemon-name", env.daemon_name]
    for rcpt in env.rcpt_to:
        argv += ["--rcpt", rcpt]
    capsys.readouterr()
    assert main([*argv, str(message)]) == 0
    report = json.loads(capsys.readouterr().out)
    reply = report["reply"]
    return {
        "action": report["action"],
        "reply": None if reply is None else (reply["code"], reply["status"], reply["text"]),
        "add": [
            (h["name"], normalise_value(h["value"]), h["index"]) for h in report["headers"]["add"]
        ],
        "remove": [(h["name"], h["index"]) for h in report["headers"]["remove"]],
    }


# --------------------------------------------------------------------------- the test


def _corpora() -> Iterator[Corpus]:
    for make in CORPORA:
        yield from make()


@pytest.mark.parametrize("corpus", list(_corpora()), ids=lambda c: c.name)
def test_daemon_and_test_agree(
    corpus: Corpus,
    authmilter_daemon: Callable[..., AuthmilterDaemon],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    with DnsServer() as dns:
        if corpus.resolver is not None:
            serve(dns, corpus.resolver)
        for path in corpus.zone_files:
            dns.add_zone(path)
        config = {
            **corpus.config,
            "trust": {**corpus.config.get("trust", {}), "internal_hosts": []},
            "dns": {"nameservers": [dns.address], "timeout": 2.0},
        }
        daemon = authmilter_daemon(config)
        differences = []
        for probe in corpus.probes:
            try:
                from_daemon = daemon_answer(daemon.socket, probe)
            except OSError as exc:
                pytest.fail(f"{probe.id}: {exc!r} {probe.env}\n{daemon.log()[-3000:]}")
            from_test = cli_answer(daemon.config_path, dns.address, probe, tmp_path, capsys)
            if from_daemon != from_test:
                differences.append((probe.id, from_daemon, from_test))
            if corpus.secret:
                added = [v for _, v, _ in from_daemon["add"] + from_test["add"]]
                assert not any(corpus.secret in v for v in added), (probe.id, added)
        assert not differences, json.dumps(differences[:3], indent=1, default=str)
        assert len(corpus.probes) > len(corpus.skipped)
    assert socket  # (imported for the milter client's unix sockets)
