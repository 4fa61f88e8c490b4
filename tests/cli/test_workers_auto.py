"""``milter.workers``: "auto" (one per usable CPU) or a number; anything else is an error."""

from __future__ import annotations

import os

import pytest

from authmilter import config as config_module
from authmilter.config import MAX_WORKERS, from_dict, resolve_workers, usable_cpus
from authmilter.daemon import workers_text
from authmilter.errors import ConfigError


def test_the_default_is_auto_as_shipped() -> None:
    assert from_dict({}).milter.workers == "auto"


def test_auto_is_the_cpu_affinity_of_the_process() -> None:
    assert usable_cpus() == len(os.sched_getaffinity(0))
    assert from_dict({"milter": {"workers": "auto"}}).milter.worker_count() == usable_cpus()


def test_auto_is_capped_like_a_number(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(config_module, "usable_cpus", lambda: 512)
    assert resolve_workers("auto") == MAX_WORKERS


@pytest.mark.parametrize("value", [1, 2, 64])
def test_numbers_still_work(value: int) -> None:
    cfg = from_dict({"milter": {"workers": value}})
    assert cfg.milter.workers == value
    assert cfg.milter.worker_count() == value


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        (0, 'milter.workers: must be "auto" or a number from 1 to 64'),
        (65, 'milter.workers: must be "auto" or a number from 1 to 64'),
        ("all", 'milter.workers: must be "auto" or a number from 1 to 64'),
        ("2", 'milter.workers: must be "auto" or a number from 1 to 64'),
        (True, "milter.workers: must be an integer or a string, not a boolean"),
        (2.0, "milter.workers: must be an integer or a string, not a number"),
        ([2], "milter.workers: must be an integer or a string, not a list"),
    ],
)
def test_anything_else_is_a_clear_error(value: object, problem: str) -> None:
    with pytest.raises(ConfigError) as caught:
        from_dict({"milter": {"workers": value}}, "/etc/authmilter/authmilter.toml")
    assert str(caught.value) == f"/etc/authmilter/authmilter.toml: {problem}"


def test_the_start_line_says_how_many_and_why() -> None:
    auto = from_dict({"milter": {"workers": "auto"}})
    fixed = from_dict({"milter": {"workers": 2}})
    assert workers_text(auto, 2) == "2 workers (auto)"
    assert workers_text(auto, 1) == "1 worker (auto)"
    assert workers_text(fixed, 2) == "2 workers"
