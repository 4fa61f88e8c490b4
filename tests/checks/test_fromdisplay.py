"""Deceptive From mailboxes: what a reader is shown besides the address DMARC evaluates."""

from __future__ import annotations

import base64

import pytest

from authmilter.checks.fromdisplay import check_from_display, same_organization, visible
from authmilter.model import HeaderField, Transaction
from authmilter.psl import PublicSuffixList
from authmilter.results import Deception, FromWarning

DISPLAY = Deception.DISPLAY_NAME
LOCAL = Deception.LOCAL_PART
PSL = PublicSuffixList.parse("com\nexample\nco.uk\ngithub.io\n")


def b64(text: str) -> str:
    return "=?utf-8?b?" + base64.b64encode(text.encode()).decode() + "?="


def found(*values: str, psl: PublicSuffixList | None = None) -> list[tuple[str, str, str]]:
    tx = Transaction(headers=tuple(HeaderField("From", f" {v}".encode()) for v in values))
    return [(w.kind.value, w.domain, w.shown) for w in check_from_display(tx, psl)]


def shows(value: str, psl: PublicSuffixList | None = None) -> str:
    """The other domain the display name shows, "" when none."""
    return next((s for k, _, s in found(value, psl=psl) if k == "display-name"), "")


# --------------------------------------------------------------------------- the review's cases


def test_quoted_display_name_with_another_domain() -> None:
    assert found('"ceo@victim.example" <a@evil.example>') == [
        ("display-name", "evil.example", "victim.example")
    ]


def test_encoded_display_name_hiding_another_domain() -> None:
    value = "=?utf-8?b?Y2VvQHZpY3RpbS5leGFtcGxl?= <a@evil.example>"
    assert found(value) == [("display-name", "evil.example", "victim.example")]


def test_mailsploit_encoded_local_part() -> None:
    # Python's email shows it as "ceo@victim.example\x00"@evil.example
    value = b64("ceo@victim.example\0") + "@evil.example"
    assert found(value) == [("local-part", "evil.example", "")]


# --------------------------------------------------------------------------- more shapes


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        ("=?utf-8?q?ceo=40victim.example?= <a@evil.example>", "victim.example"),
        ("=?UTF-8?Q?CEO=40Victim.Example?= <a@evil.example>", "victim.example"),
        # adjacent encoded words are joined without the space between them (RFC 2047 6.2)
        ("=?utf-8?q?ceo=40vic?= =?utf-8?q?tim.example?= <a@evil.example>", "victim.example"),
        # encoded words inside quotes: not RFC 2047, but decoded by lenient clients
        ('"=?utf-8?q?ceo=40victim.example?=" <a@evil.example>', "victim.example"),
        ("=?x-unknown?b?Y2VvQHZpY3RpbS5leGFtcGxl?= <a@evil.example>", "victim.example"),
        ("=?utf-7?q?ceo+AEA-victim.example?= <a@evil.example>", "victim.example"),
        ("=?utf-8*en?b?Y2VvQHZpY3RpbS5leGFtcGxl?= <a@evil.example>", "victim.example"),
        ("=?utf-8?b?Y2VvQHZpY3RpbS5leGFtcGxl?= <a@evil.example>", "victim.example"),
        ('"CEO <ceo@victim.example>" <a@evil.example>', "victim.example"),
        ('"ceo@victim.example via Billing" <a@evil.example>', "victim.example"),
        ('"ceo@victim"".example" <a@evil.example>', "victim.example"),  # no space: one word
        ('"ceo\uff20victim\u3002example" <a@evil.example>', "victim.example"),  # fullwidth
        ('"ceo@vic\u200btim.example" <a@evil.example>', "victim.example"),  # zero-width
        ('"ceo@b\u00fccher.example" <a@evil.example>', "xn--bcher-kva.example"),
        ('"ceo@pаypal.example" <a@paypal.example>', "xn--pypal-4ve.example"),  # homograph
        ('"ceo@fa\u00df.example" <a@fass.example>', "fa\u00df.example"),  # no IDNA 2003 mapping
        ("<a@evil.example> (ceo@victim.example)", "victim.example"),  # comment as name
        ('"ceo@victim.example": a@evil.example;', "victim.example"),  # group name
        ("Support (ceo@victim.example) <a@evil.example>", "victim.example"),
        ('"a@evil.example, ceo@victim.example" <a@evil.example>', "victim.example"),
        ('"x@pay.example.com" <y@mail.example.com>', "pay.example.com"),  # siblings, no PSL
        ('"x@github.io" <y@evil.github.io>', ""),  # parent: one organization without a PSL
    ],
)
def test_display_name_shows_another_domain(value: str, shown: str) -> None:
    assert shows(value) == shown


@pytest.mark.parametrize(
    "value",
    [
        '"Alice (alice@example.com)" <alice@example.com>',
        "Alice (alice@example.com) <alice@example.com>",
        "alice@example.com (Alice Smith)",
        '"Bob via List" <list@lists.example>',
        '"bob@gmail.com" <bob@gmail.com>',
        "bob@gmail.com <bob@gmail.com>",  # the parser's MUA form: same domain only
        '"BOB@GMAIL.COM" <bob@gmail.com>',
        '"@alice" <alice@example.com>',
        '"Bob @ Home" <bob@example.com>',
        '"alice@home" <alice@example.com>',  # no dot: no domain
        '"Release v@1.0" <news@example.com>',
        '"x@192.0.2.1" <news@example.com>',
        '"news@example.com" <bounce@mail.example.com>',  # parent
        '"news@mail.example.com" <bounce@example.com>',  # subdomain
        '"j\u00f6rg@b\u00fccher.example" <j@xn--bcher-kva.example>',  # U-label of the From
        "=?utf-8?q?J=C3=B6rg_=28joerg=40example=2Ecom=29?= <joerg@example.com>",
        "John Q. Public <jqp@example.com>",
        "<a@example.com>",
        "a@example.com",
        "undisclosed-recipients:;",
        "Team: alice@example.com, bob@example.com;",
    ],
)
def test_ordinary_mail_is_not_flagged(value: str) -> None:
    assert found(value) == []


