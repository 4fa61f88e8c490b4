"""Authentication-Results / Received-SPF rendering, sanitising and forged-header detection."""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field

import authres
import pytest
import spf as pyspf

from authmilter import headers
from authmilter.headers import (
    find_forged,
    header_value_is_safe,
    render_authentication_results,
    render_received_spf,
)
from authmilter.model import Envelope, HeaderField
from authmilter.results import (
    AuthResults,
    Deception,
    Disposition,
    DkimResult,
    DmarcResult,
    FromWarning,
    IprevResult,
    Result,
    SpfResult,
)
from authmilter.trust import Trust

AID = "mx.example.org"
ENV = Envelope(helo="mail.example.com", mail_from="alice@example.com")
TOKEN = re.compile(r"[A-Za-z0-9!#$%&'*+.^_`{|}~-]+")
BARE_ADDRESS = re.compile(r"(?:[A-Za-z0-9!#$%&'*+/=?^_`{|}~.-]*)@[A-Za-z0-9.-]+")


# --------------------------------------------------------------------------- helpers


@dataclass
class Res:
    """One resinfo as read back by the strict test parser."""

    method: str
    result: str
    reason: str | None = None
    props: list[tuple[str, str]] = field(default_factory=list)


def _lex(value: str) -> list[tuple[str, str]]:
    """Strict RFC 8601 lexer: words, quoted-strings (unescaped), ';' and '='; drops comments."""
    out: list[tuple[str, str]] = []
    i = 0
    while i < len(value):
        ch = value[i]
        if ch == "\n":
            assert value[i + 1 : i + 2] in (" ", "\t"), "bare LF"
            i += 1
        elif ch in " \t":
            i += 1
        elif ch == "(":
            depth = 0
            while True:
                c = value[i]
                assert c not in "\r\\", "backslash or CR in a comment"
                depth += {"(": 1, ")": -1}.get(c, 0)
                i += 1
                if depth == 0:
                    break
            assert depth == 0
        elif ch == '"':
            j, text = i + 1, []
            while value[j] != '"':
                if value[j] == "\\":
                    j += 1
                assert value[j] not in "\r\n\x00"
                text.append(value[j])
                j += 1
            out.append(("qs", "".join(text)))
            i = j + 1
        elif ch in ";=":
            out.append((ch, ch))
            i += 1
        else:
            m = re.compile(r"[A-Za-z0-9!#$%&'*+./^_`{|}~@?-]+").match(value, i)
            assert m, f"unexpected {ch!r} at {i} in {value!r}"
            word = m.group()
            assert TOKEN.fullmatch(word) or BARE_ADDRESS.fullmatch(word), word
            out.append(("word", word))
            i = m.end()
    return out


def strict_parse(value: str) -> tuple[str, list[Res]]:
    """Parse an A-R value by RFC 8601 section 2.2; any deviation is an AssertionError."""
    toks = _lex(value)
    assert toks and toks[0][0] in ("word", "qs")
    authserv_id, pos = toks[0][1], 1
    if pos < len(toks) and toks[pos][0] == "word" and toks[pos][1].isdigit():
        pos += 1
    if toks[pos:] == [(";", ";"), ("word", "none")]:
        return authserv_id, []
    results: list[Res] = []
    while pos < len(toks):
        assert toks[pos][0] == ";"
        kind, method = toks[pos + 1]
        assert kind == "word" and toks[pos + 2][0] == "="
        assert toks[pos + 3][0] == "word"
        res = Res(method, toks[pos + 3][1])
        pos += 4
        while pos < len(toks) and toks[pos][0] != ";":
            (k1, name), (k2, _), (k3, val) = toks[pos : pos + 3]
            assert k1 == "word" and k2 == "=" and k3 in ("word", "qs"), toks[pos : pos + 3]
            if name == "reason":
                assert res.reason is None and not res.props
                res.reason = val
            else:
                assert "." in name
                res.props.append((name, val))
            pos += 3
        results.append(res)
    return authserv_id, results


def unescape(value: str) -> str:
    return re.sub(r"\\(.)", r"\1", value)


def asciify(value: str) -> str:
    """Replace non-ASCII characters one for one (authres reads ASCII only)."""
    return "".join(ch if ord(ch) < 128 else "x" for ch in value)


PARSERS = {
    "simple": authres.AuthenticationResultsHeader.parse_value,
    "all_features": authres.all_features().parse_value,
}


def authres_parse(value: str, parser: str = "all_features") -> tuple[str, list[Res]]:
    header = PARSERS[parser](asciify(value))
    return header.authserv_id, [
        Res(
            r.method,
            r.result,
            unescape(r.reason) if r.reason else None,
            [(f"{p.type}.{p.name}", unescape(p.value)) for p in r.properties],
        )
        for r in header.results
    ]


