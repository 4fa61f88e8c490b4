"""logline.safe: the fast path for clean values gives what the character loop gives."""

from __future__ import annotations

import random

import pytest

from authmilter.logline import MAX_VALUE, safe


def slow(text: str, limit: int = MAX_VALUE) -> str:
    return "".join(c if c.isprintable() and c not in " =" else "?" for c in text[:limit])


@pytest.mark.parametrize(
    "text",
    ["", "example.com", "a b", "d=x", "tab\there", "nl\nx", "\u2028", "é.example", "x" * 500],
)
def test_known_values(text: str) -> None:
    assert safe(text) == slow(text)
    assert safe(text, 3) == slow(text, 3)


def test_random_values() -> None:
    rnd = random.Random(5)
    alphabet = "ab.-=@ \t\r\n\x00\x7f\u00a0\u2028\u00e9\U0001f600[]()<>"
    for _ in range(3000):
        text = "".join(rnd.choice(alphabet) for _ in range(rnd.randrange(12)))
        assert safe(text) == slow(text), repr(text)
        assert safe(text, 4) == slow(text, 4), repr(text)
