"""Metrics in-process: off by default, what a message counts, bounded labels, DNS outcomes.

The daemon's endpoint (one worker and two) is tested in tests/integration/test_metrics.py.
"""

from __future__ import annotations

import ipaddress
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dns.exception
import dns.resolver
import pytest
from prometheus_client import CollectorRegistry

from authmilter import metrics
from authmilter.config import from_dict
from authmilter.decision import Action
from authmilter.dnsresolver import DnspythonResolver
from authmilter.engine import Engine
from authmilter.errors import ConfigError
from authmilter.model import parse_message
from authmilter.session import Session
from authmilter.signing.signer import Signer
from tests.support.dnsserver import DnsServer
from tests.support.engines import BAD_IP, GOOD_IP, make_engine
from tests.support.keys import shared_rsa_key, sign, simple_message

REPO = Path(__file__).resolve().parents[2]
DASHBOARD = REPO / "conf" / "grafana" / "authmilter.json"


@pytest.fixture
def registry() -> Iterator[CollectorRegistry]:
    reg = CollectorRegistry()
    metrics.enable(reg)
    yield reg
    metrics.disable()


def value(registry: CollectorRegistry, name: str, **labels: str) -> float:
    """The sum of every sample of ``name`` whose labels include ``labels`` (0 if none)."""
    total = 0.0
    for family in registry.collect():
        for sample in family.samples:
            if sample.name == name and labels.items() <= sample.labels.items():
                total += sample.value
    return total


def label_values(registry: CollectorRegistry) -> set[str]:
    return {
        v
        for family in registry.collect()
        for sample in family.samples
        if sample.name.startswith("authmilter_")
        for v in sample.labels.values()
    }


def feed(
    session: Session,
    raw: bytes,
    ip: str = GOOD_IP,
    mail_from: str = "<alice@example.com>",
    auth: str | None = None,
) -> Any:
    session.connect("client.example", ipaddress.ip_address(ip), "")
    session.helo("mail.example.com")
    session.mail_from(mail_from, auth, "Q1")
    refused = session.recipient("<bob@example.org>")
    if refused is not None:
        return refused
    tx = parse_message(raw)
    for h in tx.headers:
        session.header(h.name, h.value)
    session.end_of_headers()
    session.body(tx.body)
    return session.end_of_message()


# --------------------------------------------------------------------------- off


def test_off_by_default_everything_is_a_no_op() -> None:
    assert not metrics.enabled()
    session = Session(make_engine(), "1")
    decision = feed(session, sign(simple_message(), "example.com", "rsa"))
    assert decision.action == Action.ACCEPT
    metrics.stage("eom", 1.0)
    metrics.internal_error("eom")
    metrics.reload(True)
    metrics.dns_query("TXT", "ok", 0.1)
    metrics.worker_exited(1)
    metrics.session_opened()()


# --------------------------------------------------------------------------- messages


def test_a_message_counts_its_action_trust_results_and_stages(
    registry: CollectorRegistry,
) -> None:
    session = Session(make_engine(), "1")
    assert feed(session, sign(simple_message(), "example.com", "rsa")).action == Action.ACCEPT
    assert feed(session, simple_message(), ip=BAD_IP).action == Action.REJECT

    v = lambda name, **labels: value(registry, name, **labels)  # noqa: E731
    assert v("authmilter_messages_total", action="accept", trust="inbound") == 1
    assert v("authmilter_messages_total", action="reject", trust="inbound") == 1
    assert v("authmilter_spf_results_total", identity="mailfrom", result="pass") == 1
    assert v("authmilter_spf_results_total", identity="mailfrom", result="fail") == 1
    assert v("authmilter_dkim_results_total", result="pass", algorithm="rsa-sha256") == 1
    assert v("authmilter_dmarc_results_total", result="pass", policy="reject") == 1
    assert v("authmilter_dmarc_results_total", result="fail", policy="reject") == 1
    assert v("authmilter_replies_total", stage="eom", code="550", status="5.7.26") == 1
    for stage in ("envfrom", "envrcpt", "header", "eoh", "body", "eom"):
        assert v("authmilter_stage_seconds_count", stage=stage) == 2, stage
    assert v("authmilter_stage_seconds_sum") > 0
    assert v("authmilter_internal_errors_total") == 0