def skeleton(value: str) -> str:
    """The value with quoted-strings and comments blanked and folds unfolded."""
    out = re.sub(r'"(?:[^"\\]|\\.)*"', '""', value.replace("\n\t", " "))
    while re.search(r"\([^()]*\)", out):
        out = re.sub(r" ?\([^()]*\)", "", out)
    return out


def line_widths(name: str, value: str) -> list[int]:
    lines = f"{name}: {value}".split("\n")
    return [len(line.expandtabs(8).encode()) for line in lines]


def ar(results: AuthResults, env: Envelope = ENV, aid: str = AID, **kw: object) -> str:
    value = render_authentication_results(aid, results, env, **kw)  # type: ignore[arg-type]
    assert header_value_is_safe(value, "Authentication-Results"), value
    check_folding("Authentication-Results", value)
    return value


def check_folding(name: str, value: str) -> None:
    """Lines are <= 78 columns unless they hold one unbreakable element."""
    for line, width in zip(value.split("\n"), line_widths(name, value), strict=True):
        unquoted = re.sub(r'"(?:[^"\\]|\\.)*"', '""', line.lstrip("\t"))
        assert width <= 78 or (" " not in unquoted and "(" not in unquoted), line


def sig(result: Result = Result.PASS, **kw: object) -> DkimResult:
    base: dict[str, object] = {
        "domain": "example.com",
        "selector": "sel1",
        "algorithm": "rsa-sha256",
        "header_b": "AbCdEfGhIjKl",
        "key_bits": 2048,
    }
    base.update(kw)
    return DkimResult(result, **base)  # type: ignore[arg-type]


SPF_PASS = SpfResult(Result.PASS, domain="example.com", sender="alice@example.com")
DMARC_PASS = DmarcResult(Result.PASS, from_domain="example.com", policy=Disposition.REJECT)


# --------------------------------------------------------------------------- golden strings


def test_golden_typical_inbound() -> None:
    value = ar(AuthResults(spf=SPF_PASS, dkim=(sig(identity="@example.com"),), dmarc=DMARC_PASS))
    assert value == (
        "mx.example.org;\n"
        "\tspf=pass smtp.mailfrom=alice@example.com;\n"
        "\tdkim=pass (2048-bit key) header.d=example.com header.i=@example.com\n"
        "\theader.s=sel1 header.a=rsa-sha256 header.b=AbCdEfGh;\n"
        "\tdmarc=pass (p=reject) policy.dmarc=reject header.from=example.com"
    )


def test_golden_nothing_is_none() -> None:
    assert ar(AuthResults()) == "mx.example.org; none"


def test_golden_internal_is_none_with_comment() -> None:
    assert (
        ar(AuthResults(trusted=Trust.INTERNAL))
        == "mx.example.org; none (internal host, not checked)"
    )


def test_golden_authenticated_sender() -> None:
    env = Envelope(mail_from="bob@example.net", auth_user="bob@example.net")
    assert ar(AuthResults(trusted=Trust.AUTHENTICATED), env, login=True) == (
        "mx.example.org;\n\tauth=pass smtp.auth=bob@example.net"
    )


def test_login_name_only_when_asked() -> None:
    env = Envelope(mail_from="bob@example.net", auth_user="secret-login")
    value = ar(AuthResults(trusted=Trust.AUTHENTICATED), env)
    assert value == "mx.example.org;\n\tauth=pass" and "secret-login" not in value
    assert strict_parse(value) == (AID, [Res("auth", "pass")])


def test_golden_authenticated_without_user_and_with_dkim() -> None:
    value = ar(AuthResults(trusted=Trust.AUTHENTICATED, dkim=(sig(),)), Envelope())
    assert value == (
        "mx.example.org;\n\tauth=pass;\n\tdkim=pass (2048-bit key) header.d=example.com"
        " header.s=sel1\n\theader.a=rsa-sha256 header.b=AbCdEfGh"
    )


def test_golden_null_sender_helo_identity_and_extra_helo_check() -> None:
    env = Envelope(helo="mail.example.com", mail_from="")
    helo = SpfResult(Result.PASS, identity="helo", domain="mail.example.com")
    assert (
        ar(AuthResults(spf=helo), env) == "mx.example.org;\n\tspf=pass smtp.helo=mail.example.com"
    )
    both = AuthResults(
        spf=SpfResult(Result.SOFTFAIL, domain="example.com", reason="~all matched"),
        helo_spf=SpfResult(Result.NONE, identity="helo", domain=""),
    )
    assert ar(both) == (
        "mx.example.org;\n"
        '\tspf=softfail reason="~all matched" smtp.mailfrom=alice@example.com;\n'
        "\tspf=none smtp.helo=mail.example.com"
    )


