"""Known spoofing attacks through the whole pipeline: the victim never passes as itself.

The cases re-express (as data, not copied code) the server-side and client-side cases of
espoofer (``chenjj/espoofer`` ``testcases.py``; Chen et al., "Composition Kills", USENIX
Security 2020) and the OpenDMARC From-parsing CVEs and bypass reports (CVE-2019-16378
several addresses in From, CVE-2019-20790 HELO vs MAIL FROM, CVE-2020-12272 A-R injection
with ``(``, OpenDMARC #44 escaped quotes, #72 quoted comma, #174 unbalanced ``>``,
#175/#179 crashes on multi-valued From), plus IDN homographs.

The zone: the victims ``legitimate.example``, ``paypal.example`` and ``bücher.example``
publish ``p=reject`` (and keys of their own the attacker does not have); the attacker owns
``attack.example`` (valid SPF for its address, a DKIM key, ``p=none``) and publishes keys
wherever a confused verifier might look (``sel._domainkey.legitimate.example'a.attack.example``
is a name in the attacker's zone). Each case builds the message and the envelope, runs
:meth:`Engine.evaluate`, and asserts: no ``dmarc=pass`` for a victim domain, no
``spf=pass`` / ``dkim=pass`` that names a victim, the expected outcome: ``reject`` (5xx,
never delivered) or ``accept`` *as the attacker's domain* (``header.from`` is not a victim),
and the From warnings expected (``from.display_name_check``, "flag" by default: a message
accepted as the attacker's domain while its display name or local part shows the victim
carries the warning header and the A-R comment).
"""

from __future__ import annotations

import base64
import ipaddress
import re
from dataclasses import dataclass, field
from functools import cache

import dkim
import pytest

from authmilter import header_edits
from authmilter.decision import Action, Decision
from authmilter.engine import Engine
from authmilter.model import Envelope, HeaderField, Transaction, parse_message
from authmilter.results import AuthResults, Result
from authmilter.staticresolver import StaticResolver
from tests.pipeline.test_hostile_input import check_invariants, parse_ar
from tests.support.decisions import our_ar
from tests.support.engines import make_engine
from tests.support.keys import new_ed25519_key

AUTHSERV = "mx.victim-mx.test"
VICTIM = "legitimate.example"
PAYPAL = "paypal.example"
HOMOGRAPH = "pаypal.example"  # Cyrillic a (U+0430): the attacker registered it
HOMOGRAPH_A = HOMOGRAPH.encode("idna").decode()  # xn--pypal-4ve.example
BUCHER = "bücher.example"
BUCHER_A = BUCHER.encode("idna").decode()  # xn--bcher-kva.example
VICTIMS = (VICTIM, PAYPAL, BUCHER_A)
FLAG_HEADER = "X-Authmilter-From-Warning"
ATTACKER = "attack.example"
ATTACKER_IP = "198.51.100.66"
VICTIM_IP = "192.0.2.25"


@cache
def key(owner: str) -> tuple[bytes, str]:
    """(base64 seed for dkimpy, TXT record) of an Ed25519 key owned by ``owner``."""
    k = new_ed25519_key((owner.encode() * 32)[:32])
    return k.private, k.txt


# Names in the attacker's zone where a confused verifier might look for a key.
ATTACKER_KEY_NAMES = (
    f"sel._domainkey.{ATTACKER}",
    f"sel._domainkey.{VICTIM}'a.{ATTACKER}",
    f"sel._domainkey.{VICTIM}(.{ATTACKER}",
    f'sel._domainkey.{VICTIM}"=(.{ATTACKER}',
    f"sel._domainkey.{HOMOGRAPH_A}",
    "sel._domainkey.fass.example",
)
ATTACKER_SPF_NAMES = (
    ATTACKER,
    f"helo.{ATTACKER}",
    f"any.{ATTACKER}",
    f"33.{ATTACKER}",
    HOMOGRAPH_A,
    "fass.example",
)


