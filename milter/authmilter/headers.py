"""The Authentication-Results header (RFC 8601): render it, sanitise it, find forged ones.

Everything that comes from the message, the envelope or DNS is rendered so that it can
neither add a result nor break the grammar:

* property values are RFC 2045 tokens, plain ``local-part@domain`` forms whose local part
  is a conservative dot-atom, or quoted-strings with ``"`` and ``\\`` escaped (authres
  1.2.0 reads a quoted pvalue back only when it is the last property of its resinfo, so
  the properties most likely to need quotes, ``header.b`` and ``header.from``, go last);
* reasons are always ``reason="..."`` quoted-strings (RFC 8601 section 2.7 free text);
* comments hold only text we generate; even so ``(``, ``)`` and ``\\`` are removed from them;
* control characters (C0, C1, DEL), Unicode format and line/paragraph separators are
  removed, whitespace controls become a space, undecodable bytes (surrogate escapes)
  become ``?``; valid non-ASCII text (SMTPUTF8) is kept, but only inside quoted-strings
  and comments (RFC 6532 allows UTF-8 there, never in an RFC 2045 token);
* over-long values are cut and end in ``...`` (so a cut value is never a valid domain).

Free text (reasons, comments) also has ``;`` turned into ``,``, so that even a naive
consumer splitting on ``;`` cannot see a result in it; identities are kept exactly.

Values are folded with LF + TAB (libmilter and Postfix take LF); every line, the first one
counted with its ``Authentication-Results: `` name and a leading TAB counted as 8
columns, is at most 78 columns unless one unbreakable element is longer.

Trusted senders: ``trusted == "auth"`` adds ``auth=pass`` before any other result, with
``smtp.auth=<user>`` only when asked (``login=True``: the login name would go to every
recipient); any other trust (``"internal"``) with no results renders as
``none (internal host, not checked)``.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Sequence

from authmilter.model import Envelope, HeaderField
from authmilter.results import (
    ArcResult,
    AuthResults,
    Disposition,
    DkimResult,
    DmarcResult,
    FromWarning,
    IprevResult,
    Result,
    SpfResult,
)
from authmilter.trust import Trust

AR_NAME = "Authentication-Results"
RECEIVED_SPF_NAME = "Received-SPF"
MAX_LINE = 78
TAB_WIDTH = 8
MAX_VALUE = 256  # octets of one property value (an SMTP path is at most 256)
MAX_TEXT = 60  # octets of one reason or comment, so it fits on a continuation line
MAX_HEADER_B = 8  # RFC 6008: enough of b= to tell signatures apart
MAX_RAW_LINE = 998  # RFC 5322 section 2.1.1, octets without the line end
MAX_PAIR = 512  # octets of one Received-SPF key=value pair; longer ones are left out
FOLD = "\n\t"

# RFC 2045: token := 1*<any (US-ASCII) CHAR except SPACE, CTLs, or tspecials>
_TSPECIALS = frozenset('()<>@,;:\\"/[]?=')
_TOKEN_CHARS = frozenset(chr(c) for c in range(33, 127)) - _TSPECIALS
# A local-part@domain-name pvalue we are happy to write bare (RFC 8601 pvalue form).
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_BARE_ADDRESS = re.compile(
    rf"(?:[A-Za-z0-9_+-]+(?:\.[A-Za-z0-9_+-]+)*)?@{_LABEL}(?:\.{_LABEL})+\.?", re.ASCII
)
_WS_CONTROLS = frozenset("\t\n\r\v\f")
_DROPPED_CATEGORIES = frozenset({"Cc", "Cf", "Co", "Cn", "Zl", "Zp"})
_SPF_WORDS = {
    "pass": "Pass",
    "fail": "Fail",
    "softfail": "SoftFail",
    "neutral": "Neutral",
    "none": "None",
    "temperror": "TempError",
    "permerror": "PermError",
}


# --------------------------------------------------------------------------- sanitising


def clean_text(text: str) -> str:
    """Text with controls, format characters and undecodable bytes removed, spaces collapsed."""
    if text.isascii() and text.isprintable():  # the common case, without a per-char loop
        return " ".join(text.split())
    out: list[str] = []
    for ch in text:
        if ch in _WS_CONTROLS:
            out.append(" ")
            continue
        category = unicodedata.category(ch)
        if category == "Cs":  # a surrogate-escaped byte that was not UTF-8
            out.append("?")
        elif category == "Zs":
            out.append(" ")
        elif category not in _DROPPED_CATEGORIES:
            out.append(ch)
    return " ".join("".join(out).split())


def _octets(text: str) -> int:
    return len(text.encode("utf-8"))


def _truncate(text: str, limit: int, cost: dict[str, int] | None = None) -> str:
    """Cut ``text`` so that its cost (UTF-8 octets, or ``cost`` per char) is <= limit."""

    def size(ch: str) -> int:
        return cost.get(ch, _octets(ch)) if cost else _octets(ch)

    if cost is None and len(text) * 4 <= limit:  # cannot be over: at most 4 octets a char
        return text
    if (sum(size(ch) for ch in text) if cost else _octets(text)) <= limit:
        return text
    kept: list[str] = []
    used = 3  # the "..." marker
    for ch in text:
        used += size(ch)
        if used > limit:
            break
        kept.append(ch)
    return "".join(kept).rstrip() + "..."


def _is_token(text: str) -> bool:
    return bool(text) and all(ch in _TOKEN_CHARS for ch in text)


def quote(text: str) -> str:
    """An RFC 5322 quoted-string for already cleaned text."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def render_value(raw: str, *, address: bool = False) -> str:
    """One property value: a token, a bare ``local@domain`` (when ``address``) or quoted."""
    text = _truncate(clean_text(raw), MAX_VALUE)
    if _is_token(text):
        return text
    if address and _BARE_ADDRESS.fullmatch(text):
        return text
    return quote(text)