def test_golden_failures_carry_reasons() -> None:
    results = AuthResults(
        spf=SpfResult(Result.TEMPERROR, domain="example.com", reason="DNS timeout"),
        dkim=(
            sig(Result.FAIL, reason="signature did not verify", header_b=""),
            DkimResult(Result.PERMERROR, reason="bad tag list"),
            sig(Result.PASS, body_length=120, reason="ignored for pass", header_b=""),
        ),
        dmarc=DmarcResult(
            Result.FAIL,
            from_domain="example.com",
            policy=Disposition.QUARANTINE,
            testing=True,
            reason="no aligned pass",
        ),
    )
    assert ar(results, disposition=Disposition.NONE) == (
        "mx.example.org;\n"
        '\tspf=temperror reason="DNS timeout" smtp.mailfrom=alice@example.com;\n'
        '\tdkim=fail (2048-bit key) reason="signature did not verify"\n'
        "\theader.d=example.com header.s=sel1 header.a=rsa-sha256;\n"
        '\tdkim=permerror reason="bad tag list";\n'
        "\tdkim=pass (2048-bit key, body length limit 120) header.d=example.com\n"
        "\theader.s=sel1 header.a=rsa-sha256;\n"
        '\tdmarc=fail (p=quarantine dis=none t=y) reason="no aligned pass"\n'
        "\tpolicy.dmarc=quarantine header.from=example.com"
    )


def test_golden_dmarc_without_record_has_no_policy() -> None:
    value = ar(AuthResults(dmarc=DmarcResult(Result.NONE, from_domain="example.com")))
    assert value == "mx.example.org;\n\tdmarc=none header.from=example.com"


def test_authserv_id_case_is_kept() -> None:
    assert ar(AuthResults(), aid="MX.Example.ORG") == "MX.Example.ORG; none"
    assert authres_parse(ar(AuthResults(spf=SPF_PASS), aid="MX.Example.ORG"))[0] == "mx.example.org"
    assert strict_parse(ar(AuthResults(spf=SPF_PASS), aid="MX.Example.ORG"))[0] == "MX.Example.ORG"


def test_header_b_with_slash_is_quoted_and_cut_to_eight() -> None:
    value = ar(AuthResults(dkim=(sig(header_b="ab/+cdefXYZ"),)))
    assert value.endswith('header.b="ab/+cdef"')
    assert authres_parse(value)[1][0].props[-1] == ("header.b", "ab/+cdef")


# --------------------------------------------------------------------------- round trips


def expected(results: AuthResults, env: Envelope = ENV) -> list[Res]:
    """What every renderer must say, in the test's own words."""
    out: list[Res] = []
    for s in (results.spf, results.helo_spf):
        if s is None:
            continue
        reason = s.reason or None if s.result != Result.PASS else None
        prop = ("smtp.helo", s.domain) if s.identity == "helo" else ("smtp.mailfrom", s.sender)
        out.append(Res("spf", str(s.result), reason, [prop]))
    for d in results.dkim:
        props = [("header.d", d.domain), ("header.i", d.identity), ("header.s", d.selector)]
        props += [("header.a", d.algorithm), ("header.b", d.header_b[:8])]
        reason = d.reason or None if d.result != Result.PASS else None
        out.append(Res("dkim", str(d.result), reason, [p for p in props if p[1]]))
    if results.dmarc is not None:
        m = results.dmarc
        props = [("header.from", m.from_domain)]
        if m.result in (Result.PASS, Result.FAIL):
            props.insert(0, ("policy.dmarc", str(m.policy)))
        reason = m.reason or None if m.result != Result.PASS else None
        out.append(Res("dmarc", str(m.result), reason, props))
    return out


SPF_WORDS = list(Result)
DMARC_WORDS = [Result.PASS, Result.FAIL, Result.NONE, Result.TEMPERROR, Result.PERMERROR]


@pytest.mark.parametrize("parser", sorted(PARSERS))
@pytest.mark.parametrize("word", SPF_WORDS)
def test_round_trip_spf(word: Result, parser: str) -> None:
    results = AuthResults(
        spf=SpfResult(word, domain="example.com", sender="alice@example.com", reason="why not"),
        helo_spf=SpfResult(word, identity="helo", domain="mail.example.com", reason="helo why"),
    )
    value = ar(results)
    assert authres_parse(value, parser) == (AID, expected(results))
    assert strict_parse(value) == (AID, expected(results))
    if parser == "all_features":
        parsed = authres.all_features().parse_value(value)
        assert type(parsed.results[0]).__name__ == "SPFAuthenticationResult"