def zone() -> StaticResolver:
    res = StaticResolver()
    for victim in VICTIMS:
        res.add(victim, "TXT", f"v=spf1 ip4:{VICTIM_IP} -all")
        res.add(victim, "A", VICTIM_IP)
        res.add("_dmarc." + victim, "TXT", "v=DMARC1; p=reject; sp=reject")
        res.add("sel._domainkey." + victim, "TXT", key(victim)[1])
    for name in ATTACKER_SPF_NAMES:
        res.add(name, "TXT", f"v=spf1 ip4:{ATTACKER_IP} -all")
        res.add(name, "A", ATTACKER_IP)
    for name in ATTACKER_KEY_NAMES:
        res.add(name, "TXT", key(ATTACKER)[1])
    for org in (ATTACKER, HOMOGRAPH_A, "fass.example"):
        res.add("_dmarc." + org, "TXT", "v=DMARC1; p=none")
    return res


def engine(**sections: dict[str, object]) -> Engine:
    return make_engine(zone(), AUTHSERV, **sections)


# --------------------------------------------------------------------------- cases


@dataclass(frozen=True)
class Spoof:
    """One attack: envelope, header fields, an optional attacker signature, the outcome."""

    id: str
    from_fields: tuple[tuple[str, str], ...]  # (name, value after "name:") in order
    mail_from: str = "any@" + ATTACKER
    helo: str = ATTACKER
    ip: str = ATTACKER_IP
    extra: tuple[tuple[str, str], ...] = ()  # more fields after From (Sender, A-R...)
    dkim: tuple[str, str] | None = (ATTACKER, "sel")  # (d=, s=) signed with the attacker key
    expect: str = "reject"  # "reject", or "accept:<domain>" (accepted as that From domain)
    config: tuple[tuple[str, str, object], ...] = ()  # (section, key, value)
    raw: bytes | None = None  # the whole header block as bytes (parse_message path)
    warn: tuple[str, ...] = ()  # the From warnings expected (Deception values)
    notes: str = ""
    tags: tuple[str, ...] = field(default=())


def _b64word(text: str) -> str:
    return "=?utf-8?B?" + base64.b64encode(text.encode()).decode() + "?="


V = f"<admin@{VICTIM}>"
A = f"<first@{ATTACKER}>"
STRICTEST = (("dmarc", "multiple_from", "strictest"),)
FROM_REJECT = (("from", "display_name_check", "reject"),)
FROM_OFF = (("from", "display_name_check", "off"),)
NAME = ("display-name",)
LOCAL = ("local-part",)
MAILSPLOIT = _b64word(f"ceo@{VICTIM}\0") + f"@{ATTACKER}"  # email shows "ceo@...\x00"@attack
HELO_TOO = (("spf", "helo", True),)