def _free_text(raw: str) -> str:
    return clean_text(raw).replace(";", ",")


def render_reason(raw: str) -> str:
    """``reason="..."`` for a non-empty reason (RFC 8601 section 2.7), else ""."""
    text = _free_text(raw)
    if not text:
        return ""
    return "reason=" + quote(_truncate(text, MAX_TEXT, {"\\": 2, '"': 2}))


def render_comment(raw: str, limit: int = MAX_TEXT) -> str:
    """``(text)`` with parentheses and backslashes removed, or "" for empty text."""
    text = "".join(ch for ch in _free_text(raw) if ch not in "()\\")
    text = _truncate(" ".join(text.split()), limit)
    return f"({text})" if text else ""


def header_value_is_safe(value: str, name: str = "") -> bool:
    """True if ``value`` can be handed to the MTA as a header value.

    No CR, no NUL or other control character except TAB, LF only as a fold (followed by
    a space or TAB and by something that is not only whitespace), no Unicode line or
    paragraph separator, no surrogate (it could not be encoded), no line over the RFC 5322
    limit of 998 octets (the first line counted with ``name: `` when ``name`` is given).
    """
    for ch in value:
        if ch in "\t\n":
            continue
        if unicodedata.category(ch) in {"Cc", "Cs", "Zl", "Zp"}:
            return False
    lines = value.split("\n")
    if _octets(lines[0]) + (len(name) + 2 if name else 0) > MAX_RAW_LINE:
        return False
    return all(
        line[:1] in (" ", "\t") and line.strip(" \t") and _octets(line) <= MAX_RAW_LINE
        for line in lines[1:]
    )


# --------------------------------------------------------------------------- folding