def test_spf_is_counted_once_per_evaluation_even_when_the_recipient_is_refused(
    registry: CollectorRegistry,
) -> None:
    session = Session(make_engine(spf={"reject_fail_at_rcpt": True}), "1")
    refused = feed(session, simple_message(), ip=BAD_IP)
    assert refused.action == Action.REJECT
    assert value(registry, "authmilter_spf_results_total", result="fail") == 1
    assert value(registry, "authmilter_replies_total", stage="rcpt", status="5.7.23") == 1
    assert value(registry, "authmilter_messages_total") == 0  # never reached end of message


def test_helo_spf_and_from_warnings_are_counted(registry: CollectorRegistry) -> None:
    session = Session(make_engine(spf={"helo": True}), "1")
    raw = sign(simple_message('"ceo@victim.example" <alice@example.com>'), "example.com", "rsa")
    feed(session, raw)
    assert value(registry, "authmilter_spf_results_total", identity="helo") == 1
    assert value(registry, "authmilter_spf_results_total", identity="mailfrom") == 1
    assert value(registry, "authmilter_from_warnings_total", kind="display-name") == 1


@pytest.mark.parametrize("stage", ["check_envelope", "body_specs", "evaluate"])
def test_an_internal_error_is_counted_by_stage(
    stage: str, registry: CollectorRegistry, monkeypatch: pytest.MonkeyPatch
) -> None:
    def boom(*_a: object, **_k: object) -> None:
        raise RuntimeError("boom")

    monkeypatch.setattr(Engine, stage, boom)
    session = Session(make_engine(), "1")
    assert feed(session, simple_message()).action == Action.TEMPFAIL
    name = {"check_envelope": "envfrom", "body_specs": "eoh", "evaluate": "eom"}[stage]
    assert value(registry, "authmilter_internal_errors_total", stage=name) == 1
    assert value(registry, "authmilter_internal_errors_total") == 1
    assert value(registry, "authmilter_messages_total", action="tempfail", trust="inbound") == 1
    assert value(registry, "authmilter_replies_total", code="451", status="4.3.0") == 1


def test_signatures_are_counted_per_key_name_and_trust_by_class(
    registry: CollectorRegistry, tmp_path: Path
) -> None:
    key_file = shared_rsa_key().write(tmp_path / "rsa.private")
    cfg = from_dict(
        {
            "milter": {"authserv_id": "mx.test"},
            "signing": {
                "keys": [{"domain": "example.com", "selector": "rsa", "key_file": str(key_file)}]
            },
        },
        str(tmp_path / "authmilter.toml"),
    )
    signer = Signer.from_config(cfg.signing, str(tmp_path))
    engine = Engine(cfg, make_engine().resolver, signer=signer)
    session = Session(engine, "1")
    decision = feed(session, simple_message(), ip="192.0.2.99", auth="alice")
    assert decision.action == Action.ACCEPT and decision.add_headers
    assert value(registry, "authmilter_signatures_total", key="signing.keys[0]") == 1
    assert value(registry, "authmilter_messages_total", action="accept", trust="auth") == 1
    assert value(registry, "authmilter_spf_results_total") == 0  # ours: not checked


def test_no_label_value_is_ever_a_domain_or_an_address(registry: CollectorRegistry) -> None:
    session = Session(make_engine(dmarc={"multiple_from": "strictest"}), "1")
    hostile = [
        simple_message("Eve <eve@evil.example>"),
        simple_message('"ceo@victim.example" <eve@evil.example>'),
        sign(simple_message(), "example.com", "rsa").replace(b"a=rsa-sha256", b"a=evil.example"),
        simple_message("a@one.example, b@two.example"),
    ]
    for raw in hostile:
        feed(session, raw, ip=BAD_IP, mail_from="<eve@evil.example>")
    values = label_values(registry)
    assert values, "nothing was counted"
    assert not [v for v in values if "@" in v or "example" in v], values
    assert "other" in values  # the forged a= value became "other"


