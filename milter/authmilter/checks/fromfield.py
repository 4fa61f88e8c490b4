"""The RFC5322.From field: find the author domain(s) the way DMARC needs them.

A small, strict RFC 5322 (+ RFC 6532 UTF-8, RFC 6854 groups) address tokenizer and parser.
It is strict on purpose: every construct where mail parsers are known to disagree (route
addresses, obsolete spacing inside an address, domain literals, unquoted ``@`` in a display
name, bare CR/LF, control characters, invalid IDNs...) makes the field UNPARSEABLE instead of
being guessed at. Encoded words (RFC 2047) are never decoded: they are only display names.

Domains come back lower-case in A-label form (``bücher.example`` -> ``xn--bcher-kva.example``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from enum import Enum

from authmilter.idn import normalise_domain
from authmilter.model import HeaderField, Transaction
from authmilter.results import FromField, FromStatus

_SPECIALS = frozenset('<>@,;:."[]\\()')
_ATOM_RUN = re.compile(r'[^<>@,;:."\[\]\\() \t]+')  # up to a special or white space
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f-\x9f]")  # C0 but TAB, DEL, C1


class FromSyntaxError(ValueError):
    """The field cannot be turned into mailboxes; the message says why."""


class _Kind(Enum):
    ATOM = "atom"
    QSTRING = "quoted-string"
    LITERAL = "domain-literal"
    SPECIAL = "special"


@dataclass(frozen=True, slots=True)
class _Token:
    kind: _Kind
    text: str
    spaced: bool  # CFWS (white space or a comment) came right before it


@dataclass(frozen=True, slots=True)
class Mailbox:
    """One parsed mailbox; ``domain`` is the A-label, lower-case form."""

    local_part: str
    domain: str
    display_name: str = ""  # raw words, never RFC 2047-decoded
    group: str = ""  # the display name of the group it is in (RFC 6854), also raw


# --------------------------------------------------------------------------- tokenizer


def _unfold(value: bytes) -> str:
    """Check the line structure (only CRLF + WSP folds), unfold, decode UTF-8 strictly."""
    lines = value.split(b"\r\n")
    for i, line in enumerate(lines):
        if b"\r" in line or b"\n" in line:
            raise FromSyntaxError("bare CR or LF in the field")
        if i > 0 and line[:1] not in (b" ", b"\t"):
            raise FromSyntaxError("line break that is not a fold")
    try:
        text = b"".join(lines).decode("utf-8")
    except UnicodeDecodeError:
        raise FromSyntaxError("not valid UTF-8") from None
    control = _CONTROL.search(text)
    if control:
        raise FromSyntaxError(f"control character U+{ord(control.group()):04X}")
    return text


def _tokenize(text: str, comments: list[str] | None = None) -> list[_Token]:
    """The field's tokens; each comment's text (outermost parentheses off) goes to ``comments``."""
    tokens: list[_Token] = []
    i, n = 0, len(text)
    spaced = False
    while i < n:
        c = text[i]
        if c in " \t":
            spaced = True
            i += 1
        elif c == "(":
            end = _skip_comment(text, i)
            if comments is not None:
                comments.append(text[i + 1 : end - 1])
            i, spaced = end, True
        elif c == '"':
            value, i = _quoted(text, i, '"')
            tokens.append(_Token(_Kind.QSTRING, value, spaced))
            spaced = False
        elif c == "[":
            value, i = _quoted(text, i, "]")
            tokens.append(_Token(_Kind.LITERAL, value, spaced))
            spaced = False
        elif c in ")]\\":
            raise FromSyntaxError(f"unexpected {c!r}")
        elif c in _SPECIALS:
            tokens.append(_Token(_Kind.SPECIAL, c, spaced))
            spaced = False
            i += 1
        else:
            atom = _ATOM_RUN.match(text, i)  # c is not special: at least c
            end = atom.end() if atom else i + 1
            tokens.append(_Token(_Kind.ATOM, text[i:end], spaced))
            i, spaced = end, False
    return tokens


def _skip_comment(text: str, i: int) -> int:
    depth = 0
    while i < len(text):
        c = text[i]
        if c == "\\":
            i += 2
            continue
        if c == "(":
            depth += 1
        elif c == ")":
            depth -= 1
            if depth == 0:
                return i + 1
        i += 1
    raise FromSyntaxError("unterminated comment")


def _quoted(text: str, i: int, close: str) -> tuple[str, int]:
    out: list[str] = []
    i += 1
    while i < len(text):
        c = text[i]
        if c == "\\":
            if i + 1 >= len(text):
                break
            out.append(text[i + 1])
            i += 2
            continue
        if c == close:
            return "".join(out), i + 1
        if close == "]" and c in "[\\":
            raise FromSyntaxError("bad domain literal")
        out.append(c)
        i += 1
    raise FromSyntaxError("unterminated quoted string" if close == '"' else "unterminated [")


# --------------------------------------------------------------------------- parser


class _Parser:
    """Recursive descent over the tokens: address-list with groups (RFC 6854)."""

    def __init__(self, tokens: list[_Token]) -> None:
        self.toks = tokens
        self.i = 0

    def peek(self, offset: int = 0) -> _Token | None:
        j = self.i + offset
        return self.toks[j] if j < len(self.toks) else None

    def is_special(self, ch: str, offset: int = 0) -> bool:
        tok = self.peek(offset)
        return tok is not None and tok.kind is _Kind.SPECIAL and tok.text == ch

    def expect(self, ch: str) -> None:
        if not self.is_special(ch):
            tok = self.peek()
            raise FromSyntaxError(f"expected {ch!r}, found {_describe(tok)}")
        self.i += 1

    def address_list(self) -> list[Mailbox]:
        if not self.toks:
            raise FromSyntaxError("empty field")
        boxes: list[Mailbox] = []
        while True:
            boxes.extend(self.address(in_group=False))
            if self.peek() is None:
                return boxes
            self.expect(",")

    def address(self, in_group: bool) -> list[Mailbox]:
        if self.is_special("<"):
            return [self.angle_addr("")]
        start = self.i
        spec = self.try_addr_spec()
        if spec is not None and self.is_special("<"):
            # "user@example.com <user@example.com>": not RFC 5322 (an unquoted "@" in a display
            # name), but common from real MUAs. Accepted only when both domains agree, so a
            # display name can never show a domain other than the one DMARC evaluates.
            box = self.angle_addr(f"{spec[0]}@{spec[1]}")
            if box.domain != spec[1]:
                raise FromSyntaxError("the display name holds an address of another domain")
            return [box]
        if spec is not None:
            return [Mailbox(*spec)]
        self.i = start
        name = self.phrase()
        if self.is_special("<"):
            return [self.angle_addr(name)]
        if self.is_special(":"):
            if in_group:
                raise FromSyntaxError("group inside a group")
            return [replace(box, group=name) for box in self.group()]
        raise FromSyntaxError(f"expected an address after {name!r}, found {_describe(self.peek())}")

    def group(self) -> list[Mailbox]:
        self.expect(":")
        boxes: list[Mailbox] = []
        if not self.is_special(";"):
            while True:
                boxes.extend(self.address(in_group=True))
                if self.is_special(";"):
                    break
                self.expect(",")
        self.expect(";")
        return boxes

    def phrase(self) -> str:
        """The words as a reader sees them: one space where CFWS was, none where none was."""
        words: list[str] = []
        while (tok := self.peek()) is not None:
            if tok.kind in (_Kind.ATOM, _Kind.QSTRING) or (
                words and tok.kind is _Kind.SPECIAL and tok.text == "."  # obs-phrase
            ):
                words.append(" " + tok.text if words and tok.spaced else tok.text)
                self.i += 1
            else:
                break
        if not words:
            raise FromSyntaxError(f"expected a mailbox, found {_describe(self.peek())}")
        return "".join(words)

    def angle_addr(self, name: str) -> Mailbox:
        self.expect("<")
        if self.is_special("@"):
            raise FromSyntaxError("route address (obsolete syntax)")
        spec = self.try_addr_spec()
        if spec is None:
            raise FromSyntaxError(f"no valid address inside <>: {_describe(self.peek())}")
        self.expect(">")
        return Mailbox(spec[0], spec[1], name)

    def try_addr_spec(self) -> tuple[str, str] | None:
        """local-part "@" domain, or None (position undefined) when it is not one here."""
        local = self.local_part()
        if local is None or not self.is_special("@"):
            return None
        self.i += 1
        return local, self.domain()

    def local_part(self) -> str | None:
        tok = self.peek()
        if tok is None:
            return None
        if tok.kind is _Kind.QSTRING:
            self.i += 1
            if self.is_special("."):
                return None  # obsolete "a".b local part: never an addr-spec here
            if self.is_special("@") and tok.text == "":
                raise FromSyntaxError("empty local part")
            return tok.text
        if tok.kind is not _Kind.ATOM:
            if tok.kind is _Kind.SPECIAL and tok.text == "@":
                raise FromSyntaxError("empty local part")
            return None
        return self.dot_atom()

    def dot_atom(self) -> str | None:
        """atom *("." atom) with nothing between the parts, or None (obsolete or malformed)."""
        parts = [self.toks[self.i].text]
        self.i += 1
        while self.is_special("."):
            dot = self.toks[self.i]
            nxt = self.peek(1)
            if nxt is None or nxt.kind is not _Kind.ATOM or dot.spaced or nxt.spaced:
                return None  # "a.@b", trailing dot, or obsolete CFWS around a dot
            parts.append(nxt.text)
            self.i += 2
        return ".".join(parts)

    def domain(self) -> str:
        tok = self.peek()
        if tok is None:
            raise FromSyntaxError("missing domain after '@'")
        if tok.kind is _Kind.LITERAL:
            raise FromSyntaxError(f"domain literal [{tok.text}] is not a domain name")
        if tok.kind is not _Kind.ATOM:
            raise FromSyntaxError(f"expected a domain after '@', found {_describe(tok)}")
        text = self.dot_atom()
        if text is None or self.is_special("."):
            raise FromSyntaxError("malformed domain (empty label, trailing dot or CFWS inside)")
        domain = normalise_domain(text)
        if domain is None:
            raise FromSyntaxError(f"invalid domain {text!r}")
        return domain


def _describe(tok: _Token | None) -> str:
    if tok is None:
        return "end of field"
    return f"{tok.kind.value} {tok.text!r}"


def parse_mailboxes(value: bytes, comments: list[str] | None = None) -> list[Mailbox]:
    """Every mailbox of one raw From value (bytes after the colon); FromSyntaxError if bad.

    The text of every comment is appended to ``comments`` when it is given.
    """
    tokens = _tokenize(_unfold(value), comments)
    return _Parser(tokens).address_list()


# --------------------------------------------------------------------------- From


def is_from(field: HeaderField) -> bool:
    """A From field, in any case, also with white space before the colon ("From ")."""
    return field.name.strip(" \t").lower() == "from"


def parse_from(tx: Transaction) -> FromField:
    """Classify the message's From field(s) and extract the author domain(s).

    Precedence: MISSING, then UNPARSEABLE (any field or mailbox that does not parse, even
    when others do), then MULTIPLE_FIELDS, then MULTIPLE_ADDRESSES (mailboxes in more than
    one domain), then OK. Several mailboxes of one domain are OK: RFC 9989 evaluates a
    message with exactly one Author Domain, and so does the policy. ``domains``
    holds every distinct domain found, in order of appearance.
    """
    fields = [h for h in tx.headers if is_from(h)]
    if not fields:
        return FromField(FromStatus.MISSING, reason="no From field")
    domains: list[str] = []
    problems: list[str] = []
    count = 0
    for n, field in enumerate(fields, 1):
        try:
            boxes = parse_mailboxes(field.value)
        except FromSyntaxError as exc:
            problems.append(f"From field {n}: {exc}" if len(fields) > 1 else str(exc))
            continue
        if not boxes:
            problems.append(f"From field {n}: group without a mailbox")
            continue
        count += len(boxes)
        for box in boxes:
            if box.domain not in domains:
                domains.append(box.domain)
    many = f"{len(fields)} From fields" if len(fields) > 1 else ""
    if problems:
        reason = "; ".join([many, *problems] if many else problems)
        return FromField(FromStatus.UNPARSEABLE, tuple(domains), reason)
    if len(fields) > 1:
        return FromField(
            FromStatus.MULTIPLE_FIELDS, tuple(domains), f"{many}: {', '.join(domains)}"
        )
    if count > 1 and len(domains) > 1:  # one domain in every mailbox: one Author Domain
        return FromField(
            FromStatus.MULTIPLE_ADDRESSES,
            tuple(domains),
            f"{count} mailboxes in From: {', '.join(domains)}",
        )
    return FromField(FromStatus.OK, tuple(domains))