def _fold(start: int, head: str, groups: Iterable[tuple[bool, Sequence[str]]]) -> str:
    """Join atoms with spaces, breaking lines (LF TAB) so each is <= MAX_LINE columns.

    ``start`` is the column the value starts at (after ``Name: ``); ``head`` is never
    empty. Each group is ``(new_line, atoms)``: ``new_line`` starts it on a new line.
    """
    lines = [head]
    col = start + _octets(head)
    for new_line, atoms in groups:
        for i, atom in enumerate(atoms):
            size = _octets(atom)
            if (new_line and i == 0) or col + 1 + size > MAX_LINE:
                lines.append(atom)
                col = TAB_WIDTH + size
            else:
                lines[-1] += " " + atom
                col += 1 + size
    return FOLD.join(lines)


def _split_comment(comment: str) -> list[str]:
    """A comment as foldable words (FWS is allowed inside a comment)."""
    return comment.split(" ") if comment else []


# --------------------------------------------------------------------------- resinfo


def _resinfo(
    method: str,
    result: str,
    comment: str = "",
    reason: str = "",
    props: Sequence[tuple[str, str]] = (),
) -> list[str]:
    atoms = [f"{method}={result}", *_split_comment(render_comment(comment))]
    rendered_reason = render_reason(reason) if reason else ""
    if rendered_reason:
        atoms.append(rendered_reason)
    atoms.extend(f"{name}={value}" for name, value in props if value)
    return atoms


def _spf_atoms(spf: SpfResult, envelope: Envelope) -> list[str]:
    if spf.identity == "helo":
        helo = spf.domain or envelope.helo
        props = [("smtp.helo", render_value(helo) if helo else "")]
    else:
        sender = spf.sender or envelope.mail_from or spf.domain
        props = [("smtp.mailfrom", render_value(sender, address=True) if sender else "")]
    reason = spf.reason if spf.result != Result.PASS else ""
    return _resinfo("spf", Result(spf.result).value, reason=reason, props=props)


def _iprev_atoms(iprev: IprevResult) -> list[str]:
    """``iprev=RESULT [reason] policy.iprev=IP [(name)]`` (RFC 8601 sections 2.7.3, 3).

    The confirmed name goes in a comment after the address, as RFC 8601's examples do; it
    is a host name (checks/iprev.py keeps no other) and is sanitised like any comment.
    """
    reason = iprev.reason if iprev.result != Result.PASS else ""
    atoms = _resinfo("iprev", Result(iprev.result).value, reason=reason)
    atoms.append(f"policy.iprev={render_value(iprev.ip)}")
    atoms.extend(_split_comment(render_comment(iprev.name)))
    return atoms


def _dkim_atoms(sig: DkimResult) -> list[str]:
    notes = []
    if sig.key_bits > 0:
        notes.append(f"{sig.key_bits}-bit key")
    if sig.body_length is not None:
        notes.append(f"body length limit {sig.body_length}")
    props = [
        ("header.d", render_value(sig.domain) if sig.domain else ""),
        ("header.i", render_value(sig.identity, address=True) if sig.identity else ""),
        ("header.s", render_value(sig.selector) if sig.selector else ""),
        ("header.a", render_value(sig.algorithm) if sig.algorithm else ""),
        ("header.b", render_value(sig.header_b[:MAX_HEADER_B]) if sig.header_b else ""),
    ]
    reason = sig.reason if sig.result != Result.PASS else ""
    return _resinfo("dkim", Result(sig.result).value, ", ".join(notes), reason, props)


def _arc_atoms(arc: ArcResult, envelope: Envelope) -> list[str]:
    """``arc=RESULT [reason] [header.oldest-pass=N] smtp.remote-ip=IP`` (RFC 8617 section 10).

    oldest-pass only for a passing chain in which an older AMS no longer validates (N > 0);
    the reason is the verifier's fixed words, never the message's.
    """
    props = []
    if arc.result == Result.PASS and arc.oldest_pass:
        props.append(("header.oldest-pass", str(arc.oldest_pass)))
    if envelope.client_ip is not None:
        props.append(("smtp.remote-ip", render_value(str(envelope.client_ip))))
    comment = f"{arc.chain} sets" if arc.chain and arc.result == Result.PASS else ""
    reason = arc.reason if arc.result != Result.PASS else ""
    return _resinfo("arc", Result(arc.result).value, comment, reason, props)


