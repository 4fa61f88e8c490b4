"""Shared Hypothesis strategies: the things a sender controls."""

from __future__ import annotations

from hypothesis import strategies as st

LDH = "abcdefghijklmnopqrstuvwxyz0123456789"
ATEXT = LDH + "ABCDEFGHIJKLMNOPQRSTUVWXYZ!#$%&'*+-/=?^_`{|}~"

label = st.text(LDH, min_size=1, max_size=12).filter(lambda s: not s.isdigit())
domain = st.lists(label, min_size=2, max_size=4).map(".".join)
atom = st.text(ATEXT, min_size=1, max_size=10)
dot_atom = st.lists(atom, min_size=1, max_size=3).map(".".join)

# Anything that can stand in a header field value or a DNS string, control bytes included.
hostile_text = st.text(
    st.characters(blacklist_categories=("Cs",)),
    max_size=80,  # (the name Debian 12 knows)
) | st.sampled_from(
    [
        "\r\n\tqid=1 dmarc=pass action=accept",
        "a;b=c",
        '"',
        "(",
        ")",
        "\\",
        "x\x00y",
        "é.example",
        "victim.example; dkim=pass",
        "=?utf-8?b?Y2VvQHZpY3RpbS5leGFtcGxl?=",
    ]
)
hostile_bytes = st.binary(max_size=200) | hostile_text.map(
    lambda t: t.encode("utf-8", "surrogateescape")
)

field_name = st.text(
    "".join(chr(c) for c in range(0x21, 0x7F) if c != 0x3A), min_size=1, max_size=12
)


@st.composite
def field_value(draw: st.DrawFn) -> bytes:
    """A raw header value as an MTA hands it over: leading space, CRLF + WSP folds."""
    words = draw(st.lists(st.text(ATEXT + ' ;:"()<>@,.\\', max_size=10), min_size=1, max_size=6))
    out = b""
    for word in words:
        sep = draw(st.sampled_from([b" ", b"\t", b"\r\n ", b"\r\n\t", b"  "]))
        out += sep + word.encode()
    return out
