"""RFC5322.From parsing for DMARC: statuses, domains, and the known parser-bypass corpus."""

from __future__ import annotations

from email import policy
from email.headerregistry import Address, HeaderRegistry

import pytest

from authmilter.checks.fromfield import parse_from, parse_mailboxes
from authmilter.idn import normalise_domain
from authmilter.model import HeaderField, Transaction, parse_message
from authmilter.results import FromStatus

OK = FromStatus.OK
UNPARSEABLE = FromStatus.UNPARSEABLE


def tx(*fields: tuple[str, bytes | str]) -> Transaction:
    headers = tuple(
        HeaderField(name, value.encode() if isinstance(value, str) else value)
        for name, value in fields
    )
    return Transaction(headers=(HeaderField("Subject", b" hi"), *headers))


def one(value: bytes | str) -> tuple[FromStatus, tuple[str, ...]]:
    result = parse_from(tx(("From", value)))
    return result.status, result.domains


# --------------------------------------------------------------------------- well-formed


@pytest.mark.parametrize(
    ("value", "domain"),
    [
        (" user@example.com", "example.com"),
        (" User@EXAMPLE.Com", "example.com"),
        (" <user@example.com>", "example.com"),
        (" John Doe <john@example.com>", "example.com"),
        (' "Doe, John" <john@example.com>', "example.com"),
        (" John Q. Public <jqp@example.com>", "example.com"),  # obs-phrase with "."
        (" user@example.com (John Doe)", "example.com"),
        (" (comment) user@example.com", "example.com"),
        (" user (a) @ (b) example.com", "example.com"),  # CFWS around "@" is RFC 5322
        (" first.last@sub.example.com", "sub.example.com"),
        (' "quoted local"@example.com', "example.com"),
        (' "with \\" quote"@example.com', "example.com"),
        (" John\r\n Doe\r\n\t<john@example.com>", "example.com"),  # folded
        (" =?utf-8?b?Sm9obg==?= <john@example.com>", "example.com"),
        (" grp: one@example.com;", "example.com"),  # RFC 6854 group, one mailbox
        (" user@a-b.example", "a-b.example"),
        (" user@localhost", "localhost"),
        (" user@xn--bcher-kva.example", "xn--bcher-kva.example"),
        (" user@bücher.example", "xn--bcher-kva.example"),  # RFC 6532 U-label
        (" user@BÜCHER.example", "xn--bcher-kva.example"),
        (" Jörg <jörg@bücher.example>", "xn--bcher-kva.example"),
        (" user@пример.рф", "xn--e1afmkfd.xn--p1ai"),
    ],
)
def test_single_mailbox(value: str, domain: str) -> None:
    assert one(value) == (OK, (domain,))


def test_idn_forms_compare_equal() -> None:
    assert one(" a@bücher.example") == one(" b@XN--BCHER-KVA.example")


@pytest.mark.parametrize(
    "value",
    [
        " user@example.com",
        " John Doe <john@example.com>",
        ' "Doe, John" <john@example.com>',
        " user@example.com (comment)",
        ' "Someone <x@junk.com>"@mydomain.com',
    ],
)
def test_agrees_with_email_headerregistry(value: str) -> None:
    header = HeaderRegistry()("From", value.strip())
    expected = tuple(a.domain.lower() for a in header.addresses if isinstance(a, Address))
    assert one(value) == (OK, expected)


def test_mailbox_parts() -> None:
    (box,) = parse_mailboxes(b' "Doe, John" <john.doe@Example.com>')
    assert (box.local_part, box.domain, box.display_name) == (
        "john.doe",
        "example.com",
        "Doe, John",
    )


@pytest.mark.parametrize(
    ("value", "name"),
    [
        (b" John Q. Public <jqp@example.com>", "John Q. Public"),
        (b' "ceo@victim"".example" <a@evil.example>', "ceo@victim.example"),
        (b' John  (x)  "Doe" <j@example.com>', "John Doe"),
        (b" =?utf-8?q?a?= =?utf-8?q?b?= <j@example.com>", "=?utf-8?q?a?= =?utf-8?q?b?="),
    ],
)
def test_display_name_as_shown(value: bytes, name: str) -> None:
    """One space where there was white space or a comment, none where there was none."""
    assert parse_mailboxes(value)[0].display_name == name


