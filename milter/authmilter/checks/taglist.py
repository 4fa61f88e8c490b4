"""DKIM tag=value lists (RFC 6376 3.2) and their base64 values, shared by DKIM and ARC.

:func:`parse_tag_list` gives exactly what ``dkim.util.parse_tag_value`` gives (the same
dict, the same exceptions: ``InvalidTagSpec``, ``DuplicateTag``) at a fraction of its cost
(no regular expression per tag); tests/checks/test_taglist.py holds it to dkimpy's.
"""

from __future__ import annotations

import binascii
import re

from dkim.util import DuplicateTag, InvalidTagSpec

_BASE64 = re.compile(rb"[\s0-9A-Za-z+/]+[\s=]*\Z")
_WHITESPACE = b" \t\n\r\x0b\x0c"  # what ``\s`` matches in a bytes pattern, and bytes.strip()


def parse_tag_list(tag_list: bytes) -> dict[bytes, bytes]:
    """The tags of a tag list (folding already unfolded), as dkimpy parses them."""
    tags: dict[bytes, bytes] = {}
    specs = tag_list.strip().split(b";")
    if not specs[-1]:  # a trailing ";" is valid
        specs.pop()
    for spec in specs:
        name, eq, value = spec.partition(b"=")
        if not eq:
            raise InvalidTagSpec(spec)
        name = name.strip()
        if not name[:1].isalpha():  # bytes.isalpha: ASCII letters only, as [a-zA-Z]
            raise InvalidTagSpec(spec)
        if name in tags:
            raise DuplicateTag(name)
        tags[name] = value.strip()
    return tags


def is_base64(value: bytes) -> bool:
    """A b= / bh= value is base64 (folding white space allowed) of a whole number of quanta."""
    return bool(_BASE64.match(value)) and len(value.translate(None, _WHITESPACE)) % 4 == 0


def decode_base64(value: bytes) -> bytes:
    """A b= / bh= value decoded (checked by :func:`is_base64`); b"" when it does not decode."""
    try:
        return binascii.a2b_base64(value.translate(None, _WHITESPACE))
    except binascii.Error:
        return b""