CASES: list[Spoof] = [
    # ---- espoofer server cases (SMTP / sender-side ambiguities)
    Spoof(
        "a1-nonexistent-subdomain-mailfrom",
        (("From", V),),
        mail_from=f"any@mailfrom.notexist.{VICTIM}",
        helo=f"helo.{ATTACKER}",
        dkim=None,
    ),
    Spoof(
        "a1-cve-2019-20790-helo-identity-counted",
        (("From", V),),
        mail_from=f"any@mailfrom.notexist.{VICTIM}",
        helo=f"helo.{ATTACKER}",
        dkim=None,
        config=HELO_TOO,
    ),
    Spoof("a2-paren-mailfrom", (("From", V),), mail_from=f"(any@{VICTIM}", dkim=None),
    Spoof("a2-null-mailfrom-attacker-helo", (("From", V),), mail_from="", dkim=None),
    Spoof(
        "a2-null-mailfrom-victim-helo",
        (("From", V),),
        mail_from="",
        helo=VICTIM,
        dkim=None,
    ),
    Spoof(
        "a3-nul-in-selector",
        (("From", V),),
        mail_from=f"any@33.{ATTACKER}",
        helo=f"33.{ATTACKER}",
        dkim=(VICTIM, f"sel._domainkey.{ATTACKER}.\x00.any"),
    ),
    Spoof("a4-quote-in-d", (("From", V),), dkim=(f"{VICTIM}'a.{ATTACKER}", "sel")),
    Spoof("cve-2020-12272-paren-in-d", (("From", V),), dkim=(f"{VICTIM}(.{ATTACKER}", "sel")),
    Spoof("a16-quote-eq-paren-in-d", (("From", V),), dkim=(f'{VICTIM}"=(.{ATTACKER}', "sel")),
    Spoof("a5-paren-in-mailfrom", (("From", V),), mail_from=f"any@{VICTIM}(a.{ATTACKER}"),
    Spoof("a6-quote-at-in-mailfrom", (("From", V),), mail_from=f"any@{VICTIM}'@any.{ATTACKER}"),
    Spoof(
        "a7-route-in-mailfrom", (("From", V),), mail_from=f"@{VICTIM},@any.example:'any@{ATTACKER}"
    ),
    # ---- multiple From fields (espoofer a8-a11, client a1)
    Spoof("a8-two-from", (("From", A), ("From", V))),
    Spoof("a8-two-from-victim-first", (("From", V), ("From", A))),
    Spoof("a8-two-from-strictest", (("From", A), ("From", V)), config=STRICTEST),
    Spoof("a9-leading-space-name", ((" From", A), ("From", V))),
    Spoof("a10-trailing-space-name", (("From", A), ("From ", V))),
    Spoof("a10-tab-before-colon", (("From", A), ("From\t", V))),
    Spoof("case-upper", (("From", A), ("FROM", V))),
    Spoof("case-lower", (("from", A), ("From", V))),
    Spoof("client-a1-same-account", (("From", f"<attacker@{ATTACKER}>"), ("From", V))),
    Spoof(
        "a9-raw-leading-space",
        (),
        raw=f" From: {A}\r\nFrom: {V}\r\nTo: <victim@victim.test>\r\nSubject: a9\r\n".encode(),
    ),
    Spoof(
        "a11-raw-folded-name",
        (),
        raw=f"From\r\n : {A}\r\nFrom: {V}\r\nTo: <victim@victim.test>\r\nSubject: a11\r\n".encode(),
    ),
    Spoof(
        "a11-raw-folded-name-only",
        (),
        raw=f"From\r\n : {V}\r\nTo: <victim@victim.test>\r\nSubject: a11\r\n".encode(),
    ),
    # ---- From vs Sender / Resent-From (a12, a13): the attacker is the author, not the victim
    Spoof(
        "a12-from-vs-sender", (("From", A),), extra=(("Sender", V),), expect=f"accept:{ATTACKER}"
    ),
    Spoof(
        "a13-from-vs-resent-from",
        (("From", A),),
        extra=(("Resent-From", V),),
        expect=f"accept:{ATTACKER}",
    ),
    Spoof("a12-sender-only", (), extra=(("Sender", V),)),
    # ---- several addresses in one From (a14, a18, client a2, CVE-2019-16378)
    Spoof("a14-two-addresses", (("From", f"{A}, {V}"),)),
    Spoof("a14-two-addresses-strictest", (("From", f"{A}, {V}"),), config=STRICTEST),
    Spoof(
        "cve-2019-16378",
        (("From", f"Support <support@{VICTIM}>, Support <support@{ATTACKER}>"),),
        config=STRICTEST,
    ),
    Spoof("cve-2019-16378-reject", (("From", f"Support <support@{VICTIM}>, Support {A}"),)),
    Spoof("a18-special-precedence", (("From", f"admin@{VICTIM},<second@{ATTACKER}>"),)),
    Spoof("group-two", (("From", f"G: {V}, {A};"),), config=STRICTEST),
    # ---- encodings and obsolete syntax (a15, a16, a17, a19)
    Spoof("a15-encoded-address", (("From", _b64word(V) + f",<second@{ATTACKER}>"),)),
    Spoof("a15-encoded-address-alone", (("From", _b64word(V)),)),
    Spoof("a16-route-portion", (("From", f"<@{ATTACKER},@any.example:admin@{VICTIM}>"),)),
    Spoof("a17-quoted-pair", (("From", f"{V}\\,<second@{ATTACKER}>"),)),
    Spoof("a19-angle-then-addr", (("From", f"<any@{ATTACKER}>admin@{VICTIM}"),)),
    Spoof("a19-addr-then-angle", (("From", f"admin@{VICTIM}<any@{ATTACKER}>"),)),
    # ---- display-name tricks: legal, the author is the attacker and DMARC says so
    Spoof(
        "display-quoted-victim-address",
        (("From", f'"admin@{VICTIM}" <x@{ATTACKER}>'),),
        expect=f"accept:{ATTACKER}",
        warn=NAME,
    ),
    Spoof(
        "display-unquoted-victim-address",
        (("From", f"admin@{VICTIM} <x@{ATTACKER}>"),),
    ),
    Spoof(
        "display-encoded-victim-address",
        (("From", f"=?utf-8?q?admin=40{VICTIM}?= <x@{ATTACKER}>"),),
        expect=f"accept:{ATTACKER}",
        warn=NAME,
    ),
    Spoof(
        "comment-victim-address",
        (("From", f"<x@{ATTACKER}> (admin@{VICTIM})"),),
        expect=f"accept:{ATTACKER}",
        warn=NAME,
    ),
    Spoof(
        "opendmarc-44-escaped-quotes",
        (("From", f'"\\"{VICTIM}, Inc.\\"" <x@{ATTACKER}>'),),
        expect=f"accept:{ATTACKER}",
    ),
    Spoof(
        "opendmarc-72-quoted-comma",
        (("From", f'"{VICTIM}, admin@{VICTIM}" <x@{ATTACKER}>'),),
        expect=f"accept:{ATTACKER}",
        warn=NAME,
    ),
    Spoof(
        "quoted-local-part-victim",
        (("From", f'"admin@{VICTIM}"@{ATTACKER}'),),
        expect=f"accept:{ATTACKER}",
        warn=LOCAL,
    ),
    # ---- the display-name review (issue 13): what the reader sees is the victim
    Spoof(
        "review-quoted-display-name",
        (("From", f'"ceo@{VICTIM}" <a@{ATTACKER}>'),),
        expect=f"accept:{ATTACKER}",
        warn=NAME,
    ),
    Spoof(
        "review-encoded-display-name",
        (("From", _b64word(f"ceo@{VICTIM}") + f" <a@{ATTACKER}>"),),
        expect=f"accept:{ATTACKER}",
        warn=NAME,
    ),
    Spoof(
        "review-mailsploit-local-part",
        (("From", MAILSPLOIT),),
        expect=f"accept:{ATTACKER}",
        warn=LOCAL,
    ),
    Spoof(
        "review-fullwidth-display-name",
        (("From", f'"ceo\uff20legitimate\u3002example" <a@{ATTACKER}>'),),
        expect=f"accept:{ATTACKER}",
        warn=NAME,
    ),
    Spoof(
        "review-split-encoded-words",
        (("From", f"=?utf-8?q?ceo=40legit?= =?utf-8?q?imate.example?= <a@{ATTACKER}>"),),
        expect=f"accept:{ATTACKER}",
        warn=NAME,
    ),
    Spoof(
        "review-quoted-display-name-reject",
        (("From", f'"ceo@{VICTIM}" <a@{ATTACKER}>'),),
        config=FROM_REJECT,
        warn=NAME,
    ),
    Spoof(
        "review-encoded-display-name-reject",
        (("From", _b64word(f"ceo@{VICTIM}") + f" <a@{ATTACKER}>"),),
        config=FROM_REJECT,
        warn=NAME,
    ),
    Spoof(
        "review-mailsploit-local-part-reject",
        (("From", MAILSPLOIT),),
        config=FROM_REJECT,
        warn=LOCAL,
    ),
    Spoof(
        "review-comment-reject",
        (("From", f"<a@{ATTACKER}> (ceo@{VICTIM})"),),
        config=FROM_REJECT,
        warn=NAME,
    ),
    Spoof(
        "review-forged-warning-header-removed",
        (("From", f'"ceo@{VICTIM}" <a@{ATTACKER}>'),),
        extra=(("X-Authmilter-From-Warning", "none: verified sender"),),
        expect=f"accept:{ATTACKER}",
        warn=NAME,
    ),
    Spoof(
        "review-check-off",
        (("From", f'"ceo@{VICTIM}" <a@{ATTACKER}>'),),
        expect=f"accept:{ATTACKER}",
        config=FROM_OFF,
    ),
    # ---- broken fields (OpenDMARC #174, #175/#179)
    Spoof("opendmarc-174-unbalanced-close", (("From", f"admin@{VICTIM}>"),)),
    Spoof("unbalanced-open", (("From", f"<admin@{VICTIM}"),)),
    Spoof("opendmarc-175-trailing-comma", (("From", f"{V},"),)),
    Spoof("leading-comma", (("From", f",{V}"),)),
    Spoof("empty-from", (("From", ""),)),
    Spoof("empty-group", (("From", "undisclosed-recipients:;"),)),
    Spoof("nul-in-from", (("From", f"<admin@{VICTIM}\x00.{ATTACKER}>"),)),
    Spoof("no-from", ()),
    Spoof("nonexistent-victim-subdomain", (("From", f"<admin@nx.{VICTIM}>"),)),
    # ---- IDN: homographs are other domains, mapped labels never pass
    Spoof(
        "idn-homograph-u-label",
        (("From", f"<service@{HOMOGRAPH}>"),),
        mail_from=f"b@{HOMOGRAPH_A}",
        dkim=(HOMOGRAPH_A, "sel"),
        expect=f"accept:{HOMOGRAPH_A}",
    ),
    Spoof(
        "idn-homograph-a-label",
        (("From", f"<service@{HOMOGRAPH_A}>"),),
        mail_from=f"b@{HOMOGRAPH_A}",
        dkim=(HOMOGRAPH_A, "sel"),
        expect=f"accept:{HOMOGRAPH_A}",
    ),
    Spoof("idn-victim-u-label-attacker-dkim", (("From", f"<admin@{BUCHER}>"),)),
    Spoof(
        "idn-victim-a-label-u-label-d",
        (("From", f"<admin@{BUCHER_A}>"),),
        dkim=(BUCHER, "sel"),  # signed with the attacker's key: the victim's key says no
    ),
    Spoof(
        "idna2003-mapping-sharp-s",
        (("From", "<admin@faß.example>"),),
        mail_from="b@fass.example",
        dkim=("fass.example", "sel"),
    ),
    Spoof("fullwidth-dot", (("From", f"<admin@{PAYPAL.replace('.', '。')}>"),)),
    Spoof("upper-case-victim", (("From", f"<admin@{VICTIM.upper()}>"),)),
    Spoof("trailing-dot-victim", (("From", f"<admin@{VICTIM}.>"),)),
    Spoof(
        "domain-literal",
        (("From", "<admin@[192.0.2.25]>"),),
    ),
    # ---- forged A-R with our authserv-id (removed, and the message still rejected)
    Spoof(
        "forged-ar-claims-pass",
        (("From", V),),
        extra=(("Authentication-Results", f"{AUTHSERV}; dmarc=pass header.from={VICTIM}"),),
    ),
]


