"""Config loading: the reference file is valid, and every problem names file, key and cause."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import pytest

from authmilter.config import Config, from_dict, load
from authmilter.errors import ConfigError

REPO = Path(__file__).resolve().parents[2]


def test_reference_config_is_accepted_and_shows_every_default() -> None:
    cfg = load(REPO / "conf" / "authmilter.toml")
    defaults = from_dict({}, "x")
    # every documented value equals the built-in default: the file is the reference
    sections = [f.name for f in dataclasses.fields(Config) if f.name != "path"]
    assert "metrics" in sections
    for section in sections:
        assert getattr(cfg, section) == getattr(defaults, section), section


def test_required_keys_exist_under_their_design_names() -> None:
    cfg = Config()
    assert cfg.milter.socket.startswith("unix:")
    for value in (
        cfg.milter.authserv_id,
        cfg.dns.nameservers,
        cfg.dns.timeout,
        cfg.trust.internal_hosts,
        cfg.signing.key_table,
        cfg.signing.signing_table,
        cfg.dmarc.org_domain,
        cfg.dmarc.reject,
        cfg.dmarc.quarantine,
    ):
        assert value is not None


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (
            {"milter": {"sockt": "unix:/x"}},
            "/etc/a.toml: milter.sockt: unknown key (did you mean 'socket'?)",
        ),
        ({"bogus": {}}, "/etc/a.toml: bogus: unknown key"),
        (
            {"trust": {"internal_hosts": ["10.0.0.0/33"]}},
            "/etc/a.toml: trust.internal_hosts: '10.0.0.0/33' is not an address or CIDR network",
        ),
        ({"dns": {"timeout": "5"}}, "/etc/a.toml: dns.timeout: must be a number, not a string"),
        ({"dns": {"timeout": 0}}, "/etc/a.toml: dns.timeout: must be greater than 0"),
        (
            {"dns": {"nameservers": "127.0.0.1"}},
            "/etc/a.toml: dns.nameservers: must be a list, not a string",
        ),
        (
            {"dns": {"nameservers": ["ns.example:53"]}},
            "/etc/a.toml: dns.nameservers: nameserver 'ns.example:53' is not an IP address",
        ),
        (
            {"dmarc": {"org_domain": "x"}},
            "/etc/a.toml: dmarc.org_domain: must be one of 'treewalk', 'psl'",
        ),
        (
            {"dmarc": {"reject": "yes"}},
            "/etc/a.toml: dmarc.reject: must be true or false, not a string",
        ),
        (
            {"dkim": {"max_signatures": True}},
            "/etc/a.toml: dkim.max_signatures: must be an integer, not a boolean",
        ),
        (
            {"milter": {"socket": "/tmp/x.sock"}},
            "/etc/a.toml: milter.socket: must look like unix:/path, inet:PORT@HOST, "
            "inet6:PORT@HOST or fd:N",
        ),
        (
            {"milter": {"umask": "9"}},
            '/etc/a.toml: milter.umask: must be an octal string such as "0007"',
        ),
        (
            {"milter": {"authserv_id": "mx; dkim=pass"}},
            "/etc/a.toml: milter.authserv_id: may only contain letters, digits, '-', '.' and '_'",
        ),
        (
            {"signing": {"keys": [{"domain": "a.example", "selector": "s"}]}},
            "/etc/a.toml: signing.keys[0].key_file: is required",
        ),
        (
            {"signing": {"canonicalization": "relaxed/strict"}},
            "/etc/a.toml: signing.canonicalization: must be header/body, each 'relaxed' or "
            "'simple', e.g. \"relaxed/relaxed\"",
        ),
        ({"spf": []}, "/etc/a.toml: spf: must be a table, not a list"),
        (
            {"from": {"display_name_check": "warn"}},
            "/etc/a.toml: from.display_name_check: must be one of 'off', 'flag', 'reject'",
        ),
        (
            {"from": {"flag_header": "X-Warning: yes"}},
            "/etc/a.toml: from.flag_header: must be a header field name (printable ASCII, no "
            "space or ':')",
        ),
        (
            {"from": {"display_name": "off"}},
            "/etc/a.toml: from.display_name: unknown key (did you mean 'display_name_check'?)",
        ),
        ({"from_": {}}, "/etc/a.toml: from_: unknown key (did you mean 'from'?)"),
        (
            {"trust": {"auth_results": "login"}},
            "/etc/a.toml: trust.auth_results: must be one of 'none', 'anonymous', 'full'",
        ),
        (
            {"trust": {"local_submission": "trust"}},
            "/etc/a.toml: trust.local_submission: must be one of 'login-map', 'sign', 'check'",
        ),
        (
            {"milter": {"syslog_facility": "mial"}},
            "/etc/a.toml: milter.syslog_facility: unknown syslog facility 'mial' (e.g. 'mail', "
            "'local0')",
        ),
    ],
)
def test_errors_name_file_key_and_problem(data: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError) as err:
        from_dict(data, "/etc/a.toml")
    assert str(err.value) == message
    assert err.value.exit_code == 78


def test_from_section_is_read_under_its_toml_name() -> None:
    cfg = from_dict({"from": {"display_name_check": "reject", "flag_header": "X-Spoof"}})
    assert (cfg.from_.display_name_check, cfg.from_.flag_header) == ("reject", "X-Spoof")
    assert from_dict({}).from_.display_name_check == "flag"


def test_file_errors(tmp_path: Path) -> None:
    missing = tmp_path / "nope.toml"
    with pytest.raises(ConfigError, match=r"nope.toml: config file does not exist"):
        load(missing)
    bad = tmp_path / "bad.toml"
    bad.write_text("[milter\nsocket = 1\n")
    with pytest.raises(ConfigError, match=r"bad.toml: not valid TOML"):
        load(bad)
    with pytest.raises(ConfigError, match=r"is a directory"):
        load(tmp_path)


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads everything")
def test_unreadable_file(tmp_path: Path) -> None:
    f = tmp_path / "secret.toml"
    f.write_text("")
    f.chmod(0)
    with pytest.raises(ConfigError, match="permission denied"):
        load(f)


def test_values_are_converted_and_frozen(tmp_path: Path) -> None:
    f = tmp_path / "a.toml"
    f.write_text(
        '[dns]\nnameservers = ["127.0.0.1:5300"]\ntimeout = 2\n'
        '[[signing.keys]]\ndomain = "example.com"\nselector = "s1"\n'
        'key_file = "k.pem"\nsigners = ["*@example.com"]\n'
    )
    cfg = load(f)
    assert cfg.dns.nameservers == ("127.0.0.1:5300",)
    assert cfg.dns.timeout == 2.0 and isinstance(cfg.dns.timeout, float)
    assert cfg.signing.keys[0].signers == ("*@example.com",)
    assert cfg.path == str(f)
    with pytest.raises(AttributeError):
        cfg.dns.timeout = 3.0  # type: ignore[misc]