@pytest.mark.parametrize("parser", sorted(PARSERS))
@pytest.mark.parametrize("word", SPF_WORDS)
def test_round_trip_dkim(word: Result, parser: str) -> None:
    results = AuthResults(
        dkim=(
            sig(word, identity="@example.com", reason="a reason"),
            sig(word, domain="example.net", selector="s2", algorithm="ed25519-sha256", key_bits=0),
        )
    )
    value = ar(results)
    assert authres_parse(value, parser) == (AID, expected(results))
    assert strict_parse(value) == (AID, expected(results))


@pytest.mark.parametrize("parser", sorted(PARSERS))
@pytest.mark.parametrize("policy", list(Disposition))
@pytest.mark.parametrize("word", DMARC_WORDS)
def test_round_trip_dmarc(word: Result, policy: Disposition, parser: str) -> None:
    results = AuthResults(
        dmarc=DmarcResult(word, from_domain="example.com", policy=policy, reason="r")
    )
    value = ar(results)
    assert authres_parse(value, parser) == (AID, expected(results))
    assert strict_parse(value) == (AID, expected(results))


def test_round_trip_dmarc_is_typed_with_all_features() -> None:
    value = ar(AuthResults(dmarc=DMARC_PASS))
    (res,) = authres.all_features().parse_value(value).results
    assert type(res).__name__ == "DMARCAuthenticationResult"
    assert (res.header_from, res.policy) == ("example.com", "reject")


@pytest.mark.parametrize("parser", sorted(PARSERS))
@pytest.mark.parametrize("word", DMARC_WORDS)
def test_from_warnings_are_comments_that_change_no_result(word: Result, parser: str) -> None:
    plain = AuthResults(
        spf=SPF_PASS, dmarc=DmarcResult(word, from_domain="example.com", reason="r")
    )
    warnings = (
        FromWarning(Deception.DISPLAY_NAME, "example.com", "victim.example"),
        FromWarning(Deception.LOCAL_PART, "example.com"),
    )
    value = ar(dataclasses.replace(plain, from_warnings=warnings))
    assert authres_parse(value, parser) == (AID, expected(plain))
    assert strict_parse(value) == (AID, expected(plain))
    unfolded = value.replace("\n\t", " ")
    for w in warnings:
        assert f"(From {w.kind.text})" in unfolded
    assert "victim.example" not in value


def test_golden_from_warning() -> None:
    warning = FromWarning(Deception.DISPLAY_NAME, "example.com", "victim.example")
    value = ar(AuthResults(spf=SPF_PASS, dmarc=DMARC_PASS, from_warnings=(warning,)))
    assert value == (
        "mx.example.org;\n"
        "\tspf=pass smtp.mailfrom=alice@example.com;\n"
        "\tdmarc=pass (p=reject) policy.dmarc=reject header.from=example.com\n"
        "\t(From display name shows an address in another domain)"
    )


def test_round_trip_auth_and_none() -> None:
    env = Envelope(auth_user="bob")
    (res,) = (
        authres.all_features()
        .parse_value(ar(AuthResults(trusted=Trust.AUTHENTICATED), env, login=True))
        .results
    )
    assert (res.method, res.result, res.smtp_auth) == ("auth", "pass", "bob")
    for trusted in (None, Trust.INTERNAL):
        parsed = authres.AuthenticationResultsHeader.parse_value(ar(AuthResults(trusted=trusted)))
        assert (parsed.authserv_id, parsed.results) == (AID, [])
        assert strict_parse(ar(AuthResults(trusted=trusted))) == (AID, [])


# --------------------------------------------------------------------------- injection

HOSTILE = [
    "example.com; dkim=pass",
    "x) dkim=pass (",
    'x" dkim=pass "',
    'a\\" dkim=pass',
    "evil.example\r\nAuthentication-Results: mx.example.org; dkim=pass",
    "evil\nX-Injected: 1",
    "nul\x00here",
    "ctl\x1b[31m\x7f\x85\u2028\u202e.example",
    "caf\udce9.example",  # an undecodable byte, as surrogateescape delivers it
    "(((",
    ")))",
    "\\",
    "; none",
]


def _check_harmless(value: str, method: str, result: Result) -> list[Res]:
    assert header_value_is_safe(value)
    assert "\r" not in value and "\x00" not in value
    _, parsed = strict_parse(value)
    assert [(r.method, r.result) for r in parsed] == [(method, str(result))]
    _, via_authres = authres_parse(value)
    assert [(r.method, r.result) for r in via_authres] == [(method, str(result))]
    assert all(p in parsed[0].props for p in via_authres[0].props)
    return parsed