def build(case: Spoof) -> tuple[Transaction, Envelope]:
    env = Envelope(
        client_ip=ipaddress.ip_address(case.ip),
        client_name="unknown",
        helo=case.helo,
        mail_from=case.mail_from,
        rcpt_to=("victim@victim.test",),
    )
    if case.raw is not None:
        body = b"Hi, this is a test message! Best wishes.\r\n"
        raw = case.raw + b"\r\n" + body
        if case.dkim:  # dkimpy will not sign these: the attacker signs the To and Subject
            raw = _attacker_sign(b"To: <victim@victim.test>\r\n\r\n" + body, *case.dkim) + raw
        return parse_message(raw, env), env
    fields = [
        *case.from_fields,
        ("To", "<victim@victim.test>"),
        ("Subject", f"espoofer-style case {case.id}"),
        ("Date", "Tue, 01 Dec 2026 12:00:00 +0000"),
        ("Message-ID", f"<{case.id}@message-ids.{ATTACKER}>"),
        *case.extra,
    ]
    head = [HeaderField(n, (" " + v).encode()) for n, v in fields]
    body = b"Hi, this is a test message! Best wishes.\r\n"
    if case.dkim:
        # dkimpy refuses " From" and "From\t" names: it signs the names stripped, as a
        # lenient verifier would read them
        plain = b"".join(h.name.strip().encode() + b":" + h.value + b"\r\n" for h in head)
        sig = _attacker_sign(plain + b"\r\n" + body, *case.dkim)
        name, _, value = sig.rstrip(b"\r\n").partition(b":")
        head.insert(0, HeaderField(name.decode(), value))
    # Fields exactly as an MTA hands them to the milter (names kept as written).
    return Transaction(envelope=env, headers=tuple(head), body=body), env