def test_what_is_reported_is_bounded() -> None:
    assert found('"x@' + "a." * 200 + 'example" <a@evil.example>') == []  # over 253: no domain
    name = "a" * 240 + ".example"  # no valid domain, but short: reported as written
    assert shows(f'"x@{name}" <a@evil.example>') == name


def test_list_rewriting_with_the_address_in_the_name_is_flagged() -> None:
    # honest, but the name shows another domain: why the default is "flag", not "reject"
    value = "\"'bob@gmail.com' via Group\" <group@googlegroups.com>"
    assert found(value) == [("display-name", "googlegroups.com", "gmail.com")]


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        ("=?utf-8?q?ceo=40victim.example=00?=@evil.example", ""),
        ('"=?utf-8?b?Y2Vv?="@evil.example', ""),
        ("=?bogus?x?anything?=@evil.example", ""),  # any encoded-word form
        ('"ceo@victim.example"@evil.example', "victim.example"),
    ],
)
def test_local_part(value: str, shown: str) -> None:
    assert found(value) == [("local-part", "evil.example", shown)]


def test_ordinary_local_parts_are_not_flagged() -> None:
    assert found('"john smith"@example.com', "SRS0=HHH=TT=example.org=a@example.com") == []
    assert found('"a@mail.example.com"@example.com') == []


def test_one_warning_of_each_kind() -> None:
    warnings = found(
        '"a@one.example" <x@evil.example>, "b@two.example" <=?a?b?c?=@evil.example>',
        "Name <x@evil.example>",
    )
    assert warnings == [
        ("display-name", "evil.example", "one.example"),
        ("local-part", "evil.example", ""),
    ]


def test_each_mailbox_against_its_own_domain() -> None:
    assert found('"a@b.example" <a@a.example>, "b@a.example" <b@b.example>') == [
        ("display-name", "a.example", "b.example")
    ]


def test_unparseable_and_missing_from_are_left_to_the_from_rules() -> None:
    assert found("ceo@victim.example <a@evil.example>") == []  # unparseable
    assert check_from_display(Transaction(headers=(HeaderField("To", b" a@b.example"),))) == ()


def test_every_from_field_is_read() -> None:
    assert found("<a@evil.example>", '"ceo@victim.example" <a@evil.example>') == [
        ("display-name", "evil.example", "victim.example")
    ]


# --------------------------------------------------------------------------- organizations


@pytest.mark.parametrize(
    ("a", "b", "without_psl", "with_psl"),
    [
        ("example.com", "example.com", True, True),
        ("mail.example.com", "example.com", True, True),
        ("example.com", "mail.example.com", True, True),
        ("pay.example.com", "mail.example.com", False, True),
        ("victim.example", "evil.example", False, False),
        ("github.io", "evil.github.io", True, False),  # a private public suffix
        ("victim.github.io", "evil.github.io", False, False),
        ("a.example.co.uk", "b.example.co.uk", False, True),
        ("victim.co.uk", "evil.co.uk", False, False),
        ("notexample.com", "example.com", False, False),
    ],
)
def test_same_organization(a: str, b: str, without_psl: bool, with_psl: bool) -> None:
    assert same_organization(a, b, None) is without_psl
    assert same_organization(a, b, PSL) is with_psl


def test_psl_compares_registrable_domains() -> None:
    assert shows('"x@pay.example.com" <y@mail.example.com>', PSL) == ""
    assert shows('"support@github.io" <x@evil.github.io>', PSL) == "github.io"


# --------------------------------------------------------------------------- what is shown


@pytest.mark.parametrize(
    ("text", "seen"),
    [
        ("plain", "plain"),
        ("=?utf-8?q?a_b?=", "a b"),
        ("=?utf-8?b?YWI=?= =?utf-8?b?Y2Q=?=", "abcd"),
        ("=?utf-8?b?YWI=?= x =?utf-8?b?Y2Q=?=", "ab x cd"),
        ("=?utf-8?b?YWJj?=", "abc"),
        ("=?utf-8?b?YWJjZ?=", "abc"),  # a dangling character is dropped
        ("=?utf-8?b?Y!W!J!j?=", "abc"),  # characters outside base64 are skipped
        ("=?utf-8?b?/w==?=", "\ufffd"),  # not UTF-8: replacement character
        ("a\u00a0b", "a b"),
        ("a\u202eb\u200dc", "abc"),  # bidi override and zero-width joiner removed
        ("a=?utf-8?q?=00?=b", "a b"),  # control characters read as spaces
        ("ｃｅｏ＠ｖｉｃｔｉｍ．ｅｘａｍｐｌｅ", "ceo@victim.example"),
    ],
)
def test_visible(text: str, seen: str) -> None:
    assert visible(text) == seen


def test_warning_type() -> None:
    w = FromWarning(DISPLAY, "evil.example", "victim.example")
    assert w.kind.text == "display name shows an address in another domain"
    assert LOCAL.text == "local part hides an encoded word or another address"
