"""End to end under a real Postfix: a mailing list forwards mail from a p=reject domain,
breaking its DKIM signature, and seals it with ARC (dkimpy's arc_sign, its ARC-
Authentication-Results saying dmarc=pass). Rejected unless the list is a trusted sealer;
delivered, with ``arc=pass`` and the override in the A-R, when it is."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from tests.e2e.test_postfix import AUTHSERV, daemon_config, our_ar, smtp_send
from tests.support.arcchains import LIST, LIST_SENDER, list_forwarded
from tests.support.daemon import AuthmilterDaemon
from tests.support.dnsserver import DnsServer
from tests.support.engines import example_zone
from tests.support.postfix import PostfixInstance
from tests.support.smtpsink import SmtpSink
from tests.support.zones import zone_text

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


@pytest.fixture
def list_world(dns_server: DnsServer) -> DnsServer:
    """example.com (p=reject, its DKIM key) and the list: its seal key, SPF for loopback."""
    resolver = example_zone()
    (name, rdtype), values = LIST.record
    resolver.add(name, rdtype, values[0])
    resolver.add(LIST.domain, "TXT", "v=spf1 ip4:127.0.0.1 -all")  # Postfix gives 127.0.0.1
    dns_server.add_zone(zone_text(resolver))
    return dns_server


def _send(
    dns: DnsServer,
    sink: SmtpSink,
    authmilter_daemon: Callable[..., AuthmilterDaemon],
    postfix: Callable[..., PostfixInstance],
    trusted: list[str],
) -> tuple[int, str, AuthmilterDaemon, PostfixInstance]:
    cfg = daemon_config(dns, arc={"trusted_sealers": trusted})
    daemon = authmilter_daemon(cfg, shared=True)
    pf = postfix(daemon.socket, sink.port)
    outcome = smtp_send(pf.port, LIST_SENDER, ["bob@example.org"], list_forwarded())
    return outcome.code, outcome.text, daemon, pf


def test_list_mail_is_rejected_without_the_sealer_in_the_trust_list(
    list_world: DnsServer,
    smtp_sink: SmtpSink,
    authmilter_daemon: Callable[..., AuthmilterDaemon],
    postfix: Callable[..., PostfixInstance],
) -> None:
    code, text, daemon, _pf = _send(list_world, smtp_sink, authmilter_daemon, postfix, [])
    assert code == 550 and text.startswith("5.7.26"), (code, text, daemon.log())
    assert smtp_sink.messages == []
    assert "arc=pass(i=1 d=lists.example.org)" in daemon.log()


def test_list_mail_is_delivered_with_the_sealer_trusted(
    list_world: DnsServer,
    smtp_sink: SmtpSink,
    authmilter_daemon: Callable[..., AuthmilterDaemon],
    postfix: Callable[..., PostfixInstance],
) -> None:
    code, text, daemon, pf = _send(list_world, smtp_sink, authmilter_daemon, postfix, [LIST.domain])
    assert code == 250, (code, text, pf.maillog(), daemon.log())
    (msg,) = smtp_sink.wait_for(1, timeout=30)
    ar = " ".join(our_ar(msg).split())
    assert ar.startswith(AUTHSERV), ar
    assert "arc=pass (1 sets) smtp.remote-ip=127.0.0.1;" in ar, ar
    assert "dmarc=fail (p=reject dis=none)" in ar, ar
    assert "(overridden: trusted ARC sealer lists.example.org)" in ar, ar
    assert "arc_override=lists.example.org" in daemon.log()
    # the list's ARC set arrives untouched
    names = [n.lower() for n, _ in msg.header_fields()]
    assert names.count("arc-seal") == 1 and names.count("arc-message-signature") == 1