def _attacker_sign(raw: bytes, d: str, s: str) -> bytes:
    sig: bytes = dkim.sign(
        raw,
        s.encode(),
        d.encode(),
        key(ATTACKER)[0],
        signature_algorithm=b"ed25519-sha256",
        canonicalize=(b"relaxed", b"relaxed"),
        include_headers=[b"from", b"to", b"subject", b"date", b"sender", b"resent-from"],
    )
    return sig


def run(case: Spoof) -> tuple[AuthResults, Decision, str]:
    sections: dict[str, dict[str, object]] = {}
    for section, name, value in case.config:
        sections.setdefault(section, {})[name] = value
    eng = engine(**sections)
    tx, env = build(case)
    results, decision = eng.evaluate(tx, eng.check_envelope(env))
    check_invariants(decision)
    return results, decision, our_ar(AUTHSERV, results, decision, env)


def _is_victim(domain: str) -> bool:
    d = domain.strip().strip('"').lower().rstrip(".")
    return any(d == v or d.endswith("." + v) for v in VICTIMS)


def assert_victim_never_passes(results: AuthResults, ar: str) -> None:
    authserv, infos = parse_ar(ar)
    assert authserv == AUTHSERV, ar
    for info in infos:
        if info["result"] != "pass":
            continue
        if info["method"] == "dmarc":
            assert not _is_victim(info.get("header.from", "")), ar
        if info["method"] == "dkim":
            assert not _is_victim(info.get("header.d", "")), ar
        if info["method"] == "spf":
            mailfrom = info.get("smtp.mailfrom", "")
            assert not _is_victim(mailfrom.rpartition("@")[2]), ar
    dmarc = results.dmarc
    if dmarc is not None and dmarc.result == Result.PASS:
        assert not _is_victim(dmarc.from_domain), dmarc
    for d in results.dkim:
        if d.result == Result.PASS:
            assert not _is_victim(d.domain), d


