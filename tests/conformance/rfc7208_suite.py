"""The RFC 7208 (openspf.org 2014.04) test suite, as shipped in pyspf's source release.

The YAML file is not committed: it is fetched at test time with ``pip download`` of the
pyspf sdist from PyPI and cached under ``$AUTHMILTER_TEST_CACHE`` or ``<repo>/.cache/``.
Each scenario's ``zonedata`` becomes a :class:`SuiteResolver` (a StaticResolver) with the
semantics of pyspf's own driver ``test/testspf.py``:

* ``SPF`` records are also served as ``TXT`` unless the name lists a ``TXT`` (``TXT: NONE``
  means "no TXT here, and do not copy SPF").
* ``TIMEOUT`` at a name: record types listed before it are answered, every other query
  for that name times out (``temperror=`` when nothing is listed before it).
"""

from __future__ import annotations

import hashlib
import ipaddress
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from authmilter.dnsresolver import Answer, normalise_name
from authmilter.errors import DnsTempError
from authmilter.model import Envelope
from authmilter.staticresolver import StaticResolver

PYSPF_VERSION = "2.0.14"
MEMBER = f"pyspf-{PYSPF_VERSION}/test/rfc7208-tests.yml"
YAML_SHA256 = "901f561a6e2b1c1590a40a61b1ac7601226fd7045a7aae591a4d25421358d6f9"
REPO = Path(__file__).resolve().parents[2]


class SuiteUnavailableError(Exception):
    """The suite file could not be obtained (no network to PyPI, no pip, bad download)."""


def cache_dir() -> Path:
    """Where downloads are kept between runs (gitignored ``.cache/`` by default)."""
    return Path(os.environ.get("AUTHMILTER_TEST_CACHE") or REPO / ".cache")


def suite_path() -> Path:
    """Path of the cached ``rfc7208-tests.yml``, fetching it first when needed."""
    target = cache_dir() / f"pyspf-{PYSPF_VERSION}-rfc7208-tests.yml"
    if target.is_file() and _sha256(target.read_bytes()) == YAML_SHA256:
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    data = _extract(_download_sdist(target.parent))
    if _sha256(data) != YAML_SHA256:
        raise SuiteUnavailableError(f"{MEMBER}: unexpected sha256 {_sha256(data)}")
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".rfc7208-")
    os.fchmod(fd, 0o644)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
    Path(tmp).replace(target)  # atomic: two test runs may fetch at once
    return target


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _pip_commands() -> Iterator[list[str]]:
    yield [sys.executable, "-m", "pip"]
    venv_python = REPO / ".venv" / "bin" / "python"
    if venv_python.exists():
        yield [str(venv_python), "-m", "pip"]
    for name in ("pip3", "pip"):
        found = shutil.which(name)
        if found:
            yield [found]


def _download_sdist(cache: Path) -> Path:
    sdist = cache / f"pyspf-{PYSPF_VERSION}.tar.gz"
    if sdist.is_file():
        return sdist
    errors = []
    for pip in _pip_commands():
        with tempfile.TemporaryDirectory(dir=cache) as tmp:
            cmd = [
                *pip,
                "download",
                "--no-deps",
                "--no-binary",
                ":all:",
                "--disable-pip-version-check",
                "-q",
                f"pyspf=={PYSPF_VERSION}",
                "-d",
                tmp,
            ]
            try:
                proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, check=False)
            except (OSError, subprocess.TimeoutExpired) as exc:
                errors.append(f"{' '.join(pip)}: {exc}")
                continue
            got = Path(tmp) / sdist.name
            if proc.returncode == 0 and got.is_file():
                got.replace(sdist)
                return sdist
            errors.append(f"{' '.join(pip)}: exit {proc.returncode}: {proc.stderr.strip()[-300:]}")
    raise SuiteUnavailableError("cannot download the pyspf sdist: " + "; ".join(errors))


def _extract(sdist: Path) -> bytes:
    try:
        with tarfile.open(sdist, "r:gz") as tar:
            member = tar.extractfile(MEMBER)
            if member is None:
                raise SuiteUnavailableError(f"{sdist}: {MEMBER} is not a file")
            return member.read()
    except (tarfile.TarError, KeyError, OSError) as exc:
        raise SuiteUnavailableError(f"{sdist}: cannot read {MEMBER}: {exc}") from None


# --------------------------------------------------------------------------- scenarios


class SuiteResolver(StaticResolver):
    """A StaticResolver plus per-type timeouts (``TIMEOUT`` after some records)."""

    def __init__(
        self,
        answered_before_timeout: dict[str, set[str]],
        type_timeouts: set[tuple[str, str]],
        **kw: Any,
    ) -> None:
        super().__init__(**kw)
        self._partial = answered_before_timeout
        self._type_timeouts = type_timeouts

    def query(self, name: str, rdtype: str, timeout: float | None = None) -> Answer:
        """Time out the types that pyspf's driver would time out, else answer statically."""
        key, rdtype = normalise_name(name), rdtype.upper()
        if (key in self._partial and rdtype not in self._partial[key]) or (
            key,
            rdtype,
        ) in self._type_timeouts:
            raise DnsTempError(f"{key}/{rdtype}: timed out (suite TIMEOUT)")
        return super().query(name, rdtype, timeout)