def test_group_name_is_kept() -> None:
    boxes = parse_mailboxes(b' "G@x.example": A <a@example.com>, b@example.com;')
    assert [(b.display_name, b.group) for b in boxes] == [("A", "G@x.example"), ("", "G@x.example")]


def test_comments_are_collected() -> None:
    comments: list[str] = []
    parse_mailboxes(b" (a) x@example.com (b (nested) \\) c)", comments)
    assert comments == ["a", "b (nested) \\) c"]


# --------------------------------------------------------------------------- statuses


def test_missing() -> None:
    result = parse_from(tx(("To", " a@b.example")))
    assert result.status is FromStatus.MISSING
    assert result.domains == ()
    assert result.domain == ""


def test_resent_from_is_not_from() -> None:
    assert parse_from(tx(("Resent-From", " a@b.example"))).status is FromStatus.MISSING


@pytest.mark.parametrize("second_name", ["From", "FROM", "from", "From ", "from\t", " From"])
def test_multiple_fields(second_name: str) -> None:
    result = parse_from(tx(("From", " a@victim.example"), (second_name, " b@attacker.example")))
    assert result.status is FromStatus.MULTIPLE_FIELDS
    assert result.domains == ("victim.example", "attacker.example")
    assert result.domain == ""
    assert "2 From fields" in result.reason


def test_multiple_fields_same_domain_counts_once() -> None:
    result = parse_from(tx(("From", " a@x.example"), ("From", " b@X.example")))
    assert result.status is FromStatus.MULTIPLE_FIELDS
    assert result.domains == ("x.example",)


def test_multiple_fields_from_parse_message() -> None:
    raw = b"From: a@victim.example\r\nSubject: x\r\nfrom: b@attacker.example\r\n\r\nbody\r\n"
    result = parse_from(parse_message(raw))
    assert result.status is FromStatus.MULTIPLE_FIELDS
    assert set(result.domains) == {"victim.example", "attacker.example"}


def test_multiple_fields_with_one_unparseable_is_unparseable() -> None:
    result = parse_from(tx(("From", " a@good.example"), ("From", " <junk")))
    assert result.status is UNPARSEABLE
    assert result.domains == ("good.example",)
    assert "2 From fields" in result.reason


@pytest.mark.parametrize(
    ("value", "domains"),
    [
        (" a@victim.example, b@attacker.example", ("victim.example", "attacker.example")),
        (" <a@victim.example>, <b@attacker.example>", ("victim.example", "attacker.example")),
        (' "a, b" <a@victim.example>, b@attacker.example', ("victim.example", "attacker.example")),
        (" g: a@victim.example, b@attacker.example;", ("victim.example", "attacker.example")),
        (" a@x.example, g: b@y.example;", ("x.example", "y.example")),
    ],
)
def test_multiple_addresses(value: str, domains: tuple[str, ...]) -> None:
    result = parse_from(tx(("From", value)))
    assert result.status is FromStatus.MULTIPLE_ADDRESSES
    assert result.domains == domains


@pytest.mark.parametrize(
    "value",
    [
        " a@x.example, b@x.example",
        ' <a@X.example>, "B" <b@x.example>',
        " g: a@x.example, b@x.example;",
        " a@x.example, b@xn--bcher-kva.example, c@x.example",
    ],
)
def test_several_mailboxes_of_one_domain_have_one_author_domain(value: str) -> None:
    """RFC 9989 evaluates a message with one Author Domain: several mailboxes in one domain
    are evaluated like one (several domains stay MULTIPLE_ADDRESSES)."""
    result = parse_from(tx(("From", value)))
    if "bcher" in value:
        assert result.status is FromStatus.MULTIPLE_ADDRESSES
    else:
        assert (result.status, result.domain) == (FromStatus.OK, "x.example")


