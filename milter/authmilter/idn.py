"""Domain names in A-label form: the one place that calls Python's IDNA codec.

:func:`a_label` is lenient (any label the codec can encode); :func:`normalise_domain` is
strict (the author domain of a From field: no IDNA 2003 mapping, LDH labels only).
"""

from __future__ import annotations

import unicodedata

_LDH = frozenset("abcdefghijklmnopqrstuvwxyz0123456789-")
ALT_DOTS = frozenset("\u3002\uff0e\uff61")  # IDNA2003 maps these to "." silently
_MAX_DOMAIN = 253


def a_label(name: str) -> str | None:
    """``name`` lower-cased, each non-ASCII label IDNA-encoded; None when one cannot be."""
    name = name.lower()
    if name.isascii():
        return name
    try:
        return ".".join(
            label if label.isascii() else label.encode("idna").decode("ascii")
            for label in name.split(".")
        )
    except UnicodeError:
        return None


def normalise_domain(domain: str) -> str | None:
    """Lower-case A-label form of a host name, or None when it is not a valid one.

    U-labels go through Python's IDNA codec, and are refused when the codec would *map*
    them (``ß`` -> ``ss``, NBSP -> space ...) rather than just lower-case them, so that the
    IDNA 2003 / 2008 differences can never make two parsers see two domains.
    """
    if not domain or domain.endswith(".") or len(domain) > _MAX_DOMAIN * 2:
        return None
    labels = []
    for label in domain.split("."):
        alabel = _label_to_ascii(label)
        if alabel is None:
            return None
        labels.append(alabel)
    result = ".".join(labels)
    if len(result) > _MAX_DOMAIN or labels[-1].isdigit():
        return None
    return result


def _label_to_ascii(label: str) -> str | None:
    if not label:
        return None
    if label.isascii():
        alabel = label.lower()
        if alabel.startswith("xn--"):
            try:
                ulabel = alabel.encode("ascii").decode("idna")
                if ulabel.encode("idna").decode("ascii") != alabel:
                    return None
            except UnicodeError:
                return None
    else:
        if any(c in ALT_DOTS for c in label):
            return None
        try:
            alabel = label.encode("idna").decode("ascii")
            back = alabel.encode("ascii").decode("idna")
        except UnicodeError:
            return None
        if back != unicodedata.normalize("NFC", label).lower() or not alabel.startswith("xn--"):
            return None
    if not 0 < len(alabel) <= 63 or not set(alabel) <= _LDH:
        return None
    if alabel.startswith("-") or alabel.endswith("-"):
        return None
    return alabel
