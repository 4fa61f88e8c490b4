"""The From tokenizer's character loops as they were before the regex runs: a test oracle.

Verbatim copies of ``_unfold``'s control-character loop and ``_tokenize``'s atom loop from
``authmilter/checks/fromfield.py`` at commit 427e2dc. The new ones must give the same
tokens and the same errors for every field (``tests/fuzz/test_fuzz_from.py``).
"""

from __future__ import annotations

from authmilter.checks.fromfield import (
    _SPECIALS,
    FromSyntaxError,
    _Kind,
    _quoted,
    _skip_comment,
    _Token,
)


def old_unfold(value: bytes) -> str:
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
    for c in text:
        if (ord(c) < 0x20 and c != "\t") or 0x7F <= ord(c) < 0xA0:
            raise FromSyntaxError(f"control character U+{ord(c):04X}")
    return text


def old_tokenize(text: str, comments: list[str] | None = None) -> list[_Token]:
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
            start = i
            while i < n and text[i] not in _SPECIALS and text[i] not in " \t":
                i += 1
            tokens.append(_Token(_Kind.ATOM, text[start:i], spaced))
            spaced = False
    return tokens