# --------------------------------------------------------------------------- bypass corpus


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        # espoofer / "Composition Kills": quoted strings, comments and display names
        (' "Someone <x@junk.com>"@mydomain.com', (OK, ("mydomain.com",))),
        (' "admin@victim.example" <x@attacker.example>', (OK, ("attacker.example",))),
        (' "a, b@victim.example" <x@attacker.example>', (OK, ("attacker.example",))),
        (" a@attacker.example (b@victim.example)", (OK, ("attacker.example",))),
        (" (a@victim.example) b@attacker.example", (OK, ("attacker.example",))),
        (" a@attacker.example(<b@victim.example>)", (OK, ("attacker.example",))),
        (" x <a@attacker.example>(b@victim.example)", (OK, ("attacker.example",))),
        (" ((nested) a@victim.example) b@attacker.example", (OK, ("attacker.example",))),
        # encoded words are display names only, never decoded into a mailbox
        (
            " =?utf-8?b?YWRtaW5AdmljdGltLmV4YW1wbGU=?= <x@attacker.example>",
            (OK, ("attacker.example",)),
        ),
        (" =?utf-8?q?a=40victim.example?=@attacker.example", (OK, ("attacker.example",))),
        (" a@=?utf-8?b?dmljdGlt?=.example", (UNPARSEABLE, ())),
        (" =?utf-8?b?PGFAdmljdGltLmV4YW1wbGU+?=", (UNPARSEABLE, ())),
        # unquoted "@" or "<" in a display name
        (" a@victim.example <x@attacker.example>", (UNPARSEABLE, ())),
        # ... but the common "addr <same addr>" form is accepted when the domains agree
        (" a@example.com <a@example.com>", (OK, ("example.com",))),
        (" A@Example.COM <b@example.com>", (OK, ("example.com",))),
        (" a@sub.example.com <a@example.com>", (UNPARSEABLE, ())),
        (" a@victim.example<x@attacker.example>", (UNPARSEABLE, ())),
        (" <a@victim.example> <x@attacker.example>", (UNPARSEABLE, ())),
        (" <a@victim.example>x@attacker.example", (UNPARSEABLE, ())),
        (" Name <a@victim.example", (UNPARSEABLE, ())),
        (" Name a@victim.example>", (UNPARSEABLE, ())),
        (" <<a@victim.example>>", (UNPARSEABLE, ())),
        # route addresses (obsolete)
        (" <@attacker.example:user@victim.example>", (UNPARSEABLE, ())),
        (" <@a.example,@b.example:user@victim.example>", (UNPARSEABLE, ())),
        # quoted-pair outside a quoted string, unterminated quotes and comments
        (" a\\@victim.example@attacker.example", (UNPARSEABLE, ())),
        (' "a@victim.example\\" <x@attacker.example>', (UNPARSEABLE, ())),
        (" a@victim.example (unterminated", (UNPARSEABLE, ())),
        (" a@victim.example )", (UNPARSEABLE, ())),
        # NUL and control characters, bare CR / LF, a break that is not a fold
        (b" a@victim.example\x00<x@attacker.example>", (UNPARSEABLE, ())),
        (b" a@victim.ex\x00ample", (UNPARSEABLE, ())),
        (b" a@victim.example\x1b", (UNPARSEABLE, ())),
        (b" a@victim.example\x7f", (UNPARSEABLE, ())),
        (" a@victim.example\x85", (UNPARSEABLE, ())),
        (b" a@victim.example\rx@attacker.example", (UNPARSEABLE, ())),
        (b" a@victim.example\nx@attacker.example", (UNPARSEABLE, ())),
        (b" a@victim.example\r\nFrom: x@attacker.example", (UNPARSEABLE, ())),
        (b" a@victim.example\r\n\tx@attacker.example", (UNPARSEABLE, ())),
        (b" \xff@victim.example", (UNPARSEABLE, ())),  # not UTF-8
        # trailing dot, empty labels, obsolete spaces inside a domain
        (" a@victim.example.", (UNPARSEABLE, ())),
        (" a@victim..example", (UNPARSEABLE, ())),
        (" a@.victim.example", (UNPARSEABLE, ())),
        (" a@victim . example", (UNPARSEABLE, ())),
        (" a@victim.(c)example", (UNPARSEABLE, ())),
        # domain literals and non-hostnames
        (" a@[1.2.3.4]", (UNPARSEABLE, ())),
        (" a@[IPv6:::1]", (UNPARSEABLE, ())),
        (" a@1.2.3.4", (UNPARSEABLE, ())),
        (" a@vic_tim.example", (UNPARSEABLE, ())),
        (" a@-victim.example", (UNPARSEABLE, ())),
        (" a@victim-.example", (UNPARSEABLE, ())),
        (" a@" + "x" * 64 + ".example", (UNPARSEABLE, ())),
        (" a@" + ".".join(["abcdefghi"] * 26), (UNPARSEABLE, ())),  # > 253 characters
        (" a@", (UNPARSEABLE, ())),
        (" a", (UNPARSEABLE, ())),
        # empty local part
        (" @victim.example", (UNPARSEABLE, ())),
        (' ""@victim.example', (UNPARSEABLE, ())),
        (" <@victim.example>", (UNPARSEABLE, ())),
        # invalid IDNs: mapped characters, alternative dots, bad punycode
        (" a@faß.example", (UNPARSEABLE, ())),
        (" a@victim\u3002example", (UNPARSEABLE, ())),
        (" a@victim\uff0eexample", (UNPARSEABLE, ())),
        (" a@vic\u00adtim.example", (UNPARSEABLE, ())),  # soft hyphen is mapped away
        (" a@vic\u200dtim.example", (UNPARSEABLE, ())),  # zero width joiner
        (" a@victim\u202e.example", (UNPARSEABLE, ())),  # bidi override
        (" a@ｖｉｃｔｉｍ.example", (UNPARSEABLE, ())),  # full-width maps to ASCII
        (" a@vic\u00a0tim.example", (UNPARSEABLE, ())),
        (" a@xn--zz-.example", (UNPARSEABLE, ())),
        (" a@xn--a.example", (UNPARSEABLE, ())),
        # empty fields, empty list elements, empty groups
        ("", (UNPARSEABLE, ())),
        ("   ", (UNPARSEABLE, ())),
        (" a@victim.example,", (UNPARSEABLE, ())),
        (" ,a@victim.example", (UNPARSEABLE, ())),
        (" a@x.example,,b@y.example", (UNPARSEABLE, ())),
        (" undisclosed-recipients:;", (UNPARSEABLE, ())),
        (" g: h: a@victim.example;;", (UNPARSEABLE, ())),
        (" g: a@victim.example", (UNPARSEABLE, ())),  # group without ";"
        # one good mailbox next to a bad one is not a pass for the good one
        (" a@victim.example, x@[1.2.3.4]", (UNPARSEABLE, ())),
    ],
)
def test_bypass_corpus(value: bytes | str, expected: tuple[FromStatus, tuple[str, ...]]) -> None:
    status, domains = one(value)
    assert status is expected[0]
    if expected[0] is OK:
        assert domains == expected[1]


def test_unparseable_has_reason() -> None:
    result = parse_from(tx(("From", " <@a.example:u@b.example>")))
    assert result.status is UNPARSEABLE
    assert "route" in result.reason


def test_headerregistry_defects_are_unparseable_too() -> None:
    value = "a@victim.example.,"
    header = policy.default.header_factory("From", value)
    assert header.defects  # the stdlib also sees a problem here
    assert one(" " + value)[0] is UNPARSEABLE


# --------------------------------------------------------------------------- domains


@pytest.mark.parametrize(
    ("domain", "expected"),
    [
        ("Example.COM", "example.com"),
        ("bücher.example", "xn--bcher-kva.example"),
        ("xn--bcher-kva.example", "xn--bcher-kva.example"),
        ("a.b.c", "a.b.c"),
        ("example.com.", None),
        ("", None),
        ("ex ample.com", None),
        ("example.123", None),
        ("faß.de", None),
        ("xn--mnchen-3ya.de", "xn--mnchen-3ya.de"),
        ("xn--bcher-kvb.example", None),  # punycode that does not round-trip
    ],
)
def test_normalise_domain(domain: str, expected: str | None) -> None:
    assert normalise_domain(domain) == expected
