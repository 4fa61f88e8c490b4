"""Self-tests of the milter protocol client against a tiny pymilter milter subprocess."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.daemon import AuthmilterDaemon
from tests.support.milterclient import (
    SMFIP_HDR_LEADSPC,
    SMFIP_NOHELO,
    SMFIP_NORCPT,
    SMFIP_NR_HDR,
    MilterClient,
    MilterProtocolError,
    split_headers,
)

pytestmark = pytest.mark.integration

RAW = (
    b"From: Alice <alice@example.org>\r\n"
    b"Subject: hello\r\n"
    b"X-Drop: remove me\r\n"
    b"X-Folded: first\r\n\tsecond\r\n"
    b"\r\n"
    b"body line\r\n"
)


def sample_milter(tmp_path: Path, *extra: str) -> AuthmilterDaemon:
    """The sample milter, run (and stopped) like the daemon."""
    return AuthmilterDaemon(
        tmp_path,
        {},
        stop_timeout=0.5,  # libmilter polls for 5 s before stopping
        command=[
            sys.executable,
            "-m",
            "tests.support.samplemilter",
            "{socket}",
            "bad@example.org",
            *extra,
        ],
    )


@pytest.fixture
def sample(tmp_path: Path) -> Iterator[str]:
    with sample_milter(tmp_path) as milter:
        yield milter.socket


def test_split_headers_keeps_bytes() -> None:
    fields, body = split_headers(RAW)
    assert fields[0] == (b"From", b" Alice <alice@example.org>")
    assert fields[3] == (b"X-Folded", b" first\r\n\tsecond")
    assert body == b"body line\r\n"
    lf_fields, lf_body = split_headers(RAW.replace(b"\r\n", b"\n"))
    assert lf_fields == fields and lf_body == body


def test_negotiation_records_what_the_milter_wants(sample: str) -> None:
    with MilterClient(sample) as m:
        assert m.version == 6
        assert m.protocol & SMFIP_NR_HDR  # @noreply header
        assert m.protocol & SMFIP_NOHELO  # the sample defines no hello(): not sent
        assert m.protocol & SMFIP_NORCPT
        assert not m.protocol & SMFIP_HDR_LEADSPC


def test_whole_transaction_and_modifications(sample: str) -> None:
    with MilterClient(sample) as m:
        reply = m.send_message(RAW, macros={"{auth_authen}": "alice"}, queue_id="QID1")
    assert reply.action == "accept" and reply.stage == "eom"
    kinds = [(x.kind, x.name, x.index) for x in reply.modifications]
    assert ("insert_header", "X-Sample-Top", 0) in kinds
    assert ("change_header", "X-Drop", 1) in kinds
    added = {x.name: x.text for x in reply.added_headers()}
    qid, auth, nheaders, nbody, first = added["X-Sample"].split(" ", 4)
    assert (qid, auth, nheaders, nbody) == ("QID1", "alice", "4", str(len(b"body line\r\n")))
    assert first == "'Alice <alice@example.org>'"  # one leading space eaten, like Postfix
    assert reply.header_changes()[0].value == b""


def test_leading_space_kept_when_asked(tmp_path: Path) -> None:
    with sample_milter(tmp_path, "--leadspc") as milter, MilterClient(milter.socket) as m:
        assert m.protocol & SMFIP_HDR_LEADSPC
        reply = m.send_message(RAW)
    added = {x.name: x.text for x in reply.added_headers()}
    assert added["X-Sample"].endswith("' Alice <alice@example.org>'")


def test_reject_at_mail_from_stops_the_transaction(sample: str) -> None:
    with MilterClient(sample) as m:
        reply = m.send_message(RAW, mail_from="bad@example.org")
        assert reply.stage == "mail" and reply.action == "replycode"
        assert reply.text == "550 5.7.1 sender refused by sample"
        assert reply.code == 550 and reply.smtp_class == "reject"
        # the connection carries on with the next message
        again = m.send_message(RAW)
    assert again.action == "accept" and again.added_headers()


def test_quarantine(sample: str) -> None:
    with MilterClient(sample) as m:
        reply = m.send_message(RAW.replace(b"hello", b"quarantine me"))
    assert reply.quarantine() == "sample says so"


def test_step_by_step_and_big_body(sample: str) -> None:
    body = b"x" * 70000 + b"\r\n"
    with MilterClient(sample) as m:
        m.connect("client.example", "4", "192.0.2.7", 1234, macros={"j": "mx"})
        assert m.helo("client.example") is None  # skipped: SMFIP_NOHELO
        assert m.mail("alice@example.org", macros={"i": "Q2"}).action == "continue"
        assert m.rcpt("bob@example.com") is None  # skipped: SMFIP_NORCPT
        m.data()
        assert m.header("Subject", "x") is None  # no reply: SMFIP_NR_HDR
        m.eoh()
        m.body(body)  # two SMFIC_BODY packets
        reply = m.eom()
    assert reply.action == "accept"
    added = {x.name: x.text for x in reply.added_headers()}
    assert added["X-Sample"].split(" ")[3] == str(len(body))


def test_closed_connection_is_an_error(tmp_path: Path) -> None:
    milter = sample_milter(tmp_path).start()
    m = MilterClient(milter.socket).open()
    milter.stop()
    with pytest.raises((MilterProtocolError, OSError)):
        m.send_message(RAW)
    m.close()


def test_several_clients_in_threads(sample: str) -> None:
    import concurrent.futures

    def one(i: int) -> str:
        with MilterClient(sample) as m:
            return m.send_message(RAW, queue_id=f"T{i}").action

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        assert list(pool.map(one, range(16))) == ["accept"] * 16
