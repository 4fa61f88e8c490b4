"""The transaction model keeps the message byte for byte."""

from __future__ import annotations

from authmilter.model import Envelope, HeaderField, parse_message, to_crlf


def test_round_trip_lf_and_crlf() -> None:
    msg = b"From: a@example.com\nSubject: one\n\ttwo\nX:  leading spaces \n\nbody\n\n"
    tx = parse_message(msg)
    assert tx.raw_message() == to_crlf(msg)
    assert [h.name for h in tx.headers] == ["From", "Subject", "X"]
    assert tx.headers[1].value == b" one\r\n\ttwo"
    assert tx.headers[2].value == b"  leading spaces "
    assert tx.body == b"body\r\n\r\n"
    assert parse_message(to_crlf(msg)).raw_message() == to_crlf(msg)


def test_header_lookup_is_case_insensitive() -> None:
    tx = parse_message(b"FROM: a@x\nfrom: b@y\nTo: c@z\n\n")
    assert [h.text() for h in tx.get_all("From")] == ["a@x", "b@y"]


def test_non_header_line_starts_body() -> None:
    tx = parse_message(b"From: a@x\nnot a header\nmore\n\nbody\n")
    assert [h.name for h in tx.headers] == ["From"]
    assert tx.body == b"not a header\r\nmore\r\n\r\nbody\r\n"


def test_no_body_and_no_headers() -> None:
    assert parse_message(b"From: a@x\n").body == b""
    tx = parse_message(b"\nonly body\n")
    assert tx.headers == () and tx.body == b"only body\r\n"


def test_text_unfolds_and_keeps_undecodable_bytes() -> None:
    h = HeaderField("Subject", b" caf\xe9\r\n ok")
    assert h.text() == "caf\udce9 ok"
    assert h.raw() == b"Subject: caf\xe9\r\n ok\r\n"


def test_envelope_domain() -> None:
    assert Envelope(mail_from="user@Example.COM.").mail_from_domain == "example.com"
    assert Envelope(mail_from="").mail_from_domain == ""
    assert Envelope(mail_from="postmaster").mail_from_domain == ""