def assert_warnings(case: Spoof, results: AuthResults, decision: Decision, ar: str) -> None:
    """The warnings expected; an accepted message carries exactly ours in header and A-R."""
    assert [w.kind.value for w in results.from_warnings] == list(case.warn), results
    if decision.action != Action.ACCEPT:
        return
    flags = [h.value for h in decision.add_headers if h.name == FLAG_HEADER]
    removed = [e.index for e in decision.remove_headers if e.name == FLAG_HEADER]
    check_off = case.config == FROM_OFF
    assert removed == ([] if check_off else [1] * any(n == FLAG_HEADER for n, _ in case.extra))
    unfolded = ar.replace("\n\t", " ")
    if not case.warn:
        assert flags == [] and "(From " not in unfolded, (flags, ar)
        return
    assert len(flags) == 1 and flags[0] is not None, decision
    for w in results.from_warnings:
        assert f"{w.kind.value}: the From {w.kind.text}" in flags[0]
        assert f"(From {w.kind.text})" in unfolded, ar
    assert not any(_is_victim(word) for word in re.split(r"[\s();]+", unfolded)), ar


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_spoof_is_never_accepted_as_the_victim(case: Spoof) -> None:
    results, decision, ar = run(case)
    assert_victim_never_passes(results, ar)
    assert_warnings(case, results, decision, ar)
    if case.expect == "reject":
        assert decision.action == Action.REJECT, (decision, ar)
        assert decision.reply is not None and decision.reply.code == 550
        assert decision.reply.status in ("5.7.1", "5.7.26"), decision.reply
    else:
        domain = case.expect.partition(":")[2]
        assert decision.action == Action.ACCEPT, (decision, ar)
        assert results.dmarc is not None and results.dmarc.from_domain == domain, results.dmarc
        _, infos = parse_ar(ar)
        dmarc = [i for i in infos if i["method"] == "dmarc"]
        assert dmarc and dmarc[0].get("header.from") == domain, ar


