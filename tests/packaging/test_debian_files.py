"""Static checks of the Debian packaging (packaging/debian, docs/): fast, no root, no build."""

from __future__ import annotations

import dataclasses
import re
import shutil
import subprocess
import tomllib
from pathlib import Path

import pytest

from authmilter import __version__
from authmilter.config import Config, key_name

REPO = Path(__file__).resolve().parents[2]
DEBIAN = REPO / "packaging" / "debian"
DOCS = REPO / "docs"
MAIN_CF_LINES = (
    "smtpd_milters = unix:authmilter/authmilter.sock",
    "non_smtpd_milters = unix:authmilter/authmilter.sock",
    "milter_default_action = tempfail",
    "milter_protocol = 6",
)


def unit_directives(text: str) -> dict[str, list[str]]:
    """systemd unit file -> {"Section.Key": [values in order]} (keys may repeat)."""
    out: dict[str, list[str]] = {}
    section = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            section = line[1:-1]
            continue
        key, sep, value = line.partition("=")
        assert sep, f"not a key=value line: {raw!r}"
        out.setdefault(f"{section}.{key.strip()}", []).append(value.strip())
    return out


def control_field(text: str, stanza: int, name: str) -> str:
    """One field of a deb822 stanza, continuation lines joined."""
    para = [p for p in re.split(r"\n\s*\n", text.strip()) if p][stanza]
    match = re.search(rf"^{re.escape(name)}:(.*(?:\n[ \t].*)*)", para, re.MULTILINE)
    assert match, f"{name} missing from stanza {stanza}"
    return " ".join(match.group(1).split())


def relations(field: str) -> set[str]:
    """Package names of a Depends-like field (versions, arch, profiles dropped)."""
    names = set()
    for item in field.split(","):
        alt = item.strip()
        if alt:
            names.add(re.split(r"[\s(\[<]", alt, maxsplit=1)[0])
    return names


@pytest.fixture(scope="module")
def unit() -> dict[str, list[str]]:
    return unit_directives((DEBIAN / "authmilter.service").read_text())


def test_unit_parser_rejects_garbage() -> None:
    with pytest.raises(AssertionError):
        unit_directives("[Service]\nthis is not a directive\n")
    assert unit_directives("[A]\nX=1\nX=2\n") == {"A.X": ["1", "2"]}


def test_unit_runs_the_daemon_as_authmilter(unit: dict[str, list[str]]) -> None:
    assert unit["Service.User"] == ["authmilter"]
    assert unit["Service.Group"] == ["authmilter"]
    assert unit["Service.Type"] == ["exec"]
    assert unit["Service.ExecStart"] == [
        "/usr/bin/authmilter run -c /etc/authmilter/authmilter.toml"
    ]
    assert unit["Service.RuntimeDirectory"] == ["authmilter"]
    assert unit["Service.UMask"] == ["0007"]


def test_unit_reloads_with_usr1_never_hup(unit: dict[str, list[str]]) -> None:
    (reload_cmd,) = unit["Service.ExecReload"]
    assert reload_cmd.split() == ["/bin/kill", "-USR1", "$MAINPID"]
    assert "HUP" not in reload_cmd


def test_unit_is_sandboxed(unit: dict[str, list[str]]) -> None:
    for key, value in {
        "NoNewPrivileges": "yes",
        "ProtectSystem": "strict",
        "ProtectHome": "yes",
        "PrivateTmp": "yes",
        "PrivateDevices": "yes",
        "RestrictSUIDSGID": "yes",
        "CapabilityBoundingSet": "",
    }.items():
        assert unit.get(f"Service.{key}") == [value], key
    assert unit["Service.ReadWritePaths"] == ["-/var/spool/postfix/authmilter"]
    families = unit["Service.RestrictAddressFamilies"][0].split()
    assert sorted(families) == ["AF_INET", "AF_INET6", "AF_UNIX"]


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="needs systemd-analyze")
def test_unit_exposure_is_well_under_2(tmp_path: Path) -> None:
    unit_file = tmp_path / "authmilter.service"
    shutil.copy(DEBIAN / "authmilter.service", unit_file)
    proc = subprocess.run(
        ["systemd-analyze", "security", "--offline=yes", "--threshold=20", str(unit_file)],
        capture_output=True,
        text=True,
        check=False,
    )
    match = re.search(r"Overall exposure level for \S+: ([0-9.]+)", proc.stdout)
    assert match, proc.stdout + proc.stderr
    assert float(match.group(1)) <= 1.5
    assert proc.returncode == 0


