"""Per-callback work of the Session: a header is only kept, a body chunk only hashed."""

from __future__ import annotations

import ipaddress
import tracemalloc
from collections.abc import Callable

from authmilter.model import HeaderField
from authmilter.session import Session
from tests.support.engines import GOOD_IP, make_engine
from tests.support.keys import sign, simple_message


def started() -> Session:
    session = Session(make_engine(), "1")
    session.connect("client.example", ipaddress.ip_address(GOOD_IP), "")
    session.mail_from("<alice@example.com>", None, "Q1")
    return session


def test_header_fields_are_made_once_at_end_of_headers() -> None:
    session = started()
    session.header("Subject", b" folded\n\tover two lines")
    session.header("From", b" alice@example.com")
    assert session.headers == []  # nothing built per callback
    session.end_of_headers()
    assert session.headers == [
        HeaderField("Subject", b" folded\r\n\tover two lines"),
        HeaderField("From", b" alice@example.com"),
    ]
    session.end_of_headers()  # again (the body calls it): nothing added twice
    assert len(session.headers) == 2


def test_headers_without_an_eoh_callback_still_count() -> None:
    session = started()
    raw = sign(simple_message(), "example.com", "rsa")
    head, _, body = raw.partition(b"\r\n\r\n")
    for line in head.replace(b"\r\n ", b"\n ").replace(b"\r\n\t", b"\n\t").split(b"\r\n"):
        name, _, value = line.partition(b":")
        session.header(name.decode(), value)
    session.body(body)  # no end_of_headers() call: the body starts the hashing
    decision = session.end_of_message("Q1")
    assert "dkim=pass" in session.last_line and decision.action.value == "accept"


def test_a_body_chunk_allocates_nothing_of_the_sessions_own() -> None:
    session = started()
    session.end_of_headers()

    class NoHash:
        size = 0

        def update(self, chunk: bytes) -> None:
            pass

    session.hasher = NoHash()  # type: ignore[assignment]
    chunk = b"x" * 65536
    session.body(chunk)

    def noop(chunk: bytes) -> None:
        pass

    def peak(call: Callable[[bytes], None]) -> tuple[int, int]:
        """(retained, peak) octets over 100 calls (tracemalloc's own tuples included)."""
        rounds = list(range(100))
        tracemalloc.start()
        try:
            tracemalloc.reset_peak()
            before = tracemalloc.get_traced_memory()[0]
            for _ in rounds:
                call(chunk)
            current, top = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        return current - before, top - before

    assert peak(session.body) == peak(noop)  # what a call of a Python function costs