def test_forged_ar_with_our_id_is_removed() -> None:
    case = next(c for c in CASES if c.id == "forged-ar-claims-pass")
    _, decision, _ = run(case)
    assert decision.action == Action.REJECT  # nothing is delivered; were it, the field goes
    removals = header_edits.forged_removals(build(case)[0], AUTHSERV)
    assert [(e.name, e.index) for e in removals] == [("Authentication-Results", 1)]


@pytest.mark.parametrize("d", [f"{VICTIM}'a.{ATTACKER}", f"{VICTIM}(.{ATTACKER}"])
def test_injected_d_is_quoted_and_never_a_result(d: str) -> None:
    """The A-R renders the hostile d= as one quoted value: no comment, no new resinfo."""
    case = Spoof("inject", (("From", V),), dkim=(d, "sel"))
    results, _, ar = run(case)
    assert [r.result for r in results.dkim] == [Result.PERMERROR]
    _, infos = parse_ar(ar)
    assert [i["method"] for i in infos] == ["iprev", "spf", "dkim", "arc", "dmarc"], ar
    assert infos[2]["header.d"] == d, ar
    if "(" in d:
        assert f'header.d="{d}"' in ar.replace("\n\t", " "), ar


def test_the_same_attacks_with_genuine_auth_do_pass() -> None:
    """Control: the zone and keys work, so the rejections above are not an artefact."""
    own = Spoof("control", (("From", f"<x@{ATTACKER}>"),), expect=f"accept:{ATTACKER}")
    results, decision, ar = run(own)
    assert decision.action == Action.ACCEPT
    assert results.dmarc is not None and results.dmarc.result == Result.PASS, ar
    assert [r.result for r in results.dkim] == [Result.PASS], ar
    victim_own = Spoof(
        "victim-control", (("From", V),), mail_from=f"b@{VICTIM}", ip=VICTIM_IP, dkim=None
    )
    results, decision, ar = run(victim_own)
    assert decision.action == Action.ACCEPT and "dmarc=pass" in ar, ar


def test_parse_message_reads_obsolete_space_before_colon_as_a_field() -> None:
    raw = f"From: {A}\r\nFrom : {V}\r\nSubject: a10\r\n\r\nbody\r\n".encode()
    tx = parse_message(raw)
    assert [h.name.strip() for h in tx.headers] == ["From", "From", "Subject"]
    eng = engine()
    env = Envelope(
        client_ip=ipaddress.ip_address(ATTACKER_IP), helo=ATTACKER, mail_from="a@" + ATTACKER
    )
    assert eng.evaluate(tx, eng.check_envelope(env))[1].action == Action.REJECT


def test_body_length_limit_with_appended_content_does_not_pass_dmarc() -> None:
    body = b"Original text from the victim.\r\n"
    raw = (
        f"From: {V}\r\nTo: <victim@victim.test>\r\nSubject: l=\r\n"
        "Date: Tue, 01 Dec 2026 12:00:00 +0000\r\n\r\n"
    ).encode() + body
    sig = dkim.sign(
        raw,
        b"sel",
        VICTIM.encode(),
        key(VICTIM)[0],
        signature_algorithm=b"ed25519-sha256",
        length=True,
    )
    forged = sig + raw + b"\r\nAppended by the attacker: click here.\r\n"
    env = Envelope(client_ip=ipaddress.ip_address(ATTACKER_IP), helo=ATTACKER, mail_from="")
    eng = engine()
    results, decision = eng.evaluate(parse_message(forged, env), eng.check_envelope(env))
    assert [r.result for r in results.dkim] == [Result.POLICY]  # valid, but not the whole body
    assert results.dmarc is not None and results.dmarc.result != Result.PASS, results.dmarc
    assert decision.action == Action.REJECT