def test_tmpfiles_makes_the_socket_dir_in_the_postfix_chroot() -> None:
    lines = [
        line.split()
        for line in (DEBIAN / "authmilter.tmpfiles").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert lines == [["d", "/var/spool/postfix/authmilter", "2750", "authmilter", "postfix", "-"]]


def test_binary_package_depends_on_debian_python_packages() -> None:
    control = (DEBIAN / "control").read_text()
    assert control_field(control, 1, "Architecture") == "all"
    depends = relations(control_field(control, 1, "Depends"))
    assert {
        "python3-milter",
        "python3-dkim",
        "python3-spf",
        "python3-dnspython",
        "python3-cryptography",
        "python3-nacl",
        "python3-prometheus-client",
        "publicsuffix",
        "adduser",
        "procps",
    } <= depends
    assert "virtualenv" not in control and "dh-virtualenv" not in control
    assert "python3-authres" not in depends  # the tests' A-R oracle, never the daemon's


def test_authres_is_a_test_dependency_only() -> None:
    control = (DEBIAN / "control").read_text()
    assert "python3-authres <!nocheck>" in control_field(control, 0, "Build-Depends")
    imports = [p for p in (REPO / "milter").rglob("*.py") if "import authres" in p.read_text()]
    assert imports == []


def test_build_depends_use_pybuild_with_pyproject() -> None:
    control = (DEBIAN / "control").read_text()
    build_depends = relations(control_field(control, 0, "Build-Depends"))
    assert {"debhelper-compat", "dh-python", "pybuild-plugin-pyproject", "python3-setuptools"} <= (
        build_depends
    )
    assert "debhelper-compat (= 13)" in control_field(control, 0, "Build-Depends")
    rules = (DEBIAN / "rules").read_text()
    assert "--buildsystem=pybuild" in rules
    assert "PYBUILD_SYSTEM=pyproject" in rules


def test_relations_parser() -> None:
    assert relations("a (>= 1), b [amd64], c <!nocheck>, ${misc:Depends},") == {
        "a",
        "b",
        "c",
        "${misc:Depends}",
    }


def test_changelog_version_matches_pyproject_and_package() -> None:
    first = (DEBIAN / "changelog").read_text().splitlines()[0]
    match = re.fullmatch(r"authmilter \(([^)]+)\) (\S+); urgency=\w+", first)
    assert match, first
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())
    assert match.group(1) == pyproject["project"]["version"] == __version__
    assert (DEBIAN / "source" / "format").read_text().strip() == "3.0 (native)"


@pytest.mark.parametrize("script", ["authmilter.postinst", "authmilter.postrm"])
def test_maintainer_scripts_are_valid_sh_with_one_debhelper_token(script: str) -> None:
    text = (DEBIAN / script).read_text()
    assert text.startswith("#!/bin/sh\nset -e\n")
    # The token is substituted wherever it appears, comments included.
    assert [line for line in text.splitlines() if "#DEBHELPER#" in line] == ["#DEBHELPER#"]
    subprocess.run(["sh", "-n", str(DEBIAN / script)], check=True)


def test_postinst_creates_the_user_before_the_debhelper_snippets() -> None:
    text = (DEBIAN / "authmilter.postinst").read_text()
    assert text.index("adduser --quiet --system --group") < text.index("#DEBHELPER#")
    assert "--home /nonexistent" in text
    # Never silently add postfix (or anybody) to a group.
    assert not re.search(r"adduser\s+postfix|usermod|gpasswd", text)


def test_postrm_purge_never_removes_keys_or_config_dir() -> None:
    text = (DEBIAN / "authmilter.postrm").read_text()
    removed = re.findall(r"rm -rf ([^\n]+)", text)
    assert removed == ["/var/spool/postfix/authmilter /run/authmilter /var/lib/authmilter"]
    assert "deluser" not in text


def test_install_ships_the_reference_config_as_conffile_path() -> None:
    entries = [
        line.split()
        for line in (DEBIAN / "authmilter.install").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert ["conf/authmilter.toml", "etc/authmilter/"] in entries
    assert (DEBIAN / "authmilter.dirs").read_text().split() == ["etc/authmilter/keys"]


def test_lintian_overrides_are_each_justified() -> None:
    lines = (DEBIAN / "authmilter.lintian-overrides").read_text().splitlines()
    for i, line in enumerate(lines):
        if line.startswith("authmilter:"):
            assert i > 0 and lines[i - 1].startswith("#"), f"override without comment: {line}"


@pytest.mark.parametrize(
    "doc", [DEBIAN / "README.Debian", REPO / "packaging" / "README-install.md"]
)
def test_docs_give_the_main_cf_lines(doc: Path) -> None:
    text = doc.read_text()
    for line in MAIN_CF_LINES:
        assert line in text, line


def test_man_pages_are_listed_and_name_every_command() -> None:
    assert (DEBIAN / "authmilter.manpages").read_text().split() == [
        "docs/authmilter.8",
        "docs/authmilter.toml.5",
    ]
    page = (DOCS / "authmilter.8").read_text()
    for command in ("run", "check\\-config", "test", "genkey"):
        assert f".B {command}\n" in page, command


def _config_keys() -> list[str]:
    keys = []
    for section in dataclasses.fields(Config):
        if section.metadata.get("internal"):
            continue
        section_type = type(getattr(Config(), section.name))
        keys += [f"{key_name(section)}.{f.name}" for f in dataclasses.fields(section_type)]
    return keys


def test_config_man_page_documents_every_key() -> None:
    page = (DOCS / "authmilter.toml.5").read_text().replace("\\-", "-")
    current = ""
    documented: set[str] = set()
    for line in page.splitlines():
        header = re.fullmatch(r"\.SH \[(\w+)\]", line)
        if header:
            current = header.group(1)
            continue
        if current and line.startswith((".B ", ".BR ")):
            documented.update(f"{current}.{name}" for name in re.findall(r'(\w+)(?: ")? = ', line))
            if line == f".B [[{current}.keys]]":
                documented.add(f"{current}.keys")
    keys = _config_keys()
    assert len(keys) > 30
    missing = [k for k in keys if k not in documented]
    assert not missing, f"not in docs/authmilter.toml.5: {missing}"


@pytest.mark.skipif(shutil.which("man") is None, reason="needs man-db")
@pytest.mark.parametrize("page", ["authmilter.8", "authmilter.toml.5"])
def test_man_pages_render_without_warnings(page: str) -> None:
    proc = subprocess.run(
        ["man", "--warnings", "-E", "UTF-8", "-l", "-Tutf8", "-Z", str(DOCS / page)],
        capture_output=True,
        text=True,
        check=False,
        env={"LC_ALL": "C.UTF-8", "MANROFFSEQ": "", "MANWIDTH": "80", "PATH": "/usr/bin:/bin"},
    )
    assert proc.returncode == 0
    assert proc.stderr == ""
