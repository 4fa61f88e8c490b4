"""Properties of what DNS and the message hand us: Authentication-Results rendered from
hostile values never reads back as a result the checks did not produce; key records,
DMARC records and zone files never fail but with their own errors."""

from __future__ import annotations

from pathlib import Path

import authres
from hypothesis import example, given
from hypothesis import strategies as st

from authmilter.checks.dkim_key import KeyProblem, SignatureFacts, load_key
from authmilter.checks.dmarc_record import parse_record
from authmilter.errors import ConfigError
from authmilter.headers import header_value_is_safe, render_authentication_results
from authmilter.model import Envelope
from authmilter.results import AuthResults, DkimResult, DmarcResult, Result, SpfResult
from authmilter.staticresolver import StaticResolver
from tests.core.test_headers import asciify, strict_parse
from tests.fuzz.strategies import hostile_bytes, hostile_text

WORDS = st.sampled_from(list(Result))


@given(
    st.lists(st.tuples(WORDS, hostile_text, hostile_text, hostile_text), max_size=4),
    st.one_of(st.none(), st.tuples(WORDS, hostile_text, hostile_text)),
    st.one_of(st.none(), st.tuples(WORDS, hostile_text, hostile_text)),
    hostile_text,
)
@example([(Result.FAIL, "x.example; dkim=pass", "s", "r")], None, None, "a@b")
def test_rendered_results_read_back_as_produced(
    dkims: list[tuple[Result, str, str, str]],
    spf: tuple[Result, str, str] | None,
    dmarc: tuple[Result, str, str] | None,
    mail_from: str,
) -> None:
    results = AuthResults(
        spf=None if spf is None else SpfResult(spf[0], domain=spf[1], sender=spf[1], reason=spf[2]),
        dkim=tuple(
            DkimResult(w, domain=d, selector=s, reason=r, header_b="abc") for w, d, s, r in dkims
        ),
        dmarc=None
        if dmarc is None
        else DmarcResult(dmarc[0], from_domain=dmarc[1], reason=dmarc[2]),
    )
    value = render_authentication_results("mx.example.org", results, Envelope(mail_from=mail_from))
    assert header_value_is_safe(value, "Authentication-Results")
    produced = [("spf", str(spf[0]))] if spf else []
    produced += [("dkim", str(w)) for w, *_ in dkims]
    produced += [("dmarc", str(dmarc[0]))] if dmarc else []
    authserv_id, infos = strict_parse(value)  # the RFC 8601 grammar, strictly
    assert authserv_id == "mx.example.org"
    assert [(r.method, r.result) for r in infos] == produced
    try:  # authres cannot read every legal value (a quoted value before the last property)
        parsed = authres.AuthenticationResultsHeader.parse_value(asciify(value))
    except authres.core.SyntaxError:
        return
    assert [(r.method, r.result) for r in parsed.results] == produced


@given(hostile_bytes, st.sampled_from(["rsa-sha256", "ed25519-sha256", "rsa-sha1"]))
@example(b"v=DKIM1; k=rsa; p=", "rsa-sha256")
@example(b"v=DKIM1; p=\xff\xfe", "rsa-sha256")
def test_key_records_fail_only_as_key_problems(record: bytes, algorithm: str) -> None:
    facts = SignatureFacts(algorithm=algorithm, domain="example.com", identity="")
    try:
        load_key("s._domainkey.example.com", record, facts, 1024)
    except KeyProblem as problem:
        assert problem.result in (Result.PERMERROR, Result.POLICY)


@given(hostile_text)
@example("v=DMARC1; p=reject; rua=mailto:a@b,,;")
def test_dmarc_records_parse_or_are_none(text: str) -> None:
    record = parse_record(text)
    if record is not None:
        assert text.lstrip().startswith("v=DMARC1")


@given(st.lists(hostile_text, max_size=6))
@example(["$ORIGIN example.com.", "@ 300 IN SOA a. b. 1 2 3 4 5", 'x TXT "a"'])
@example(["$INCLUDE /etc/passwd"])
def test_zone_files_load_or_raise_config_error(lines: list[str]) -> None:
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "z.zone"
        path.write_text("\n".join(lines) + "\n", encoding="utf-8", errors="surrogatepass")
        try:
            StaticResolver().add_zone_file(path)
        except ConfigError as exc:
            assert str(path) in str(exc)
