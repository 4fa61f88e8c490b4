"""DMARC (RFC 9989): record syntax, tree walk, policy selection, alignment, temperror, psl mode."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path

import pytest

from authmilter.checks.dmarc import evaluate_dmarc, select_org_domain
from authmilter.checks.dmarc_record import parse_record, tree_walk_targets
from authmilter.checks.fromfield import parse_from
from authmilter.config import DmarcConfig
from authmilter.model import HeaderField, Transaction
from authmilter.psl import PublicSuffixList
from authmilter.results import (
    Disposition,
    DkimResult,
    DmarcResult,
    FromField,
    FromStatus,
    Result,
    SpfResult,
)
from authmilter.staticresolver import StaticResolver

PSL_FILE = Path(__file__).resolve().parent.parent / "data" / "psl" / "small.dat"
NONE, QUARANTINE, REJECT = Disposition.NONE, Disposition.QUARANTINE, Disposition.REJECT
TREEWALK = DmarcConfig()
PSL_MODE = DmarcConfig(org_domain="psl")


def dns(
    records: dict[str, str | Sequence[str]] | None = None, temperror: Iterable[str] = ()
) -> StaticResolver:
    """TXT records by owner name (a list for several records); temperror names."""
    r = StaticResolver(temperror=temperror)
    for name, value in (records or {}).items():
        values = [value] if isinstance(value, str) else list(value)
        r.add(name, "TXT", *values)
    return r


def author(*domains: str) -> FromField:
    if len(domains) == 1:
        return FromField(FromStatus.OK, domains)
    return FromField(FromStatus.MULTIPLE_FIELDS, domains)


def dk(domain: str, result: Result = Result.PASS) -> DkimResult:
    return DkimResult(result, domain=domain, selector="s1", algorithm="rsa-sha256")


def spf(domain: str, result: Result = Result.PASS, identity: str = "mailfrom") -> SpfResult:
    sender = f"bounce@{domain}" if identity == "mailfrom" else f"postmaster@{domain}"
    return SpfResult(result, identity=identity, domain=domain, sender=sender)


def run(
    from_field: FromField,
    resolver: StaticResolver,
    *,
    spf_result: SpfResult | None = None,
    dkim: Sequence[DkimResult] = (),
    cfg: DmarcConfig = TREEWALK,
    psl: PublicSuffixList | None = None,
    **kwargs: object,
) -> DmarcResult:
    result = evaluate_dmarc(from_field, spf_result, dkim, resolver, cfg, psl, **kwargs)  # type: ignore[arg-type]
    repeated = [q for q, n in Counter(resolver.queries).items() if n > 1]
    assert not repeated, f"asked DNS twice: {repeated}"
    return result


def txt_queries(resolver: StaticResolver) -> list[str]:
    return [name for name, rdtype in resolver.queries if rdtype == "TXT"]


@pytest.fixture(scope="module")
def small_psl() -> PublicSuffixList:
    return PublicSuffixList.load(PSL_FILE)


# =========================================================================== record syntax


@pytest.mark.parametrize(
    ("text", "p", "usable"),
    [
        ("v=DMARC1; p=reject", REJECT, True),
        ("v=DMARC1;p=quarantine", QUARANTINE, True),
        ("v=DMARC1; p=none;", NONE, True),
        ("v = DMARC1 ;  p = quarantine ; ", QUARANTINE, True),  # WSP around = and ;
        ("v=DMARC1;\tp=reject", REJECT, True),
        ("V=DMARC1; P=Reject", REJECT, True),  # tag names and p values are case-insensitive
        ("v=DMARC1; p=REJECT; foo=bar; pct=50; ri=86400", REJECT, True),  # unknown tags ignored
        ("v=DMARC1; rua=mailto:d@example.com", NONE, True),  # missing p: p=none (4.7)
        ("v=DMARC1", NONE, True),
        ("v=DMARC1; p=bogus", None, False),  # invalid p, no rua: DMARC not applied
        ("v=DMARC1; p=", None, False),
        ("v=DMARC1; p=bogus; rua=mailto:d@example.com", None, True),  # read as p=none
        ("v=DMARC1; p=reject; sp=junk", REJECT, False),
        ("v=DMARC1; p=reject; np=junk; rua=mailto:d@example.com", REJECT, True),
        ("v=DMARC1; p=bogus; rua=not a uri", None, False),
    ],
)
def test_record_policy(text: str, p: Disposition | None, usable: bool) -> None:
    record = parse_record(text)
    assert record is not None
    assert record.p is p
    assert record.usable is usable
    if usable and record.policy_error:
        effective = record.effective()
        assert (effective.p, effective.sp, effective.np) == (NONE, None, None)


@pytest.mark.parametrize(
    "text",
    [
        "p=reject; v=DMARC1",  # v= not first
        "v=dmarc1; p=reject",  # the value is case-sensitive
        "v=DMARC2; p=reject",
        "v=DMARC1 p=reject",  # no separator: the version value is "DMARC1 p=reject"
        "p=reject",
        "v=spf1 -all",
        "",
        "vDMARC1; p=reject",
    ],
)
def test_not_a_dmarc_record(text: str) -> None:
    assert parse_record(text) is None


def test_record_tags_and_defaults() -> None:
    r = parse_record("v=DMARC1; p=reject; sp=quarantine; np=reject; adkim=s; aspf=S; t=y; psd=n")
    assert r is not None
    assert (r.sp, r.np, r.adkim, r.aspf, r.t, r.psd) == (QUARANTINE, REJECT, "s", "s", True, "n")
    d = parse_record("v=DMARC1; p=none")
    assert d is not None
    assert (d.sp, d.np, d.adkim, d.aspf, d.t, d.psd, d.pct) == (
        None,
        None,
        "r",
        "r",
        False,
        "u",
        100,
    )


def test_bad_optional_values_fall_back_to_defaults() -> None:
    r = parse_record("v=DMARC1; p=reject; adkim=x; aspf=; t=maybe; psd=q; pct=200")
    assert r is not None
    assert (r.adkim, r.aspf, r.t, r.psd, r.pct) == ("r", "r", False, "u", 100)
    assert r.usable
    assert any("adkim" in p for p in r.problems)


def test_record_rua_and_first_tag_wins() -> None:
    r = parse_record("v=DMARC1; p=none; p=reject; rua=mailto:a@x.example!10m, https://r.example/x")
    assert r is not None
    assert r.p is NONE
    assert r.rua == ("mailto:a@x.example!10m", "https://r.example/x")


def test_policy_for() -> None:
    r = parse_record("v=DMARC1; p=reject; sp=quarantine; np=none")
    assert r is not None
    assert r.policy_for(subdomain=False) is REJECT
    assert r.policy_for(subdomain=True) is QUARANTINE
    assert r.policy_for(subdomain=True, exists=False) is NONE
    only_p = parse_record("v=DMARC1; p=reject")
    assert only_p is not None
    assert only_p.policy_for(subdomain=True, exists=False) is REJECT
    p_np = parse_record("v=DMARC1; p=quarantine; np=reject")
    assert p_np is not None
    assert p_np.policy_for(subdomain=True, exists=True) is QUARANTINE
    assert p_np.policy_for(subdomain=True, exists=False) is REJECT


def test_tree_walk_targets_rfc_example() -> None:
    # RFC 9989 4.10: the eight queries for a 13-label author domain
    assert tree_walk_targets("a.b.c.d.e.f.g.h.i.j.mail.example.com") == [
        "a.b.c.d.e.f.g.h.i.j.mail.example.com",
        "g.h.i.j.mail.example.com",
        "h.i.j.mail.example.com",
        "i.j.mail.example.com",
        "j.mail.example.com",
        "mail.example.com",
        "example.com",
        "com",
    ]
    assert tree_walk_targets("a.mail.example.com") == [
        "a.mail.example.com",
        "mail.example.com",
        "example.com",
        "com",
    ]
    eight = "a.b.c.d.e.example.co.uk"
    assert len(tree_walk_targets(eight)) == 8
    assert tree_walk_targets("com") == ["com"]


def test_select_org_domain() -> None:
    rec = parse_record("v=DMARC1; p=none")
    psd_y = parse_record("v=DMARC1; p=none; psd=y")
    psd_n = parse_record("v=DMARC1; p=none; psd=n")
    assert rec and psd_y and psd_n
    start = "a.mail.example.com"
    assert select_org_domain(start, []) == start
    assert (
        select_org_domain(start, [("mail.example.com", rec), ("example.com", rec)]) == "example.com"
    )
    assert select_org_domain(start, [("mail.example.com", psd_n)]) == "mail.example.com"
    assert select_org_domain(start, [("com", psd_y)]) == "example.com"
    assert select_org_domain("gov.example", [("gov.example", psd_y)]) == "gov.example"


# =========================================================================== basics


def test_no_record_is_none() -> None:
    r = dns()
    result = run(author("example.com"), r, dkim=[dk("example.com")])
    assert result.result is Result.NONE
    assert result.org_domain == "example.com"
    assert txt_queries(r) == ["_dmarc.example.com", "_dmarc.com"]


def test_aligned_dkim_pass() -> None:
    r = dns({"_dmarc.example.com": "v=DMARC1; p=reject"})
    result = run(author("example.com"), r, dkim=[dk("example.com")])
    assert result.result is Result.PASS
    assert (result.policy, result.policy_domain, result.org_domain) == (
        REJECT,
        "example.com",
        "example.com",
    )
    assert result.dkim_aligned and not result.spf_aligned
    assert result.from_domain == "example.com"
    assert txt_queries(r) == ["_dmarc.example.com"]  # nothing else needed


def test_aligned_spf_pass() -> None:
    r = dns({"_dmarc.example.com": "v=DMARC1; p=reject"})
    result = run(author("example.com"), r, spf_result=spf("example.com"))
    assert result.result is Result.PASS
    assert result.spf_aligned and not result.dkim_aligned


def test_no_authentication_fails_with_policy() -> None:
    r = dns({"_dmarc.example.com": "v=DMARC1; p=reject"})
    result = run(
        author("example.com"),
        r,
        spf_result=spf("example.com", Result.FAIL),
        dkim=[dk("example.com", Result.FAIL), dk("example.com", Result.PERMERROR)],
    )
    assert result.result is Result.FAIL
    assert result.policy is REJECT
    assert not result.testing
    assert result.reason


def test_unaligned_passes_fail() -> None:
    r = dns({"_dmarc.example.com": "v=DMARC1; p=quarantine"})
    result = run(
        author("example.com"), r, spf_result=spf("attacker.example"), dkim=[dk("attacker.example")]
    )
    assert result.result is Result.FAIL
    assert result.policy is QUARANTINE
    assert "attacker.example" in result.reason
    # an identifier outside the author's org domain needs no tree walk of its own
    assert not any("attacker" in q for q in txt_queries(r))


def test_disabled() -> None:
    result = run(author("example.com"), dns(), cfg=DmarcConfig(enabled=False))
    assert result.result is Result.NONE


# =========================================================================== record errors


def test_record_not_starting_with_v_is_ignored() -> None:
    r = dns({"_dmarc.example.com": "p=reject; v=DMARC1"})
    assert run(author("example.com"), r).result is Result.NONE


def test_non_dmarc_txt_next_to_a_record_is_ignored() -> None:
    r = dns({"_dmarc.example.com": ["some verification token", "v=DMARC1; p=reject"]})
    result = run(author("example.com"), r)
    assert (result.result, result.policy) == (Result.FAIL, REJECT)


def test_invalid_p_without_rua_is_permerror() -> None:
    r = dns({"_dmarc.example.com": "v=DMARC1; p=bogus"})
    result = run(author("example.com"), r)
    assert result.result is Result.PERMERROR
    assert result.policy is NONE
    assert result.policy_domain == "example.com"
    assert "p=" in result.reason


def test_invalid_p_with_rua_is_read_as_none() -> None:
    r = dns({"_dmarc.example.com": "v=DMARC1; p=bogus; rua=mailto:d@example.com"})
    result = run(author("example.com"), r)
    assert (result.result, result.policy) == (Result.FAIL, NONE)


def test_invalid_sp_with_rua_is_read_as_none() -> None:
    r = dns({"_dmarc.example.com": "v=DMARC1; p=reject; sp=bad; rua=mailto:d@example.com"})
    result = run(author("sub.example.com"), r)
    assert (result.result, result.policy) == (Result.FAIL, NONE)


def test_two_records_are_discarded_and_the_walk_goes_on() -> None:
    r = dns(
        {
            "_dmarc.sub.example.com": ["v=DMARC1; p=none", "v=DMARC1; p=none"],
            "_dmarc.example.com": "v=DMARC1; p=none; sp=reject",
        }
    )
    result = run(author("sub.example.com"), r)
    assert result.result is Result.FAIL
    assert (result.policy_domain, result.policy) == ("example.com", REJECT)


def test_two_records_and_nothing_else_is_none() -> None:
    r = dns({"_dmarc.example.com": ["v=DMARC1; p=reject", "v=DMARC1; p=none"]})
    assert run(author("example.com"), r).result is Result.NONE


# =========================================================================== tree walk


def test_record_on_parent_uses_sp() -> None:
    r = dns({"_dmarc.example.com": "v=DMARC1; p=none; sp=quarantine"})
    result = run(author("a.mail.example.com"), r)
    assert result.result is Result.FAIL
    assert (result.policy, result.policy_domain, result.org_domain) == (
        QUARANTINE,
        "example.com",
        "example.com",
    )
    assert txt_queries(r) == [
        "_dmarc.a.mail.example.com",
        "_dmarc.mail.example.com",
        "_dmarc.example.com",
        "_dmarc.com",
    ]


def test_policy_comes_from_the_org_domain_not_the_nearest_record() -> None:
    # RFC 9989 4.10.1/4.10.2: records at mail.example.com and example.com, none has psd:
    # the Organizational Domain is the one with the fewest labels, and its record applies.
    r = dns(
        {
            "_dmarc.mail.example.com": "v=DMARC1; p=none; sp=none",
            "_dmarc.example.com": "v=DMARC1; p=none; sp=reject",
        }
    )
    result = run(author("a.mail.example.com"), r)
    assert (result.policy_domain, result.org_domain, result.policy) == (
        "example.com",
        "example.com",
        REJECT,
    )


def test_psd_n_makes_an_org_domain_and_stops_the_walk() -> None:
    r = dns(
        {
            "_dmarc.mail.example.com": "v=DMARC1; p=none; sp=quarantine; psd=n",
            "_dmarc.example.com": "v=DMARC1; p=reject",
        }
    )
    result = run(author("a.mail.example.com"), r)
    assert (result.policy_domain, result.org_domain, result.policy) == (
        "mail.example.com",
        "mail.example.com",
        QUARANTINE,
    )
    assert "_dmarc.example.com" not in txt_queries(r)


def test_psd_n_breaks_relaxed_alignment_across_it() -> None:
    r = dns(
        {
            "_dmarc.dept.example.com": "v=DMARC1; p=reject; psd=n",
            "_dmarc.example.com": "v=DMARC1; p=none",
        }
    )
    result = run(author("dept.example.com"), r, dkim=[dk("example.com")])
    assert result.result is Result.FAIL
    assert result.org_domain == "dept.example.com"


def test_psd_y_rfc_example_b43() -> None:
    r = dns(
        {
            "_dmarc.bank.example": "v=DMARC1; p=reject; psd=y",
            "_dmarc.giant.bank.example": "v=DMARC1; p=quarantine",
        }
    )
    spf_aligned = run(author("giant.bank.example"), r, spf_result=spf("mail.giant.bank.example"))
    assert spf_aligned.result is Result.PASS
    assert spf_aligned.org_domain == "giant.bank.example"
    assert spf_aligned.policy_domain == "giant.bank.example"
    r2 = dns(
        {
            "_dmarc.bank.example": "v=DMARC1; p=reject; psd=y",
            "_dmarc.giant.bank.example": "v=DMARC1; p=quarantine",
        }
    )
    dkim_only = run(author("giant.bank.example"), r2, dkim=[dk("mail.mega.bank.example")])
    assert dkim_only.result is Result.FAIL
    assert dkim_only.policy is QUARANTINE


def test_psd_policy_applies_when_org_domain_has_no_record() -> None:
    r = dns({"_dmarc.bank.example": "v=DMARC1; p=none; sp=reject; psd=y"})
    result = run(author("www.nobody.bank.example"), r, dkim=[dk("other.bank.example")])
    assert result.result is Result.FAIL
    assert (result.policy_domain, result.org_domain, result.policy) == (
        "bank.example",
        "nobody.bank.example",
        REJECT,
    )
    r2 = dns({"_dmarc.bank.example": "v=DMARC1; p=none; sp=reject; psd=y"})
    aligned = run(author("www.nobody.bank.example"), r2, dkim=[dk("nobody.bank.example")])
    assert aligned.result is Result.PASS


def test_psd_y_for_the_author_itself_uses_p() -> None:
    r = dns({"_dmarc.gov.example": "v=DMARC1; p=reject; sp=none; psd=y"})
    result = run(author("gov.example"), r)
    assert (result.result, result.policy, result.org_domain) == (Result.FAIL, REJECT, "gov.example")


def test_more_than_eight_labels_skips_to_seven() -> None:
    deep = "a.b.c.d.e.f.g.h.i.j.k.example.com"  # RFC 9989 B.4.2
    r = dns(
        {
            "_dmarc.example.com": "v=DMARC1; p=reject",
            "_dmarc.signing.example.com": "v=DMARC1; p=none",
        }
    )
    result = run(author(deep), r, spf_result=spf("example.com"), dkim=[dk("signing.example.com")])
    assert result.result is Result.PASS
    assert result.dkim_aligned and result.spf_aligned
    assert (result.org_domain, result.policy_domain) == ("example.com", "example.com")
    walk = txt_queries(r)[:8]
    assert walk == ["_dmarc." + d for d in tree_walk_targets(deep)]
    assert "_dmarc.b.c.d.e.f.g.h.i.j.k.example.com" not in txt_queries(r)


def test_deep_psd_n_record_is_never_found() -> None:
    # RFC 9989 5.1.8: the zone-cut record is skipped by the eight-query shortcut
    r = dns(
        {
            "_dmarc.b.c.d.e.f.g.example.com": "v=DMARC1; p=none; psd=n",
            "_dmarc.example.com": "v=DMARC1; p=none; sp=reject",
        }
    )
    result = run(author("mail.a.b.c.d.e.f.g.example.com"), r)
    assert (result.policy_domain, result.policy) == ("example.com", REJECT)
    assert len(txt_queries(r)) == 8


# =========================================================================== np and sp


NP_RECORD = {"_dmarc.example.com": "v=DMARC1; p=none; sp=quarantine; np=reject"}


def test_np_for_a_non_existent_subdomain() -> None:
    r = dns(NP_RECORD)
    result = run(author("nx.example.com"), r)
    assert (result.result, result.policy) == (Result.FAIL, REJECT)
    assert ("nx.example.com", "A") in r.queries
    assert ("nx.example.com", "MX") in r.queries


@pytest.mark.parametrize("rdtype", ["A", "AAAA", "MX"])
def test_sp_for_an_existing_subdomain(rdtype: str) -> None:
    r = dns(NP_RECORD)
    value: object = (
        (10, "mx.example.com")
        if rdtype == "MX"
        else ("192.0.2.1" if rdtype == "A" else "2001:db8::1")
    )
    r.add("sub.example.com", rdtype, value)  # type: ignore[arg-type]
    result = run(author("sub.example.com"), r)
    assert (result.result, result.policy) == (Result.FAIL, QUARANTINE)


def test_name_below_an_existing_name_exists() -> None:
    # NODATA (a name with only records below it) is not NXDOMAIN: the domain exists
    r = dns(NP_RECORD)
    r.add("host.sub.example.com", "A", "192.0.2.1")
    result = run(author("sub.example.com"), r)
    assert result.policy is QUARANTINE


def test_no_np_means_no_existence_lookups() -> None:
    r = dns({"_dmarc.example.com": "v=DMARC1; p=none; sp=quarantine"})
    result = run(author("nx.example.com"), r)
    assert result.policy is QUARANTINE
    assert all(rdtype == "TXT" for _, rdtype in r.queries)


def test_np_not_consulted_for_the_org_domain_itself() -> None:
    r = dns({"_dmarc.example.com": "v=DMARC1; p=quarantine; np=reject"})
    assert run(author("example.com"), r).policy is QUARANTINE


def test_np_falls_back_to_p_without_sp() -> None:
    r = dns({"_dmarc.example.com": "v=DMARC1; p=quarantine"})
    assert run(author("nx.example.com"), r).policy is QUARANTINE


def test_np_not_checked_on_pass() -> None:
    r = dns(NP_RECORD)
    result = run(author("nx.example.com"), r, dkim=[dk("example.com")])
    assert result.result is Result.PASS
    assert all(rdtype == "TXT" for _, rdtype in r.queries)


def test_np_existence_check_temperror() -> None:
    r = dns(NP_RECORD, temperror=["nx.example.com"])
    result = run(author("nx.example.com"), r)
    assert result.result is Result.TEMPERROR
    assert "np=" in result.reason


# =========================================================================== t=y


def test_testing_mode() -> None:
    r = dns({"_dmarc.example.com": "v=DMARC1; p=reject; t=y"})
    result = run(author("example.com"), r)
    assert (result.result, result.policy, result.testing) == (Result.FAIL, REJECT, True)


def test_t_n_is_not_testing() -> None:
    r = dns({"_dmarc.example.com": "v=DMARC1; p=reject; t=n"})
    assert run(author("example.com"), r).testing is False


def test_pct_is_ignored_in_treewalk_mode() -> None:
    r = dns({"_dmarc.example.com": "v=DMARC1; p=reject; pct=0"})
    result = run(author("example.com"), r, sample=lambda: 0.99)
    assert (result.policy, result.testing) == (REJECT, False)


# =========================================================================== alignment


@pytest.mark.parametrize(
    ("mode", "ident", "from_domain", "aligned"),
    [
        ("r", "example.com", "news.example.com", True),
        ("r", "foo.example.com", "news.example.com", True),
        ("r", "news.example.com", "news.example.com", True),
        ("r", "example.net", "news.example.com", False),
        ("r", "notexample.com", "example.com", False),
        ("s", "news.example.com", "news.example.com", True),
        ("s", "example.com", "news.example.com", False),
        ("s", "foo.example.com", "example.com", False),
    ],
)
@pytest.mark.parametrize("mechanism", ["dkim", "spf"])
def test_alignment(mechanism: str, mode: str, ident: str, from_domain: str, aligned: bool) -> None:
    tag = "adkim" if mechanism == "dkim" else "aspf"
    r = dns({"_dmarc.example.com": f"v=DMARC1; p=reject; {tag}={mode}"})
    if mechanism == "dkim":
        result = run(author(from_domain), r, dkim=[dk(ident)])
        assert result.dkim_aligned is aligned
    else:
        result = run(author(from_domain), r, spf_result=spf(ident))
        assert result.spf_aligned is aligned
    assert result.result is (Result.PASS if aligned else Result.FAIL)


def test_strict_dkim_does_not_make_spf_strict() -> None:
    r = dns({"_dmarc.example.com": "v=DMARC1; p=reject; adkim=s"})
    result = run(
        author("example.com"),
        r,
        spf_result=spf("bounce.example.com"),
        dkim=[dk("mail.example.com")],
    )
    assert (result.result, result.spf_aligned, result.dkim_aligned) == (Result.PASS, True, False)


def test_relaxed_alignment_with_own_record_on_the_identifier() -> None:
    # RFC 9989 B.4.1: signing.example.com has its own record; the org domain is still example.com
    r = dns(
        {
            "_dmarc.example.com": "v=DMARC1; p=reject",
            "_dmarc.signing.example.com": "v=DMARC1; p=none",
        }
    )
    result = run(author("example.com"), r, dkim=[dk("signing.example.com")])
    assert result.result is Result.PASS


def test_helo_identity_never_aligns() -> None:
    r = dns({"_dmarc.example.com": "v=DMARC1; p=reject"})
    result = run(author("example.com"), r, spf_result=spf("example.com", identity="helo"))
    assert (result.result, result.spf_aligned) == (Result.FAIL, False)
    assert "helo" in result.reason


def test_null_sender_helo_identity_is_the_mail_from_identity() -> None:
    # RFC 9989 3.2.4: MAIL FROM:<> is checked as postmaster@HELO, and that counts
    r = dns({"_dmarc.example.com": "v=DMARC1; p=reject"})
    result = run(
        author("example.com"),
        r,
        spf_result=spf("mail.example.com", identity="helo"),
        null_sender=True,
    )
    assert (result.result, result.spf_aligned) == (Result.PASS, True)


def test_idn_alignment() -> None:
    tx = Transaction(headers=(HeaderField("From", " Jörg <jörg@bücher.example>".encode()),))
    from_field = parse_from(tx)
    r = dns({"_dmarc.xn--bcher-kva.example": "v=DMARC1; p=reject"})
    by_dkim = run(from_field, r, dkim=[dk("XN--BCHER-KVA.example")])
    assert by_dkim.result is Result.PASS
    assert by_dkim.from_domain == "xn--bcher-kva.example"
    r2 = dns({"_dmarc.xn--bcher-kva.example": "v=DMARC1; p=reject"})
    by_spf = run(from_field, r2, spf_result=spf("mail.bücher.example"))
    assert by_spf.result is Result.PASS


def test_dkim_domain_case_and_trailing_dot() -> None:
    r = dns({"_dmarc.example.com": "v=DMARC1; p=reject; adkim=s"})
    assert run(author("example.com"), r, dkim=[dk("Example.COM.")]).result is Result.PASS


# =========================================================================== temperror


def test_record_lookup_temperror() -> None:
    r = dns(temperror=["_dmarc.example.com"])
    result = run(author("example.com"), r, dkim=[dk("example.com")])
    assert result.result is Result.TEMPERROR
    assert result.policy is NONE


def test_walk_temperror() -> None:
    r = dns(temperror=["_dmarc.example.com"])
    result = run(author("a.example.com"), r)
    assert result.result is Result.TEMPERROR


def test_aligned_dkim_temperror_is_temperror_not_fail() -> None:
    r = dns({"_dmarc.example.com": "v=DMARC1; p=reject"})
    result = run(
        author("example.com"),
        r,
        spf_result=spf("attacker.example"),
        dkim=[dk("example.com", Result.TEMPERROR)],
    )
    assert result.result is Result.TEMPERROR
    assert result.policy is REJECT  # what would apply, for the log; policy tempfails


def test_unaligned_dkim_temperror_is_still_fail() -> None:
    r = dns({"_dmarc.example.com": "v=DMARC1; p=reject"})
    result = run(author("example.com"), r, dkim=[dk("other.example", Result.TEMPERROR)])
    assert result.result is Result.FAIL


def test_aligned_spf_temperror_is_temperror() -> None:
    r = dns({"_dmarc.example.com": "v=DMARC1; p=reject"})
    result = run(author("example.com"), r, spf_result=spf("bounce.example.com", Result.TEMPERROR))
    assert result.result is Result.TEMPERROR


def test_strict_mode_unaligned_spf_temperror_is_fail() -> None:
    r = dns({"_dmarc.example.com": "v=DMARC1; p=reject; aspf=s"})
    result = run(author("example.com"), r, spf_result=spf("bounce.example.com", Result.TEMPERROR))
    assert result.result is Result.FAIL


def test_pass_wins_over_another_temperror() -> None:
    r = dns({"_dmarc.example.com": "v=DMARC1; p=reject"})
    result = run(
        author("example.com"),
        r,
        spf_result=spf("example.com", Result.TEMPERROR),
        dkim=[dk("example.com")],
    )
    assert result.result is Result.PASS


def test_identifier_walk_temperror() -> None:
    r = dns({"_dmarc.example.com": "v=DMARC1; p=reject"}, temperror=["_dmarc.x.example.com"])
    result = run(author("example.com"), r, dkim=[dk("x.example.com")])
    assert result.result is Result.TEMPERROR


def test_report_only_walk_temperror_does_not_change_the_verdict() -> None:
    # strict alignment needs no org domain; its walk failing must not turn fail into temperror
    r = dns(
        {"_dmarc.sub.example.com": "v=DMARC1; p=reject; adkim=s"}, temperror=["_dmarc.example.com"]
    )
    result = run(author("sub.example.com"), r, dkim=[dk("example.com")])
    assert result.result is Result.FAIL
    assert result.org_domain == ""


# =========================================================================== From field statuses


@pytest.mark.parametrize("status", [FromStatus.MISSING, FromStatus.UNPARSEABLE])
def test_missing_or_unparseable_from_is_permerror(status: FromStatus) -> None:
    r = dns()
    result = run(FromField(status, reason="because"), r)
    assert result.result is Result.PERMERROR
    assert "because" in result.reason
    assert r.queries == []


def test_multiple_domains_one_unauthenticated_fails() -> None:
    r = dns(
        {
            "_dmarc.good.example": "v=DMARC1; p=reject",
            "_dmarc.victim.example": "v=DMARC1; p=reject",
        }
    )
    result = run(author("good.example", "victim.example"), r, dkim=[dk("good.example")])
    assert result.result is Result.FAIL
    assert result.from_domain == "victim.example"
    assert "good.example=pass" in result.reason
    assert "victim.example=fail" in result.reason


def test_multiple_domains_none_for_one_is_not_a_silent_pass() -> None:
    r = dns({"_dmarc.good.example": "v=DMARC1; p=reject"})
    result = run(author("good.example", "norecord.example"), r, dkim=[dk("good.example")])
    assert result.result is Result.NONE
    assert result.from_domain == "norecord.example"


def test_multiple_domains_temperror_beats_pass() -> None:
    r = dns({"_dmarc.good.example": "v=DMARC1; p=reject"}, temperror=["_dmarc.slow.example"])
    result = run(author("good.example", "slow.example"), r, dkim=[dk("good.example")])
    assert result.result is Result.TEMPERROR


def test_multiple_domains_strictest_policy() -> None:
    r = dns(
        {
            "_dmarc.a.example": "v=DMARC1; p=quarantine",
            "_dmarc.b.example": "v=DMARC1; p=reject",
            "_dmarc.c.example": "v=DMARC1; p=reject; t=y",
        }
    )
    result = run(author("a.example", "b.example", "c.example"), r)
    assert (result.result, result.policy, result.from_domain) == (Result.FAIL, REJECT, "b.example")


def test_multiple_domains_all_pass() -> None:
    r = dns({"_dmarc.a.example": "v=DMARC1; p=reject", "_dmarc.b.example": "v=DMARC1; p=reject"})
    result = run(author("a.example", "b.example"), r, dkim=[dk("a.example"), dk("b.example")])
    assert result.result is Result.PASS


def test_same_domain_repeated_counts_once() -> None:
    r = dns({"_dmarc.example.com": "v=DMARC1; p=reject"})
    field = FromField(FromStatus.MULTIPLE_ADDRESSES, ("example.com",))
    result = run(field, r, dkim=[dk("example.com")])
    assert result.result is Result.PASS
    assert "multiple-addresses" in result.reason


def test_multiple_status_without_domains_is_permerror() -> None:
    result = run(FromField(FromStatus.MULTIPLE_FIELDS, ()), dns())
    assert result.result is Result.PERMERROR


# =========================================================================== psl mode


def test_psl_mode_needs_a_list() -> None:
    with pytest.raises(ValueError, match="PublicSuffixList"):
        evaluate_dmarc(author("example.com"), None, (), dns(), PSL_MODE)


def test_psl_mode_record_at_org_domain(small_psl: PublicSuffixList) -> None:
    r = dns({"_dmarc.example.com": "v=DMARC1; p=none; sp=reject"})
    result = run(author("a.b.example.com"), r, cfg=PSL_MODE, psl=small_psl)
    assert (result.result, result.policy, result.policy_domain, result.org_domain) == (
        Result.FAIL,
        REJECT,
        "example.com",
        "example.com",
    )
    assert txt_queries(r) == ["_dmarc.a.b.example.com", "_dmarc.example.com"]


def test_psl_mode_ignores_psd_and_intermediate_records(small_psl: PublicSuffixList) -> None:
    records = {
        "_dmarc.b.example.com": "v=DMARC1; p=none; psd=n",
        "_dmarc.example.com": "v=DMARC1; p=reject",
    }
    psl_result = run(author("a.b.example.com"), dns(records), cfg=PSL_MODE, psl=small_psl)
    walk_result = run(author("a.b.example.com"), dns(records))
    assert (psl_result.policy_domain, psl_result.policy) == ("example.com", REJECT)
    assert (walk_result.policy_domain, walk_result.policy) == ("b.example.com", NONE)


def test_psl_mode_alignment_uses_the_list(small_psl: PublicSuffixList) -> None:
    r = dns({"_dmarc.example.co.uk": "v=DMARC1; p=reject"})
    ok = run(
        author("a.example.co.uk"), r, dkim=[dk("b.example.co.uk")], cfg=PSL_MODE, psl=small_psl
    )
    assert ok.result is Result.PASS
    r2 = dns({"_dmarc.example.co.uk": "v=DMARC1; p=reject"})
    bad = run(author("a.example.co.uk"), r2, dkim=[dk("other.co.uk")], cfg=PSL_MODE, psl=small_psl)
    assert bad.result is Result.FAIL


def test_psl_mode_multiple_records_is_permerror(small_psl: PublicSuffixList) -> None:
    r = dns({"_dmarc.example.com": ["v=DMARC1; p=reject", "v=DMARC1; p=none"]})
    result = run(author("example.com"), r, cfg=PSL_MODE, psl=small_psl)
    assert result.result is Result.PERMERROR


@pytest.mark.parametrize(
    ("pct", "draw", "testing"),
    [
        (50, 0.70, True),  # 70 >= 50: sampled out, not enforced
        (50, 0.20, False),
        (0, 0.00, True),
        (100, 0.999, False),
    ],
)
def test_psl_mode_pct(small_psl: PublicSuffixList, pct: int, draw: float, testing: bool) -> None:
    r = dns({"_dmarc.example.com": f"v=DMARC1; p=reject; pct={pct}"})
    result = run(author("example.com"), r, cfg=PSL_MODE, psl=small_psl, sample=lambda: draw)
    assert (result.result, result.policy, result.testing) == (Result.FAIL, REJECT, testing)


def test_psl_mode_pass_does_not_sample(small_psl: PublicSuffixList) -> None:
    def never() -> float:
        raise AssertionError("sampled a passing message")

    r = dns({"_dmarc.example.com": "v=DMARC1; p=reject; pct=10"})
    result = run(
        author("example.com"),
        r,
        dkim=[dk("example.com")],
        cfg=PSL_MODE,
        psl=small_psl,
        sample=never,
    )
    assert result.result is Result.PASS


def test_psl_mode_temperror(small_psl: PublicSuffixList) -> None:
    r = dns(temperror=["_dmarc.example.com"])
    result = run(author("a.example.com"), r, cfg=PSL_MODE, psl=small_psl)
    assert result.result is Result.TEMPERROR


def test_psl_mode_np(small_psl: PublicSuffixList) -> None:
    r = dns(NP_RECORD)
    result = run(author("nx.example.com"), r, cfg=PSL_MODE, psl=small_psl)
    assert result.policy is REJECT
