"""Hostile DNS against the real daemon: huge, duplicated, binary, looping, failing answers.

One daemon (subprocess, real milter protocol) and one loopback DNS server (real UDP and
TCP) serve every case. DNS timeouts are short (``dns.timeout = 1``) so failures are quick;
the client waits up to 60 s, Postfix's own order of magnitude for a milter reply, which is
a bound on the answer arriving, not a performance measurement. After every case the daemon
must still be running and must pass a known-good message (``healthy``).

Outcomes asserted: temporary DNS trouble under ``p=reject`` is a 4xx (never a 5xx);
permanent junk (a key that is not a key, an SPF loop) is a permerror, never a pass or a
crash; our A-R stays a safe header value whatever bytes DNS returned.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from authmilter.headers import header_value_is_safe
from tests.support.daemon import AuthmilterDaemon
from tests.support.dnsserver import DnsServer
from tests.support.keys import DkimKey, new_rsa_key
from tests.support.mail import dkim_sign, make_message, quoted, zone
from tests.support.milterclient import MilterClient, Reply

pytestmark = pytest.mark.integration

AUTHSERV = "mx.hostile-dns.test"
GOOD_IP = "192.0.2.10"  # permitted by every domain's SPF below
BAD_IP = "198.51.100.7"  # permitted by none
MTA_BUDGET = 60.0  # seconds: the MTA gives up on the milter after about this long


def hostile_zones(key: DkimKey) -> str:
    spf = f'@ TXT "v=spf1 ip4:{GOOD_IP} -all"'
    reject = '_dmarc TXT "v=DMARC1; p=reject"'
    good_key = f"sel._domainkey TXT {quoted(key.txt)}"
    notes = "x" * 60_000
    pad = "y" * 10_000
    parts = [
        zone("good.example", spf, reject, good_key),
        # a valid key inside a 60 KB record: only TCP can carry it
        zone(
            "bigkey.example",
            spf,
            reject,
            f"sel._domainkey TXT {quoted(f'v=DKIM1; k=rsa; n={notes}; p={key.public_b64}')}",
        ),
        # 50 TXT records at the key name (one of them the real key)
        zone(
            "manykeys.example",
            spf,
            reject,
            good_key,
            *(f'sel._domainkey TXT "v=DKIM1; k=rsa; n=copy{i}; p=AAAA"' for i in range(49)),
        ),
        # invalid UTF-8 and NULs in SPF, DMARC and key records
        zone(
            "binary.example",
            f'@ TXT "v=spf1 ip4:{GOOD_IP} \\255\\000 exp=\\000\\010 -all"',
            '_dmarc TXT "v=DMARC1; p=reject\\000; rua=mailto:\\255@binary.example"',
            'sel._domainkey TXT "v=DKIM1; k=rsa\\000; p=\\255\\254\\000AAAA"',
        ),
        zone(
            "bigdmarc.example",
            spf,
            "_dmarc TXT " + quoted(f"v=DMARC1; p=reject; rua=mailto:d@bigdmarc.example; x={pad}"),
            good_key,
        ),
        # SPF include loop and a 20-deep include chain (both: permerror)
        zone(
            "loop.example",
            '@ TXT "v=spf1 include:loop2.example -all"',
            reject,
            good_key,
        ),
        zone("loop2.example", '@ TXT "v=spf1 include:loop.example -all"'),
        zone(
            "chain.example",
            '@ TXT "v=spf1 include:c1.chain.example -all"',
            *(f'c{i} TXT "v=spf1 include:c{i + 1}.chain.example -all"' for i in range(1, 20)),
            f'c20 TXT "v=spf1 ip4:{GOOD_IP} -all"',
            reject,
            good_key,
        ),
        # CNAME loop on _dmarc
        zone(
            "cnameloop.example",
            spf,
            "_dmarc CNAME _dmarc.cnameloop2.example.",
            good_key,
        ),
        zone("cnameloop2.example", "_dmarc CNAME _dmarc.cnameloop.example."),
        # lookups the tests make fail on purpose (set_fault)
        zone("spffault.example", spf, reject, good_key),
        zone("keyfault.example", spf, reject, good_key),
        zone("dmarcfault.example", spf, reject, good_key),
        zone("slowkey.example", spf, reject, good_key),
        # a wildcard answering everything below wild.example with an SPF and a DMARC record
        zone(
            "wild.example",
            '* TXT "v=spf1 +all"',
            '* TXT "v=DMARC1; p=reject"',
            "* A 192.0.2.99",
            '_dmarc TXT "v=DMARC1; p=reject"',
        ),
        # np=: a non-existent subdomain is rejected though p=none
        zone("npvictim.example", spf, '_dmarc TXT "v=DMARC1; p=none; np=reject"', "@ A 192.0.2.1"),
    ]
    return "".join(parts)


@pytest.fixture(scope="module")
def key() -> DkimKey:
    return new_rsa_key(2048)


@pytest.fixture(scope="module")
def dns_srv(key: DkimKey) -> Iterator[DnsServer]:
    with DnsServer(hostile_zones(key)) as server:
        yield server


@pytest.fixture(scope="module")
def daemon_proc(
    dns_srv: DnsServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[AuthmilterDaemon]:
    config: dict[str, Any] = {
        "milter": {"authserv_id": AUTHSERV, "log_level": "info"},
        "dns": {"nameservers": [dns_srv.address], "timeout": 1.0, "cache_size": 0},
        "spf": {"time_budget": 3.0},
        "trust": {"internal_hosts": []},
    }
    with AuthmilterDaemon(Path(tmp_path_factory.mktemp("hostile")), config) as d:
        yield d


@pytest.fixture
def dns(dns_srv: DnsServer) -> Iterator[DnsServer]:
    dns_srv.clear_faults()
    dns_srv.reset_counts()
    yield dns_srv
    dns_srv.clear_faults()


@pytest.fixture
def daemon(
    daemon_proc: AuthmilterDaemon, dns: DnsServer, key: DkimKey
) -> Iterator[AuthmilterDaemon]:
    assert daemon_proc.running(), daemon_proc.log()
    yield daemon_proc
    dns.clear_faults()
    healthy(daemon_proc, key)


def healthy(daemon: AuthmilterDaemon, key: DkimKey) -> None:
    """The daemon still runs and passes a good message."""
    assert daemon.running(), daemon.log()
    reply = send(daemon, signed(key, "good.example"), mail_from="a@good.example")
    assert reply.action == "accept", (reply, daemon.log()[-3000:])
    ar = our_ar(reply)
    assert "dkim=pass" in ar and "dmarc=pass" in ar, ar


def send(daemon: AuthmilterDaemon, raw: bytes, **kwargs: Any) -> Reply:
    kwargs.setdefault("client_ip", BAD_IP)
    kwargs.setdefault("helo", "mail.sender.test")
    with MilterClient(daemon.socket, timeout=MTA_BUDGET) as client:
        return client.send_message(raw, **kwargs)


def our_ar(reply: Reply) -> str:
    ars = [m for m in reply.added_headers() if m.name.lower() == "authentication-results"]
    assert len(ars) == 1, reply
    text = ars[0].text
    assert text.startswith(" " + AUTHSERV + ";"), text
    assert header_value_is_safe(text, ars[0].name), repr(text)
    return text


def signed(key: DkimKey, domain: str, **kwargs: Any) -> bytes:
    return dkim_sign(make_message(from_addr=f"alice@{domain}", **kwargs), domain, "sel", key)


def assert_temporary(reply: Reply, daemon: AuthmilterDaemon) -> None:
    assert reply.smtp_class == "tempfail", (reply, daemon.log()[-3000:])
    assert reply.code is not None and 400 <= reply.code < 500, reply
    assert reply.text.startswith("451 4."), reply.text


# --------------------------------------------------------------------------- big and odd answers


def test_60_kb_key_record_over_tcp_verifies(
    daemon: AuthmilterDaemon, dns: DnsServer, key: DkimKey
) -> None:
    reply = send(daemon, signed(key, "bigkey.example"), mail_from="a@bigkey.example")
    ar = our_ar(reply)
    assert reply.action == "accept" and "dkim=pass" in ar and "dmarc=pass" in ar, ar
    assert dns.transport_count("tcp") >= 1  # the answer could not travel over UDP


def test_50_txt_records_at_the_key_name_are_a_permerror(
    daemon: AuthmilterDaemon, key: DkimKey
) -> None:
    reply = send(
        daemon, signed(key, "manykeys.example"), client_ip=GOOD_IP, mail_from="a@manykeys.example"
    )
    ar = our_ar(reply)
    assert "dkim=permerror" in ar and "multiple key records" in ar, ar
    assert "dmarc=pass" in ar and reply.action == "accept", ar  # SPF still aligns
    # without SPF the only signature is not a pass: p=reject is applied, permanently
    reply = send(daemon, signed(key, "manykeys.example"), mail_from="a@manykeys.example")
    assert reply.smtp_class == "reject" and reply.text.startswith("550 5.7.26"), reply


def test_invalid_utf8_and_nul_in_records(daemon: AuthmilterDaemon, key: DkimKey) -> None:
    reply = send(
        daemon, signed(key, "binary.example"), client_ip=GOOD_IP, mail_from="a@binary.example"
    )
    ar = our_ar(reply)  # a safe header value: no NUL, no raw 8-bit junk from DNS
    assert reply.action == "accept", (reply, ar)
    assert "\x00" not in ar and "\ufffd" not in ar, repr(ar)
    assert "spf=permerror" in ar and "dkim=permerror" in ar, ar
    # p=reject\0 is not a policy; the (replaced) rua= still counts, so it reads as p=none
    assert "dmarc=fail" in ar and "p=none" in ar, ar


def test_10_kb_dmarc_record_is_read(daemon: AuthmilterDaemon, key: DkimKey) -> None:
    raw = make_message(from_addr="ceo@bigdmarc.example")
    reply = send(daemon, raw, mail_from="x@bigdmarc.example")
    assert reply.smtp_class == "reject" and reply.text.startswith("550 5.7.26"), reply
    assert "bigdmarc.example" in reply.text
    reply = send(daemon, signed(key, "bigdmarc.example"), mail_from="x@bigdmarc.example")
    assert reply.action == "accept" and "dmarc=pass" in our_ar(reply)


@pytest.mark.parametrize("domain", ["loop.example", "chain.example"])
def test_spf_include_loop_and_deep_chain_are_permerror(
    daemon: AuthmilterDaemon, key: DkimKey, domain: str
) -> None:
    reply = send(daemon, signed(key, domain), client_ip=GOOD_IP, mail_from=f"a@{domain}")
    ar = our_ar(reply)
    assert "spf=permerror" in ar, ar
    assert "dkim=pass" in ar and "dmarc=pass" in ar and reply.action == "accept", ar


def test_cname_loop_on_dmarc_is_temporary(daemon: AuthmilterDaemon) -> None:
    raw = make_message(from_addr="ceo@cnameloop.example")
    reply = send(daemon, raw, mail_from="x@cnameloop.example")
    assert_temporary(reply, daemon)  # the resolver gives up (SERVFAIL): never a 5xx


def test_wildcard_zone_answering_everything(daemon: AuthmilterDaemon, key: DkimKey) -> None:
    raw = dkim_sign(make_message(from_addr="a@x.wild.example"), "x.wild.example", "sel", key)
    reply = send(daemon, raw, mail_from="b@y.wild.example")
    ar = our_ar(reply)
    # +all passes SPF; the "key" record is one of two TXT records that are no key
    assert "spf=pass" in ar and "dkim=permerror" in ar and "dmarc=pass" in ar, ar
    assert reply.action == "accept"


def test_np_rejects_a_nonexistent_from_subdomain(daemon: AuthmilterDaemon) -> None:
    raw = make_message(from_addr="ceo@nx.npvictim.example")
    reply = send(daemon, raw, mail_from="x@nx.npvictim.example")
    assert reply.smtp_class == "reject" and reply.text.startswith("550 5.7.26"), reply
    # the same domain, existing (it is the org domain, p=none): not rejected
    reply = send(daemon, make_message(from_addr="ceo@npvictim.example"), mail_from="x@a.test")
    assert reply.action == "accept", reply


def test_np_existence_check_timeout_is_temporary(daemon: AuthmilterDaemon, dns: DnsServer) -> None:
    dns.set_fault("nx2.npvictim.example", "timeout")
    raw = make_message(from_addr="ceo@nx2.npvictim.example")
    reply = send(daemon, raw, mail_from="x@sender.test")
    assert_temporary(reply, daemon)
    assert dns.queries("nx2.npvictim.example", "A") >= 1


# --------------------------------------------------------------------------- failing lookups


@pytest.mark.parametrize("fault", ["servfail", "timeout"])
def test_spf_lookup_trouble_under_p_reject_is_4xx(
    daemon: AuthmilterDaemon, dns: DnsServer, fault: str
) -> None:
    dns.set_fault("spffault.example", fault)
    raw = make_message(from_addr="ceo@spffault.example")
    reply = send(daemon, raw, client_ip=GOOD_IP, mail_from="x@spffault.example")
    assert_temporary(reply, daemon)
    assert dns.queries("spffault.example", "TXT") >= 1


@pytest.mark.parametrize("fault", ["servfail", "timeout"])
def test_dkim_key_lookup_trouble_under_p_reject_is_4xx(
    daemon: AuthmilterDaemon, dns: DnsServer, key: DkimKey, fault: str
) -> None:
    dns.set_fault("sel._domainkey.keyfault.example", fault)
    reply = send(daemon, signed(key, "keyfault.example"), mail_from="x@keyfault.example")
    assert_temporary(reply, daemon)
    assert dns.queries("sel._domainkey.keyfault.example", "TXT") >= 1


@pytest.mark.parametrize("fault", ["servfail", "timeout"])
def test_dmarc_lookup_trouble_under_p_reject_is_4xx(
    daemon: AuthmilterDaemon, dns: DnsServer, fault: str
) -> None:
    dns.set_fault("_dmarc.dmarcfault.example", fault)
    raw = make_message(from_addr="ceo@dmarcfault.example")
    reply = send(daemon, raw, mail_from="x@dmarcfault.example")
    assert_temporary(reply, daemon)
    assert dns.queries("_dmarc.dmarcfault.example", "TXT") >= 1


def test_100_signatures_on_a_slow_key_answer_within_the_mta_budget(
    daemon: AuthmilterDaemon, dns: DnsServer, key: DkimKey
) -> None:
    dns.set_fault("sel._domainkey.slowkey.example", "timeout")
    raw = signed(key, "slowkey.example")
    end = raw.index(b"\r\nFrom:") + 2
    many = raw[:end] * 100 + raw[end:]
    reply = send(daemon, many, mail_from="x@slowkey.example")  # raises if no reply in 60 s
    assert reply.smtp_class in ("tempfail", "accept"), reply
    assert reply.smtp_class != "tempfail" or reply.text.startswith("451 4.")
    # the cap on verified signatures bounds the lookups
    assert 1 <= dns.queries("sel._domainkey.slowkey.example", "TXT") <= 5 * 2