def _dmarc_atoms(
    dmarc: DmarcResult,
    disposition: Disposition | None,
    warnings: Sequence[FromWarning],
    override: str = "",
) -> list[str]:
    notes = []
    known_policy = dmarc.result in (Result.PASS, Result.FAIL)
    if known_policy:
        notes.append(f"p={Disposition(dmarc.policy).value}")
    if disposition is not None:
        notes.append(f"dis={Disposition(disposition).value}")
    if dmarc.testing:
        notes.append("t=y")
    # header.from last: a quoted value is only read back by authres as the last property.
    props = [
        ("policy.dmarc", Disposition(dmarc.policy).value if known_policy else ""),
        ("header.from", render_value(dmarc.from_domain) if dmarc.from_domain else ""),
    ]
    reason = dmarc.reason if dmarc.result != Result.PASS else ""
    atoms = _resinfo("dmarc", Result(dmarc.result).value, " ".join(notes), reason, props)
    if override:  # why the policy was not applied: a comment after the properties
        atoms.extend(_split_comment(render_comment(f"overridden: {override}")))
    # From warnings, outside DMARC but about header.from: a comment of fixed words each, last
    # (authres reads no reason after a second comment), so that no value of the message is in it
    for w in warnings:
        atoms.extend(_split_comment(render_comment(f"From {w.kind.text}")))
    return atoms


def render_authentication_results(
    authserv_id: str,
    results: AuthResults,
    envelope: Envelope,
    *,
    disposition: Disposition | None = None,
    login: bool = False,
    dmarc_override: str = "",
) -> str:
    """The value of one Authentication-Results field (RFC 8601 section 2.2), folded.

    Methods in order: auth (for SASL-authenticated senders; ``login`` adds
    ``smtp.auth=<user>``), iprev, spf, spf for HELO, every dkim signature in order, dmarc;
    ``<id>; none`` when there is nothing. ``disposition`` (what local policy did) adds
    ``dis=`` to the dmarc comment when given; each From warning adds a comment at the end
    of the dmarc result. ``arc`` comes before ``dmarc`` when the message has ARC fields;
    ``dmarc_override`` (fixed words and a configured domain) says in the dmarc comment why
    its policy was not applied.
    """
    groups: list[list[str]] = []
    if results.trusted == Trust.AUTHENTICATED:
        user = (envelope.auth_user or "") if login else ""
        props = [("smtp.auth", render_value(user, address=True) if user else "")]
        groups.append(_resinfo("auth", Result.PASS.value, props=props))
    if results.iprev is not None:
        groups.append(_iprev_atoms(results.iprev))
    if results.spf is not None:
        groups.append(_spf_atoms(results.spf, envelope))
    if results.helo_spf is not None:
        groups.append(_spf_atoms(results.helo_spf, envelope))
    groups.extend(_dkim_atoms(sig) for sig in results.dkim)
    if results.arc is not None:
        groups.append(_arc_atoms(results.arc, envelope))
    if results.dmarc is not None:
        groups.append(
            _dmarc_atoms(results.dmarc, disposition, results.from_warnings, dmarc_override)
        )
    head = render_value(authserv_id.strip()) + ";"
    start = len(AR_NAME) + 2
    if not groups:
        comment = "internal host, not checked" if results.trusted else ""
        atoms = ["none", *_split_comment(render_comment(comment))]
        return _fold(start, head, [(False, atoms)])
    for atoms in groups[:-1]:
        atoms[-1] += ";"
    return _fold(start, head, [(True, atoms) for atoms in groups])


# --------------------------------------------------------------------------- Received-SPF

_KV_PAIR = re.compile(
    r'\s*([A-Za-z][A-Za-z0-9_.-]*)\s*=\s*("(?:[^"\\]|\\.)*"|[A-Za-z0-9!#$%&\'*+/=?^_`{|}~.@:\[\]-]+)\s*',
    re.ASCII,
)


