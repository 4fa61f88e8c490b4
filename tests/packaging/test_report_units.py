"""Static checks of the DMARC report packaging: the timer and its service, the state
directory, python3-psycopg as a Recommends, the man page (fast, no root, no build)."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from authmilter.config import ReportsConfig
from tests.packaging.test_debian_files import (
    DEBIAN,
    DOCS,
    REPO,
    control_field,
    relations,
    unit_directives,
)

SERVICE = DEBIAN / "authmilter.authmilter-report.service"
TIMER = DEBIAN / "authmilter.authmilter-report.timer"


def test_timer_is_daily_randomised_persistent_and_enabled() -> None:
    timer = unit_directives(TIMER.read_text())
    (calendar,) = timer["Timer.OnCalendar"]
    assert calendar.endswith(" UTC") and calendar.startswith("*-*-* ")  # once a UTC day
    assert timer["Timer.RandomizedDelaySec"] and timer["Timer.RandomizedDelaySec"] != ["0"]
    assert timer["Timer.Persistent"] == ["true"]
    assert timer["Install.WantedBy"] == ["timers.target"]


def test_report_service_is_a_oneshot_as_authmilter() -> None:
    service = unit_directives(SERVICE.read_text())
    assert service["Service.Type"] == ["oneshot"]
    assert service["Service.User"] == ["authmilter"]
    assert service["Service.Group"] == ["authmilter"]
    (exec_start,) = service["Service.ExecStart"]
    assert exec_start.split()[:2] == ["/usr/bin/authmilter", "report"]
    assert "-c /etc/authmilter/authmilter.toml" in exec_start
    assert service["Service.SuccessExitStatus"] == ["75"]  # retry next run: not a failure
    assert service["Service.StateDirectory"] == ["authmilter"]
    assert service["Service.NoNewPrivileges"] == ["yes"]
    assert service["Service.ProtectSystem"] == ["strict"]
    # no [Install]: the timer starts it, never the package installation
    assert not [k for k in service if k.startswith("Install.")]


def test_daemon_unit_can_write_the_state_directory() -> None:
    unit = unit_directives((DEBIAN / "authmilter.service").read_text())
    assert unit["Service.StateDirectory"] == ["authmilter"]
    assert unit["Service.StateDirectoryMode"] == ["0750"]
    assert unit["Service.ProtectSystem"] == ["strict"]  # StateDirectory= is the way out


def test_default_history_lives_in_the_state_directory() -> None:
    assert ReportsConfig().history == "sqlite:///var/lib/authmilter/history.db"


def test_rules_enable_the_timer_and_never_start_the_report_service() -> None:
    rules = (DEBIAN / "rules").read_text()
    lines = [line.strip() for line in rules.splitlines()]
    assert "override_dh_installsystemd:" in lines
    assert "dh_installsystemd" in lines  # the daemon, as before
    assert "dh_installsystemd --name=authmilter-report authmilter-report.timer" in lines
    # the daemon's call comes first: it must not see (and start) the report service
    assert lines.index("dh_installsystemd") < lines.index(
        "dh_installsystemd --name=authmilter-report authmilter-report.timer"
    )


def test_psycopg_is_recommended_not_required() -> None:
    control = (DEBIAN / "control").read_text()
    assert "python3-psycopg" in relations(control_field(control, 1, "Recommends"))
    assert "python3-psycopg" not in relations(control_field(control, 1, "Depends"))


def test_postinst_makes_the_state_directory_and_purge_removes_it() -> None:
    postinst = (DEBIAN / "authmilter.postinst").read_text()
    line = "install -d -o authmilter -g authmilter -m 0750 /var/lib/authmilter"
    assert line in postinst
    assert postinst.index("adduser") < postinst.index(line) < postinst.index("#DEBHELPER#")
    postrm = (DEBIAN / "authmilter.postrm").read_text()
    purge = postrm[postrm.index('"purge"') :]
    assert "/var/lib/authmilter" in purge.split("\nfi", 1)[0]


def test_man_page_documents_the_report_command_and_the_timer() -> None:
    page = (DOCS / "authmilter.8").read_text()
    assert ".B report\n" in page
    for option in ("begin", "end", "dry\\-run", "output", "json", "migrate"):
        assert f"\\-\\-{option}" in page, option
    assert "authmilter\\-report.timer" in page
    assert "/var/lib/authmilter" in page


def test_readme_debian_and_ci_check_know_the_timer() -> None:
    assert "authmilter-report.timer" in (DEBIAN / "README.Debian").read_text()
    ci = (REPO / "packaging" / "ci-check").read_text()
    assert "authmilter-report.timer" in ci and "/var/lib/authmilter" in ci


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="needs systemd-analyze")
@pytest.mark.parametrize("unit", [SERVICE, TIMER])
def test_report_units_verify(unit: Path, tmp_path: Path) -> None:
    """systemd-analyze verify: nothing but the binary that only the package installs."""
    target = tmp_path / unit.name.removeprefix("authmilter.")
    shutil.copy(unit, target)
    if unit is TIMER:
        shutil.copy(SERVICE, tmp_path / SERVICE.name.removeprefix("authmilter."))
    proc = subprocess.run(
        ["systemd-analyze", "verify", "--man=no", str(target)],
        capture_output=True,
        text=True,
        check=False,
    )
    problems = [
        line
        for line in (proc.stdout + proc.stderr).splitlines()
        if line.strip() and "/usr/bin/authmilter is not executable" not in line
    ]
    assert problems == []


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="needs systemd-analyze")
def test_report_service_exposure_is_well_under_2(tmp_path: Path) -> None:
    target = tmp_path / "authmilter-report.service"
    shutil.copy(SERVICE, target)
    proc = subprocess.run(
        ["systemd-analyze", "security", "--offline=yes", "--threshold=20", str(target)],
        capture_output=True,
        text=True,
        check=False,
    )
    match = re.search(r"Overall exposure level for \S+: ([0-9.]+)", proc.stdout)
    assert match, proc.stdout + proc.stderr
    assert float(match.group(1)) <= 1.5