@pytest.mark.parametrize("evil", HOSTILE)
def test_hostile_dkim_domain_and_selector(evil: str) -> None:
    value = ar(AuthResults(dkim=(sig(Result.FAIL, domain=evil, selector=evil, header_b=""),)))
    (res,) = _check_harmless(value, "dkim", Result.FAIL)
    assert [name for name, _ in res.props] == ["header.d", "header.s", "header.a"]
    clean = headers.clean_text(evil)
    assert res.props[0][1] == clean
    bare = clean if TOKEN.fullmatch(clean) else '""'
    assert skeleton(value) == (
        f"mx.example.org; dkim=fail header.d={bare} header.s={bare} header.a=rsa-sha256"
    )


@pytest.mark.parametrize("evil", HOSTILE)
def test_hostile_dkim_identity_and_reason(evil: str) -> None:
    value = ar(
        AuthResults(dkim=(sig(Result.PERMERROR, identity=evil + "@x.example", reason=evil),))
    )
    (res,) = _check_harmless(value, "dkim", Result.PERMERROR)
    assert dict(res.props)["header.i"] == headers.clean_text(evil + "@x.example")
    assert res.reason is not None and "(" not in skeleton(value)


@pytest.mark.parametrize("evil", HOSTILE)
def test_hostile_from_domain(evil: str) -> None:
    value = ar(AuthResults(dmarc=DmarcResult(Result.FAIL, from_domain=evil)))
    (res,) = _check_harmless(value, "dmarc", Result.FAIL)
    assert res.props == [("policy.dmarc", "none"), ("header.from", headers.clean_text(evil))]


@pytest.mark.parametrize(
    "local",
    ['a"b', "a(b", "a)b", "a;b", "a\r\nb", "a\x00b", "a\\b", '"john doe"', "dkim=pass;x"],
)
def test_hostile_mail_from_local_part(local: str) -> None:
    sender = local + "@example.com"
    results = AuthResults(spf=SpfResult(Result.FAIL, domain="example.com", sender=sender))
    value = ar(results)
    (res,) = _check_harmless(value, "spf", Result.FAIL)
    assert res.props == [("smtp.mailfrom", headers.clean_text(sender))]
    assert authres_parse(value)[1][0].props == res.props
    clean = headers.clean_text(sender)
    bare = clean if BARE_ADDRESS.fullmatch(clean) and "\\" not in clean else '""'
    assert skeleton(value) == f"mx.example.org; spf=fail smtp.mailfrom={bare}"


@pytest.mark.parametrize("evil", HOSTILE)
def test_hostile_helo_and_auth_user(evil: str) -> None:
    env = Envelope(helo=evil, mail_from="", auth_user=evil)
    results = AuthResults(spf=SpfResult(Result.NONE, identity="helo"), trusted=Trust.AUTHENTICATED)
    value = ar(results, env, login=True)
    assert header_value_is_safe(value)
    _, parsed = strict_parse(value)
    assert [(r.method, r.result) for r in parsed] == [("auth", "pass"), ("spf", "none")]
    assert parsed[0].props == [("smtp.auth", headers.clean_text(evil))]
    assert parsed[1].props == [("smtp.helo", headers.clean_text(evil))]


@pytest.mark.parametrize(
    "address",
    ["jösé@exämple.com", "用户@例子.广告", "alice@bücher.example", "ünï@example.com"],
)
def test_smtputf8_address_stays_in_a_quoted_string(address: str) -> None:
    results = AuthResults(spf=SpfResult(Result.PASS, domain="x", sender=address))
    value = ar(results)
    assert value == f'mx.example.org;\n\tspf=pass smtp.mailfrom="{address}"'
    assert strict_parse(value)[1][0].props == [("smtp.mailfrom", address)]
    assert authres_parse(value)[1][0].props == [("smtp.mailfrom", asciify(address))]
    assert skeleton(value).isascii()


def test_non_ascii_domain_is_quoted_not_a_token() -> None:
    value = ar(AuthResults(dkim=(sig(domain="bücher.example", header_b=""),)))
    assert 'header.d="bücher.example"' in value
    assert strict_parse(value)[1][0].props[0] == ("header.d", "bücher.example")


def test_comment_text_cannot_break_out() -> None:
    assert headers.render_comment("x) dkim=pass (y\\z; w") == "(x dkim=pass yz, w)"
    assert headers.render_comment("\r\n()\\") == ""
    assert headers.render_reason("") == ""
    assert headers.render_reason('a "b" \\ c;d') == 'reason="a \\"b\\" \\\\ c,d"'


