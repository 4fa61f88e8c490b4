"""The reference config shows every key of every section (a missing one would silently take
its default, so the value comparison in test_config.py cannot see it)."""

from __future__ import annotations

import dataclasses
import tomllib
from pathlib import Path

from authmilter.config import Config, key_name

REPO = Path(__file__).resolve().parents[2]
# keys whose value is a list of tables shown in a comment (an empty list has no TOML form)
SHOWN_AS_COMMENT = {"signing.keys"}


def test_every_key_is_written_in_the_reference_config() -> None:
    data = tomllib.loads((REPO / "conf" / "authmilter.toml").read_text(encoding="utf-8"))
    missing = []
    for section in dataclasses.fields(Config):
        if section.metadata.get("internal"):
            continue
        name = key_name(section)
        table = data.get(name, {})
        for key in dataclasses.fields(getattr(Config(), section.name)):
            dotted = f"{name}.{key_name(key)}"
            if key_name(key) not in table and dotted not in SHOWN_AS_COMMENT:
                missing.append(dotted)
    assert missing == []
