"""Deceptive From mailboxes: what a reader is shown besides the address DMARC evaluates.

DMARC authenticates the From domain only; display names are out of its scope (RFC 9989,
"Display Name Attacks"), yet they are what mail clients show. For every mailbox of every
From field that parses, this check reports (at most one warning of each kind):

* ``display-name``: its display name, its group's name, or a comment in the field, shows an
  address whose domain is in another organization than the mailbox's own domain;
* ``local-part``: its local part holds an RFC 2047 encoded word (never legitimate there,
  RFC 2047 section 5; the Mailsploit attacks), or shows an address in another organization.

"Shows" is read as a lenient mail client would: encoded words decoded (for this check
only: the parser never decodes them), NFKC (so fullwidth ``＠`` is ``@``), ideographic full
stops as dots, format characters (zero-width, bidi controls) removed. An address is
``x@label.label...`` of at most 253 characters whose last label is not all digits.

Organizations are compared without DNS, so the check never waits for DNS nor depends on a
temperror: with a Public Suffix List (``dmarc.org_domain = "psl"``) by registrable domain;
without one, two domains are one organization when they are equal or one is a subdomain of
the other (so siblings such as ``pay.example.com`` and ``mail.example.com`` are two).
"""

from __future__ import annotations

import base64
import binascii
import re
import unicodedata
from collections.abc import Iterator, Sequence

from authmilter.checks.fromfield import FromSyntaxError, Mailbox, is_from, parse_mailboxes
from authmilter.idn import ALT_DOTS, normalise_domain
from authmilter.model import Transaction
from authmilter.psl import PublicSuffixList
from authmilter.results import Deception, FromWarning

_WORD = r"=\?([^?\s]+)\?([BbQq])\?([^?\s]*)\?="
_ENCODED_WORD = re.compile(_WORD)
_BETWEEN_WORDS = re.compile(rf"(?<=\?=)\s+(?={_WORD})")  # RFC 2047 6.2: not displayed
_ANY_ENCODED_WORD = re.compile(r"=\?[^?]*\?[^?]*\?[^?]*\?=")  # in a local part, any such form
_ADDRESS = re.compile(r"(?<=[^\s@])@([\w-]+(?:\.[\w-]+)+)")
_DOTS = str.maketrans(dict.fromkeys(ALT_DOTS, "."))
_MAX_DOMAIN = 253


def check_from_display(
    tx: Transaction, psl: PublicSuffixList | None = None
) -> tuple[FromWarning, ...]:
    """The warnings for the message's From field(s); a field that does not parse is skipped."""
    found: dict[Deception, FromWarning] = {}
    for field in tx.headers:
        if not is_from(field):
            continue
        comments: list[str] = []
        try:
            boxes = parse_mailboxes(field.value, comments)
        except FromSyntaxError:
            continue  # the From rules (dmarc.unparseable_from) deal with it
        for box in boxes:
            for warning in _mailbox_warnings(box, comments, psl):
                found.setdefault(warning.kind, warning)
    return tuple(found.values())


def _mailbox_warnings(
    box: Mailbox, comments: Sequence[str], psl: PublicSuffixList | None
) -> Iterator[FromWarning]:
    shown = foreign_domain(box.domain, [box.display_name, box.group, *comments], psl)
    if shown:
        yield FromWarning(Deception.DISPLAY_NAME, box.domain, shown)
    if _ANY_ENCODED_WORD.search(box.local_part):
        yield FromWarning(Deception.LOCAL_PART, box.domain)
    elif shown := foreign_domain(box.domain, [box.local_part], psl):
        yield FromWarning(Deception.LOCAL_PART, box.domain, shown)


def foreign_domain(domain: str, texts: Sequence[str], psl: PublicSuffixList | None) -> str:
    """The first domain of an address shown in ``texts`` outside ``domain``'s organization."""
    shown = (m.group(1).lower() for text in texts for m in _ADDRESS.finditer(visible(text)))
    for name in dict.fromkeys(shown):
        if name.rpartition(".")[2].isdigit() or len(name) > _MAX_DOMAIN:
            continue  # "v@1.0", "x@192.0.2.1", a screenful of labels: not a domain
        other = normalise_domain(name) or name  # as written when it is no valid domain
        if not same_organization(other, domain, psl):
            return other
    return ""


def same_organization(a: str, b: str, psl: PublicSuffixList | None) -> bool:
    """One organization: by the PSL when there is one, else equal or one under the other."""
    if psl is not None:
        return psl.org_domain(a) == psl.org_domain(b)
    return a == b or a.endswith("." + b) or b.endswith("." + a)


def visible(text: str) -> str:
    """``text`` as a lenient mail client may show it (see the module docstring)."""
    text = _ENCODED_WORD.sub(_decode_word, _BETWEEN_WORDS.sub("", text))
    text = unicodedata.normalize("NFKC", text).translate(_DOTS)
    if text.isprintable():
        return text
    return "".join(
        " " if unicodedata.category(c) == "Cc" else c
        for c in text
        if unicodedata.category(c) != "Cf"
    )


def _decode_word(match: re.Match[str]) -> str:
    charset, encoding, text = match.groups()
    if encoding in "Bb":
        data = re.sub(r"[^A-Za-z0-9+/]", "", text)
        data = data[: len(data) - (len(data) % 4 == 1)]  # a dangling sixth of a byte
        raw = base64.b64decode(data + "=" * (-len(data) % 4))
    else:
        raw = binascii.a2b_qp(text.encode(), header=True)
    try:
        return raw.decode(charset.partition("*")[0], "replace")  # RFC 2231: charset*lang
    except (LookupError, ValueError):  # unknown charset, or one that cannot decode
        return raw.decode("utf-8", "replace")