def test_clean_text_drops_controls_and_marks_undecodable_bytes() -> None:
    assert headers.clean_text("a\x00b\x1bc\x7fd\x85e\u202ef\u2028g") == "abcdefg"
    assert headers.clean_text(" a\r\n\tb\u00a0c ") == "a b c"
    assert headers.clean_text("caf\udce9") == "caf?"
    assert headers.clean_text("jösé") == "jösé"


def test_overlong_values_are_cut_with_a_marker() -> None:
    long_domain = ".".join(["a" * 63] * 8)  # 511 octets: longer than any domain
    value = ar(AuthResults(dkim=(sig(Result.PERMERROR, domain=long_domain, reason="r" * 500),)))
    (res,) = strict_parse(value)[1]
    d = dict(res.props)["header.d"]
    assert d.endswith("...") and long_domain.startswith(d[:-3])
    assert len(d) == headers.MAX_VALUE
    assert res.reason is not None and res.reason.endswith("...") and len(res.reason) <= 60
    escaped = headers.render_reason('"' * 100)
    assert len(escaped) <= len('reason=""') + headers.MAX_TEXT
    assert escaped.endswith('..."') and '\\"' in escaped


def test_utf8_cut_keeps_whole_characters() -> None:
    text = headers.render_value("é" * 300)
    assert text.startswith('"é') and text.endswith('..."')
    assert len(text[1:-1].encode()) <= headers.MAX_VALUE


# --------------------------------------------------------------------------- folding


def test_five_signatures_with_long_domains_fold_under_78() -> None:
    domains = [f"{'sub' * 4}.long-domain-name-{n}.example-org.com" for n in range(5)]
    sigs = tuple(
        sig(identity=f"user{n}@{d}", domain=d, selector=f"selector-{n}-2026")
        for n, d in enumerate(domains)
    )
    results = AuthResults(
        spf=SpfResult(Result.PASS, domain=domains[0], sender=f"bounce@{domains[0]}"),
        dkim=sigs,
        dmarc=DmarcResult(Result.PASS, from_domain=domains[0], policy=Disposition.REJECT),
    )
    value = ar(results, aid="authserv.very-long-host-name.mx.example.org")
    widths = line_widths("Authentication-Results", value)
    assert max(widths) <= 78 and len(widths) > 10
    assert all(len(line) <= 78 for line in f"Authentication-Results: {value}".split("\n"))
    assert strict_parse(value)[1] == expected(results)
    assert authres_parse(value)[1] == expected(results)
    assert len(authres_parse(value)[1]) == 7


def test_unbreakable_token_stays_whole_on_its_own_line() -> None:
    domain = "x" * 60 + "." + "y" * 60 + ".example"
    value = ar(AuthResults(dkim=(sig(domain=domain),)))
    lines = value.split("\n")
    assert f"\theader.d={domain}" in lines
    widths = line_widths("Authentication-Results", value)
    assert all(w <= 78 for line, w in zip(lines, widths, strict=True) if domain not in line)
    assert max(line_widths("Authentication-Results", value)) > 78


def test_long_authserv_id_and_none() -> None:
    aid = "a" * 60 + ".example"
    value = render_authentication_results(aid, AuthResults(trusted=Trust.INTERNAL), ENV)
    assert header_value_is_safe(value)
    assert value.startswith(aid + ";\n\tnone")
    assert max(line_widths("Authentication-Results", value)[1:]) <= 78


def test_every_fold_is_lf_tab() -> None:
    value = ar(AuthResults(spf=SPF_PASS, dkim=(sig(), sig()), dmarc=DMARC_PASS))
    assert value.count("\n") == value.count("\n\t") >= 4


# --------------------------------------------------------------------------- header_value_is_safe


@pytest.mark.parametrize(
    ("value", "safe"),
    [
        ("mx.example.org; none", True),
        ("a;\n\tb", True),
        ("a;\n b", True),
        ("tab\tinside", True),
        ("jösé", True),
        ("", True),
        ("a\r\n\tb", False),
        ("a\rb", False),
        ("a\nb", False),
        ("a\n", False),
        ("a\n\t", False),
        ("a\n\t \n\tb", False),
        ("a\x00b", False),
        ("a\x1bb", False),
        ("a\x7fb", False),
        ("a\x85b", False),
        ("a\u2028b", False),
        ("caf\udce9", False),
    ],
)
def test_header_value_is_safe(value: str, safe: bool) -> None:
    assert header_value_is_safe(value) is safe