@dataclass(frozen=True)
class Case:
    """One test of the suite."""

    name: str
    scenario: str
    spec: str
    helo: str
    host: str
    mailfrom: str
    results: tuple[str, ...]
    explanation: str | None
    zonedata: dict[str, list[Any]] = field(repr=False, compare=False, hash=False)

    def envelope(self) -> Envelope:
        """The SMTP envelope of this case."""
        return Envelope(
            client_ip=ipaddress.ip_address(self.host), helo=self.helo, mail_from=self.mailfrom
        )

    def resolver(self) -> SuiteResolver:
        """A fresh resolver for this case's zone data."""
        return build_resolver(self.zonedata)


def load_cases(path: Path) -> list[Case]:
    """Every test case in the YAML file, in file order."""
    import yaml

    cases = []
    with path.open("rb") as fh:
        for scenario in yaml.safe_load_all(fh):
            if not scenario:
                continue
            zonedata = scenario.get("zonedata") or {}
            for name, t in scenario["tests"].items():
                result = t["result"]
                cases.append(
                    Case(
                        name=name,
                        scenario=scenario.get("description", ""),
                        spec=str(t.get("spec", "")),
                        helo=str(t.get("helo") or ""),
                        host=str(t["host"]),
                        mailfrom=str(t.get("mailfrom") or ""),
                        results=tuple(result) if isinstance(result, list) else (result,),
                        explanation=t.get("explanation"),
                        zonedata=zonedata,
                    )
                )
    return cases


def build_resolver(zonedata: dict[str, list[Any]]) -> SuiteResolver:
    """Zone data -> resolver, following testspf.py's ``getrdata`` and ``DNSLookup``."""
    records: dict[tuple[str, str], list[Any]] = {}
    temperror: list[str] = []
    partial: dict[str, set[str]] = {}
    type_timeouts: set[tuple[str, str]] = set()
    existing: list[str] = []
    for owner, entries in zonedata.items():
        name = normalise_name(owner)
        existing.append(name)
        served: list[tuple[str, Any]] = []
        has_txt = False
        spf_as_txt: list[Any] = []
        timed_out = False
        for entry in entries or []:
            if entry == "TIMEOUT":
                timed_out = True
                break
            ((rtype, value),) = entry.items()
            rtype = str(rtype).upper()
            if rtype in ("TXT", "SPF") and isinstance(value, str):
                value = (value,)
            if rtype == "TXT":
                has_txt = True
            elif rtype == "SPF":
                spf_as_txt.append(value)
            if value == "TIMEOUT":  # {TYPE: TIMEOUT}: only that type times out
                type_timeouts.add((name, rtype))
                continue
            if value != ("NONE",):
                served.append((rtype, value))
        if not has_txt and not timed_out:
            served.extend(("TXT", v) for v in spf_as_txt)
        for rtype, value in served:
            records.setdefault((name, rtype), []).append(_value(rtype, value))
        if timed_out:
            types = {rtype for rtype, _ in served}
            if types:
                partial[name] = types
            else:
                temperror.append(name)
    resolver = SuiteResolver(partial, type_timeouts, records=records, temperror=temperror)
    for name in existing:  # names listed with no records exist (NODATA, not NXDOMAIN)
        if not any(key[0] == name for key in records):
            resolver.add(name, "TXT")
    return resolver


def _value(rtype: str, value: Any) -> Any:
    if rtype in ("TXT", "SPF"):
        return tuple(str(s).encode("utf-8") for s in value)
    if rtype == "MX":
        pref, host = value
        return (int(pref), str(host))
    return str(value)


# --------------------------------------------------------------------------- summary


SUITE_TEST = "test_rfc7208.py::test_rfc7208_case["


class SuiteSummary:
    """pytest plugin: count the suite's outcomes and print one line at the end."""

    def __init__(self) -> None:
        self.outcomes: dict[str, str] = {}  # case name -> passed | deviation | failed | skipped

    def pytest_runtest_logreport(self, report: Any) -> None:
        """Record each case's outcome (a failure in any phase wins)."""
        if SUITE_TEST not in report.nodeid:
            return
        name = report.nodeid.split("[", 1)[1].rstrip("]")
        if report.failed:
            self.outcomes[name] = "failed"
        elif report.skipped and hasattr(report, "wasxfail"):
            self.outcomes[name] = "deviation"
        elif report.skipped:
            self.outcomes.setdefault(name, "skipped")
        elif report.when == "call" and self.outcomes.get(name) != "failed":
            self.outcomes[name] = "passed"

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        """``RFC 7208 suite: N/M passed, K known deviations: ...``."""
        if not self.outcomes:
            return
        by: dict[str, list[str]] = {}
        for name, outcome in self.outcomes.items():
            by.setdefault(outcome, []).append(name)
        total = len(self.outcomes)
        line = f"RFC 7208 suite: {len(by.get('passed', []))}/{total} passed"
        deviations = sorted(by.get("deviation", []))
        line += f", {len(deviations)} known deviations"
        if deviations:
            line += ": " + ", ".join(deviations)
        for outcome in ("failed", "skipped"):
            if by.get(outcome):
                line += f"; {len(by[outcome])} {outcome}: " + ", ".join(sorted(by[outcome]))
        terminalreporter.write_sep("-", "RFC 7208 conformance")
        terminalreporter.write_line(line)