def _kv_list(text: str) -> list[str] | None:
    """``key=value; key=value [;]`` (RFC 7208 section 9.1) as ``key=value`` atoms, or None."""
    pairs: list[str] = []
    pos = 0
    text = text.strip()
    while pos < len(text):
        match = _KV_PAIR.match(text, pos)
        if match is None:
            return None
        pair = f"{match.group(1)}={match.group(2)}"
        if _octets(pair) <= MAX_PAIR:
            pairs.append(pair)
        pos = match.end()
        if pos < len(text):
            if text[pos] != ";":
                return None
            pos += 1
    return pairs


def render_received_spf(spf: SpfResult) -> str | None:
    """``spf.received_spf`` made safe and folded, or None when there is none to write.

    The value is re-read as ``Result (comment) key=value; ...`` (RFC 7208 section 9.1)
    and rebuilt: the comment (pyspf puts the sender in it unescaped) is sanitised like
    ours, key-value pairs are kept only if they parse and are at most MAX_PAIR octets.
    A value that is not of that form is reduced to its result word, or None if it has none.
    """
    text = clean_text(spf.received_spf)
    if not text:
        return None
    word, _, rest = text.partition(" ")
    result = _SPF_WORDS.get(word.lower())
    if result is None:
        return None
    comment, pairs = "", _kv_list(rest)
    if pairs is None and rest.startswith("("):
        # The real end of the comment is the last ")" after which the rest parses.
        for end in range(len(rest) - 1, 0, -1):
            if rest[end] == ")":
                tail = _kv_list(rest[end + 1 :])
                if tail is not None:
                    comment, pairs = rest[1:end], tail
                    break
    rendered = render_comment(comment, MAX_VALUE)
    atoms = [result, *_split_comment(rendered)]
    for i, pair in enumerate(pairs or ()):
        atoms.append(pair + (";" if i < len(pairs or ()) - 1 else ""))
    head, *others = atoms
    return _fold(len(RECEIVED_SPF_NAME) + 2, head, [(False, others)])


# --------------------------------------------------------------------------- forged headers


def _skip_cfws(text: str, pos: int) -> int | None:
    """Position after whitespace and (nested) comments, or None inside an open comment."""
    depth = 0
    while pos < len(text):
        ch = text[pos]
        if depth and ch == "\\":
            pos += 2
            continue
        if ch == "(":
            depth += 1
        elif ch == ")" and depth:
            depth -= 1
        elif not depth and ch not in " \t\r\n":
            return pos
        pos += 1
    return None if depth else pos


def leading_authserv_id(value: str) -> str | None:
    """The authserv-id an A-R value starts with (token or quoted-string), or None."""
    pos = _skip_cfws(value, 0)
    if pos is None or pos >= len(value):
        return None
    if value[pos] == '"':
        out: list[str] = []
        pos += 1
        while pos < len(value) and value[pos] != '"':
            if value[pos] == "\\":
                pos += 1
            out.append(value[pos : pos + 1])
            pos += 1
        return "".join(out)
    end = pos
    while end < len(value) and value[end] not in ' \t\r\n;("':
        end += 1
    return value[pos:end]


def _same_id(a: str, b: str) -> bool:
    return a.strip().rstrip(".").lower() == b.strip().rstrip(".").lower()


def find_forged(headers: Sequence[HeaderField], authserv_id: str) -> tuple[int, ...]:
    """1-based occurrence indices (ascending) of A-R fields that carry our authserv-id.

    Compares the leading token (after whitespace and comments) case-insensitively, so
    fields authres cannot parse, and ones with a version (``id 1;``), are found too.
    """
    found: list[int] = []
    occurrence = 0
    for field in headers:
        if not field.is_named(AR_NAME):
            continue
        occurrence += 1
        value = field.value.decode("utf-8", "surrogateescape")
        leading = leading_authserv_id(value)
        if leading and _same_id(leading, authserv_id):
            found.append(occurrence)
    return tuple(found)