def test_header_value_is_safe_line_limit() -> None:
    assert header_value_is_safe("x" * 998)
    assert not header_value_is_safe("x" * 999)
    assert not header_value_is_safe("x" * 980, "Authentication-Results")
    assert header_value_is_safe("x;\n\t" + "y" * 997)
    assert not header_value_is_safe("x;\n\t" + "y" * 998)


# --------------------------------------------------------------------------- Received-SPF


def _pyspf_header(sender: str, result: str = "fail") -> str:
    q = pyspf.query(i="192.0.2.3", s=sender, h="mx.example.org", receiver="mx.example.org")
    q.r = "mx.example.org"
    q.c, q.d, q.o = "192.0.2.3", "example.com", sender.rpartition("@")[2]
    q.mechanism = "-all"
    return str(q.get_header(result))


def test_received_spf_from_pyspf_is_kept_and_folded() -> None:
    raw = _pyspf_header("alice@example.com")
    value = render_received_spf(SpfResult(Result.FAIL, received_spf=raw))
    assert value is not None and header_value_is_safe(value)
    assert value.replace("\n\t", " ") == raw
    assert max(line_widths("Received-SPF", value)) <= 78
    assert value.startswith("Fail (mx.example.org: domain of example.com")


def test_received_spf_hostile_sender_cannot_escape_the_comment() -> None:
    sender = 'x) identity=helo; a=b (\r\n"q\\@example.com'
    q = pyspf.query(i="192.0.2.3", s=sender, h="mx.example.org")
    q.r, q.mechanism = "mx.example.org", "-all"
    q.o = sender  # pyspf puts the sender into the comment unescaped
    raw = str(q.get_header("fail"))
    value = render_received_spf(SpfResult(Result.FAIL, received_spf=raw))
    assert value is not None and header_value_is_safe(value)
    flat = value.replace("\n\t", " ")
    word, rest = flat.split(" ", 1)
    assert word == "Fail"
    comment, tail = rest[1:].split(") ", 1)
    assert "(" not in comment and ")" not in comment and "\\" not in comment
    pairs = re.findall(r'([\w.-]+)=("(?:[^"\\]|\\.)*"|[^;\s"]+)(?:; |$)', tail)
    assert "; ".join(f"{k}={v}" for k, v in pairs) == tail
    keys = [k for k, _ in pairs]
    assert keys == ["client-ip", "envelope-from", "helo", "receiver", "mechanism", "identity"]
    assert tail.endswith("identity=mailfrom")


def test_received_spf_overlong_pair_is_left_out() -> None:
    raw = 'Pass (ok) client-ip=192.0.2.1; envelope-from="' + "a" * 600 + '@x.example"; helo=h'
    value = render_received_spf(SpfResult(Result.PASS, received_spf=raw))
    assert value == "Pass (ok) client-ip=192.0.2.1; helo=h"


def test_received_spf_empty_or_garbage() -> None:
    assert render_received_spf(SpfResult(Result.PASS)) is None
    assert render_received_spf(SpfResult(Result.PASS, received_spf="\r\n ")) is None
    assert render_received_spf(SpfResult(Result.PASS, received_spf="dkim=pass; x")) is None
    assert render_received_spf(SpfResult(Result.PASS, received_spf="pass (a) b c d")) == "Pass"


# --------------------------------------------------------------------------- find_forged


def ar_field(value: str, name: str = "Authentication-Results") -> HeaderField:
    return HeaderField(name, value.encode("utf-8", "surrogateescape"))


def test_find_forged_mixed_cases() -> None:
    fields = [
        HeaderField("Received", b" from x by mx.example.org"),
        ar_field(" mx.example.org; dkim=pass header.d=paypal.com"),  # 1: ours
        ar_field(" other.example; spf=pass smtp.mailfrom=a@b.example"),  # 2: kept
        ar_field(" MX.Example.ORG; spf=pass", "authentication-results"),  # 3: ours
        ar_field(" (forged) \r\n\t(nested (comment)) mx.example.org;dkim=pass"),  # 4
        ar_field(" mx.example.org 1; dkim=pass"),  # 5: version
        ar_field(" mx.example.org;;;; ((( garbage \x00"),  # 6: unparseable
        ar_field(" mx.example.org.evil; dkim=pass"),  # 7: kept
        ar_field(" xmx.example.org; dkim=pass"),  # 8: kept
        HeaderField("ARC-Authentication-Results", b" i=1; mx.example.org; dkim=pass"),
        ar_field(' "mx.example.org"; dkim=pass'),  # 9: quoted id
        ar_field(" mx.example.org(c); dkim=pass"),  # 10
        ar_field(""),  # 11: empty
        ar_field(" (unterminated mx.example.org; dkim=pass"),  # 12: all comment
        ar_field(" mx.example.org"),  # 13: id only
        HeaderField("Authentication-Results", b" mx.example.org;\xff\xfe dkim=pass"),  # 14
        ar_field(" mx.example.org.; dkim=pass"),  # 15: trailing dot
        ar_field(" example.org; dkim=pass"),  # 16: kept
    ]
    assert find_forged(fields, "mx.example.org") == (1, 3, 4, 5, 6, 9, 10, 13, 14, 15)
    assert find_forged(fields, "MX.EXAMPLE.ORG") == (1, 3, 4, 5, 6, 9, 10, 13, 14, 15)
    assert find_forged(fields, "other.example") == (2,)
    assert find_forged(fields, "nobody.example") == ()