# --------------------------------------------------------------------------- DNS


class FakeInner:
    """What TimedResolve wraps: ``resolve`` answers or raises what it was given."""

    def __init__(self, outcome: object) -> None:
        self.outcome = outcome
        self.nameservers = ["192.0.2.53"]

    def resolve(self, *_a: object, **_k: object) -> object:
        if isinstance(self.outcome, BaseException):
            raise self.outcome
        return self.outcome


class FakeAnswer:
    def __init__(self, rrset: object) -> None:
        self.rrset = rrset


@pytest.mark.parametrize(
    ("outcome", "expected"),
    [
        (FakeAnswer(["x"]), "ok"),
        (FakeAnswer(None), "nodata"),
        (dns.resolver.NXDOMAIN(), "nxdomain"),
        (dns.exception.Timeout(), "timeout"),
        (dns.resolver.LifetimeTimeout(timeout=1.0, errors=[]), "timeout"),
        (dns.resolver.NoNameservers(), "servfail"),
        (dns.exception.DNSException("other"), "error"),
    ],
)
def test_each_dns_outcome_is_counted_and_timed(
    outcome: object, expected: str, registry: CollectorRegistry
) -> None:
    timed = metrics.timed(FakeInner(outcome))
    try:
        assert timed.resolve("example.com.", "TXT") is outcome
    except dns.exception.DNSException as exc:
        assert exc is outcome
    assert value(registry, "authmilter_dns_queries_total", type="TXT", outcome=expected) == 1
    assert value(registry, "authmilter_dns_queries_total") == 1
    assert value(registry, "authmilter_dns_query_seconds_count") == 1
    assert timed.nameservers == ["192.0.2.53"]  # everything else passes through


def test_an_odd_record_type_is_other(registry: CollectorRegistry) -> None:
    metrics.timed(FakeInner(FakeAnswer(None))).resolve("x.example.", "HINFO")
    assert value(registry, "authmilter_dns_queries_total", type="other", outcome="nodata") == 1


def test_the_real_resolver_counts_queries_cache_hits_and_misses(
    registry: CollectorRegistry,
) -> None:
    with DnsServer('example.com. 300 IN TXT "v=spf1 -all"\n') as server:
        resolver = DnspythonResolver([server.address], timeout=2.0)
        for _ in range(3):
            assert resolver.query("example.com", "TXT").txt() == [b"v=spf1 -all"]
        assert not resolver.query("nothing.example.com", "TXT").exists
        server.set_fault("slow.example.com", "servfail")
        with pytest.raises(Exception, match="no nameserver"):
            resolver.query("slow.example.com", "A")
    v = lambda name, **labels: value(registry, name, **labels)  # noqa: E731
    assert v("authmilter_dns_queries_total", type="TXT", outcome="ok") == 1
    assert v("authmilter_dns_queries_total", type="TXT", outcome="nxdomain") == 1
    assert v("authmilter_dns_queries_total", type="A", outcome="servfail") == 1
    assert v("authmilter_dns_cache_lookups_total", result="hit") == 2
    assert v("authmilter_dns_cache_lookups_total", result="miss") == 3
    assert v("authmilter_dns_query_seconds_count") == 3


# --------------------------------------------------------------------------- others


def test_sessions_in_flight_go_up_and_down_once(registry: CollectorRegistry) -> None:
    closed = [metrics.session_opened() for _ in range(3)]
    assert value(registry, "authmilter_sessions_in_flight") == 3
    closed[0]()
    closed[0]()  # twice (close, then the finalizer): once
    assert value(registry, "authmilter_sessions_in_flight") == 2
    assert value(registry, "authmilter_sessions_total") == 3


def test_reloads_start_at_zero_and_count(registry: CollectorRegistry) -> None:
    assert value(registry, "authmilter_reloads_total", result="failed") == 0
    assert "authmilter_reloads_total" in {
        s.name for f in registry.collect() for s in f.samples
    }  # present before the first reload, so that rate() sees it
    metrics.reload(True)
    metrics.reload(False)
    metrics.reload(False)
    assert value(registry, "authmilter_reloads_total", result="ok") == 1
    assert value(registry, "authmilter_reloads_total", result="failed") == 2
    assert value(registry, "authmilter_build_info") == 1


