"""reports/destinations.py: rua/ruf URIs parsed, external destinations verified (RFC 9990 4)."""

from __future__ import annotations

from authmilter.psl import PublicSuffixList
from authmilter.reports.destinations import (
    MAX_DESTINATIONS,
    OK,
    RETRY,
    SKIPPED,
    must_retry,
    parse_mailto,
    usable,
    verify_destinations,
)
from authmilter.staticresolver import StaticResolver


def resolver(temperror: tuple[str, ...] = ()) -> StaticResolver:
    r = StaticResolver(temperror=temperror)
    r.add("_dmarc.example.com", "TXT", "v=DMARC1; p=reject; rua=mailto:d@example.com")
    r.add("_dmarc.example.net", "TXT", "v=DMARC1; p=none")
    r.add("_dmarc.example.org", "TXT", "v=DMARC1; p=none")
    r.add("example.com._report._dmarc.example.net", "TXT", "v=DMARC1")
    r.add("example.com._report._dmarc.example.org", "TXT", "v=spf1 -all")
    return r


def test_mailto_parsing() -> None:
    assert parse_mailto("mailto:d@example.com") == ("d@example.com", "")
    assert parse_mailto("MAILTO:d@Example.COM!10m") == ("d@example.com", "")
    assert parse_mailto("mailto:d%2Bx@example.com?subject=x") == ("d+x@example.com", "")
    assert parse_mailto("https://example.com/r")[1].startswith("scheme 'https' not supported")
    assert parse_mailto("mailto:nobody")[0] == ""
    assert parse_mailto("d@example.com")[0] == ""  # no scheme: "d@example.com" is no URI
    assert parse_mailto("mailto:a@x.com,b@x.com")[0] == ""


def test_same_org_needs_no_record() -> None:
    r = resolver()
    out = verify_destinations("sub.example.com", ["mailto:d@example.com"], r)
    assert [(d.address, d.status) for d in out] == [("d@example.com", OK)]
    assert not any("_report" in name for name, _ in r.queries)


def test_external_authorised_unauthorised_and_missing() -> None:
    out = verify_destinations(
        "example.com",
        [
            "mailto:a@example.net",  # v=DMARC1 published
            "mailto:b@example.org",  # a TXT, but not v=DMARC1
            "mailto:c@example.info",  # NXDOMAIN
            "https://example.net/x",
            "mailto:A@example.net",  # the same mailbox again
        ],
        resolver(),
    )
    assert [d.status for d in out] == [OK, SKIPPED, SKIPPED, SKIPPED, SKIPPED]
    assert "not authorised" in out[1].reason and "not authorised" in out[2].reason
    assert "duplicate" in out[4].reason
    assert usable(out) == ["a@example.net"]
    assert not must_retry(out)


def test_temperror_means_retry_never_send() -> None:
    r = resolver(temperror=("example.com._report._dmarc.example.net",))
    out = verify_destinations("example.com", ["mailto:a@example.net", "mailto:d@example.com"], r)
    assert [d.status for d in out] == [RETRY, OK]
    assert "temperror" in out[0].reason
    assert must_retry(out)
    # the tree walk for the destination's Organizational Domain failing is a retry too
    r = resolver(temperror=("_dmarc.example.net",))
    assert verify_destinations("example.com", ["mailto:a@example.net"], r)[0].status == RETRY


def test_psl_mode_uses_the_list() -> None:
    psl = PublicSuffixList.parse("com\nnet\n")
    r = StaticResolver()  # no DNS at all: the PSL decides the Organizational Domains
    out = verify_destinations("a.example.com", ["mailto:x@b.example.com"], r, psl)
    assert out[0].status == OK
    assert r.queries == []


def test_too_many_uris_are_cut() -> None:
    uris = [f"mailto:d{n}@example.com" for n in range(MAX_DESTINATIONS + 2)]
    out = verify_destinations("example.com", uris, resolver())
    assert [d.status for d in out].count(OK) == MAX_DESTINATIONS
    assert out[-1].status == SKIPPED