def test_find_forged_finds_what_authres_cannot_parse() -> None:
    value = " mx.example.org;;;; ((( garbage"
    with pytest.raises(authres.core.SyntaxError):
        authres.AuthenticationResultsHeader.parse_value(value)
    assert find_forged([ar_field(value)], AID) == (1,)


def test_find_forged_on_our_own_output() -> None:
    ours = ar(AuthResults(spf=SPF_PASS, dkim=(sig(),)))
    fields = [ar_field(" " + ours.replace("\n", "\r\n")), ar_field(" x.example; none")]
    assert find_forged(fields, AID) == (1,)


# --------------------------------------------------------------------------- iprev


IPREV_PASS = IprevResult(Result.PASS, "192.0.2.25", name="mail.example.net", names=1)


def test_golden_iprev_pass_first_with_the_name_in_a_comment() -> None:
    value = ar(AuthResults(iprev=IPREV_PASS, spf=SPF_PASS))
    assert value == (
        "mx.example.org;\n"
        "\tiprev=pass policy.iprev=192.0.2.25 (mail.example.net);\n"
        "\tspf=pass smtp.mailfrom=alice@example.com"
    )
    expected = [
        Res("iprev", "pass", None, [("policy.iprev", "192.0.2.25")]),
        Res("spf", "pass", None, [("smtp.mailfrom", "alice@example.com")]),
    ]
    assert strict_parse(value) == (AID, expected)
    assert authres_parse(value) == (AID, expected)
    assert authres_parse(value, "simple") == (AID, expected)


@pytest.mark.parametrize(
    ("result", "reason"),
    [
        (Result.FAIL, "the PTR name does not resolve back"),
        (Result.PERMERROR, "no PTR record"),
        (Result.TEMPERROR, "PTR lookup failed"),
    ],
)
def test_iprev_other_results_have_a_reason_and_no_name(result: Result, reason: str) -> None:
    value = ar(AuthResults(iprev=IprevResult(result, "203.0.113.9", reason=reason)))
    assert value.replace("\n\t", " ") == (
        f'mx.example.org; iprev={result} reason="{reason}" policy.iprev=203.0.113.9'
    )
    expected = [Res("iprev", result.value, reason, [("policy.iprev", "203.0.113.9")])]
    assert strict_parse(value) == (AID, expected)
    assert authres_parse(value) == (AID, expected)


def test_iprev_ipv6_address_is_a_quoted_string() -> None:
    """``:`` is a tspecial: an IPv6 address is no RFC 2045 token, so it is quoted."""
    iprev = IprevResult(Result.PASS, "2001:db8::25", name="mail.example.net")
    value = ar(AuthResults(iprev=iprev, dmarc=DMARC_PASS))
    assert 'policy.iprev="2001:db8::25" (mail.example.net);' in value
    for parse in (strict_parse, authres_parse):
        _, found = parse(value)
        assert found[0] == Res("iprev", "pass", None, [("policy.iprev", "2001:db8::25")])
        assert [r.method for r in found] == ["iprev", "dmarc"]


@pytest.mark.parametrize(
    "name",
    ["a.example) ; dkim=pass (x", "a.example\r\n\tspf=pass", 'x" policy.iprev="1.2.3.4', "a\\)b"],
)
def test_iprev_name_can_never_add_a_result(name: str) -> None:
    """checks/iprev.py keeps host names only; the renderer is safe even without that."""
    value = ar(AuthResults(iprev=IprevResult(Result.PASS, "192.0.2.25", name=name)))
    expected = (AID, [Res("iprev", "pass", None, [("policy.iprev", "192.0.2.25")])])
    assert strict_parse(value) == expected
    assert authres_parse(value) == expected


def test_iprev_is_never_rendered_for_trusted_mail() -> None:
    """Trusted results carry no iprev (the engine does not check them): auth=pass alone."""
    value = ar(AuthResults(trusted=Trust.AUTHENTICATED))
    assert "iprev" not in value
