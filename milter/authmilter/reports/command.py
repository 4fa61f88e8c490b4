"""``authmilter report``: the config turned into a :class:`~authmilter.reports.runner.ReportRun`.

Exit status: 0 done; 75 (EX_TEMPFAIL) when some report must be retried (relay down, DNS
temperror); 78 (EX_CONFIG) for a config that cannot be used or a history database that
cannot be reached or fails.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from authmilter import compose
from authmilter.errors import ConfigError, UsageError
from authmilter.psl import PublicSuffixList
from authmilter.reports.relay import Relay
from authmilter.reports.runner import Outcome, ReportRun, exit_code, previous_day
from authmilter.reports.sqlstore import StoreError
from authmilter.reports.store import open_store


@dataclass(frozen=True, slots=True)
class ReportOptions:
    """The command line of ``authmilter report``."""

    config: str | None
    begin: int | None = None
    end: int | None = None
    dry_run: bool = False
    output: str | None = None
    migrate: bool = False
    nameservers: Sequence[str] = ()
    zones: Sequence[str] = ()


@dataclass(frozen=True, slots=True)
class ReportResult:
    """What the command did: the schema version after ``--migrate``, or the outcomes."""

    exit_code: int
    outcomes: tuple[Outcome, ...] = ()
    schema_version: int = 0


def period(opts: ReportOptions, now: float) -> tuple[int, int]:
    """``--begin``/``--end`` (both or neither), else the previous full UTC day."""
    if (opts.begin is None) != (opts.end is None):
        raise UsageError("authmilter report: give both --begin and --end, or neither")
    if opts.begin is None or opts.end is None:
        return previous_day(now)
    if opts.begin >= opts.end:
        raise UsageError("authmilter report: --begin must be before --end")
    return opts.begin, opts.end


def run_report(opts: ReportOptions) -> ReportResult:
    """Load the config, open the store, and report (or only migrate)."""
    begin, end = period(opts, time.time())
    cfg = compose.load_config(opts.config)
    where = cfg.path or "<defaults>"
    if not cfg.reports.history:
        raise ConfigError.at(where, "reports.history", "empty: no history is recorded")
    config_dir = Path(cfg.path).parent if cfg.path and not cfg.path.startswith("<") else Path()
    relay = None if opts.dry_run else Relay.from_config(cfg.reports, config_dir)
    psl = None
    if cfg.dmarc.org_domain == "psl":
        psl = PublicSuffixList.load(cfg.dmarc.psl_file)
    store = open_store(cfg.reports.history, host=cfg.milter.effective_authserv_id())
    try:
        version = store.migrate()
        if opts.migrate:
            return ReportResult(0, schema_version=version)
        resolver = compose.make_resolver(cfg, zones=opts.zones, nameservers=opts.nameservers)
        run = ReportRun(cfg, store, resolver, relay, psl=psl)
        output = Path(opts.output) if opts.output else None
        outcomes = run.run(begin, end, dry_run=opts.dry_run, output=output)
        return ReportResult(exit_code(outcomes), tuple(outcomes))
    except StoreError as exc:
        raise ConfigError(f"{where}: reports.history: {exc}") from None
    finally:
        store.close()