def test_every_metric_is_exported_with_its_declared_labels(registry: CollectorRegistry) -> None:
    families = {f.name: f for f in registry.collect()}
    for m in metrics.METRICS:
        base = m.name.removesuffix("_total") if m.kind == "counter" else m.name
        assert base in families, m.name
        assert families[base].type == m.kind, m.name
        assert families[base].documentation == m.help
    assert len({m.name for m in metrics.METRICS}) == len(metrics.METRICS)
    assert all(re.fullmatch(r"authmilter_[a-z_]+", m.name) for m in metrics.METRICS)
    counters = [m for m in metrics.METRICS if m.kind == "counter"]
    assert all(m.name.endswith("_total") for m in counters)


@pytest.mark.parametrize(
    ("listen", "problem"),
    [
        ("9431", "must be IP:PORT"),
        ("localhost:9431", "not an IP address"),
        ("127.0.0.1:0", "must be IP:PORT"),
        ("127.0.0.1:70000", "must be IP:PORT"),
        ("::1:9431", "needs brackets"),
        ("[127.0.0.1]:9431", "brackets are for an IPv6"),
    ],
)
def test_a_bad_listen_address_is_a_config_error(listen: str, problem: str) -> None:
    with pytest.raises(ConfigError, match=re.escape("x.toml: metrics.listen: ")) as info:
        from_dict({"metrics": {"listen": listen}}, "x.toml")
    assert problem in str(info.value)


@pytest.mark.parametrize("listen", ["", "127.0.0.1:9431", "[::1]:9431", "0.0.0.0:1"])
def test_good_listen_addresses(listen: str) -> None:
    assert from_dict({"metrics": {"listen": listen}}).metrics.listen == listen


def test_the_default_is_on_at_loopback() -> None:
    assert from_dict({}).metrics.listen == "127.0.0.1:9431"


def test_start_never_fails_the_daemon(caplog: pytest.LogCaptureFixture) -> None:
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        assert metrics.start(f"127.0.0.1:{port}") is None
    assert not metrics.enabled()
    assert "running without metrics" in caplog.text
    assert metrics.start("") is None


# --------------------------------------------------------------------------- dashboard


SUFFIXES = ("_bucket", "_sum", "_count")


def dashboard_exprs() -> list[str]:
    data = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    exprs: list[str] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            for key, val in node.items():
                if key in ("expr", "query") and isinstance(val, str):
                    exprs.append(val)
                else:
                    walk(val)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    walk(data)
    return exprs


def test_the_dashboard_is_json_and_uses_only_our_metric_names_and_labels() -> None:
    data = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    assert data["title"] and data["panels"] and data["uid"]
    exprs = dashboard_exprs()
    assert len(exprs) >= 10
    samples = {s: m for m in metrics.METRICS for s in m.samples}
    used: set[str] = set()
    for expr in exprs:
        for name in re.findall(r"\b(authmilter_[a-z_]+)", expr):
            assert name in samples, (name, expr)
            used.add(samples[name].name)
        # label names in selectors and in by()/without() clauses belong to the metric
        for name, selector in re.findall(r"\b(authmilter_[a-z_]+)\{([^}]*)\}", expr):
            metric = samples[name]
            for label in re.findall(r"([a-z_]+)\s*(?:=~|!~|!=|=)", selector):
                assert label in (*metric.labels, "le", "instance", "job"), (label, expr)
        names_in_expr = {samples[n] for n in re.findall(r"\b(authmilter_[a-z_]+)", expr)}
        allowed = {"le", "instance", "job"} | {lab for m in names_in_expr for lab in m.labels}
        for clause in re.findall(r"\b(?:by|without)\s*\(([^)]*)\)", expr):
            for label in filter(None, (x.strip() for x in clause.split(","))):
                assert label in allowed, (label, expr)
    # every metric that exists today is on the dashboard
    assert used == {m.name for m in metrics.METRICS}, {m.name for m in metrics.METRICS} - used
