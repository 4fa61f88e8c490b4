"""Configuration: a frozen dataclass tree loaded from TOML and validated at load.

Every section is a dataclass below; its fields are the keys, their types and defaults are
the schema, and ``metadata["check"]`` holds an extra validator. Unknown keys, wrong types
and bad values are :class:`ConfigError` naming the file, the dotted key and the problem
(with a "did you mean" hint for a misspelt key).
"""

from __future__ import annotations

import difflib
import functools
import ipaddress
import os
import re
import socket
import tomllib
import types
import typing
from collections.abc import Callable
from dataclasses import MISSING, Field, dataclass, field, fields, is_dataclass
from pathlib import Path
from typing import Any

from authmilter.errors import ConfigError
from authmilter.files import read_text

DEFAULT_PATH = "/etc/authmilter/authmilter.toml"

Check = Callable[[Any], str | None]  # returns a problem description or None


def _check(fn: Check) -> dict[str, Check]:
    return {"check": fn}


def _one_of(*choices: str) -> dict[str, Check]:
    def check(value: Any) -> str | None:
        return None if value in choices else f"must be one of {', '.join(map(repr, choices))}"

    return _check(check)


def _positive(value: Any) -> str | None:
    return None if value > 0 else "must be greater than 0"


def _non_negative(value: Any) -> str | None:
    return None if value >= 0 else "must not be negative"


def _cidrs(values: Any) -> str | None:
    for v in values:
        try:
            ipaddress.ip_network(v, strict=False)
        except ValueError:
            return f"{v!r} is not an address or CIDR network"
    return None


def _domain_names(values: Any) -> str | None:
    from authmilter.idn import normalise_domain  # noqa: PLC0415

    for v in values:
        if not isinstance(v, str) or normalise_domain(v.rstrip(".")) is None:
            return f"{v!r} is not a domain name"
    return None


def _nameservers(values: Any) -> str | None:
    from authmilter.dnsresolver import parse_nameserver  # noqa: PLC0415 (avoid import cycle)

    for v in values:
        try:
            parse_nameserver(v)
        except ValueError as exc:
            return str(exc)
    return None


def _socket_spec(value: Any) -> str | None:
    kind, sep, rest = value.partition(":")
    if not sep or kind not in ("unix", "local", "inet", "inet6", "fd") or not rest:
        return "must look like unix:/path, inet:PORT@HOST, inet6:PORT@HOST or fd:N"
    if kind == "fd" and not rest.isdigit():
        return "fd: needs a file descriptor number"
    if kind in ("inet", "inet6"):
        port = rest.partition("@")[0]
        if not port.isdigit() or not 0 < int(port) < 65536:
            return f"bad port {port!r}"
    return None


def _signature_cap(value: Any) -> str | None:
    # each signature may cost a key lookup (dns.timeout): keep the worst case in the MTA's budget
    return None if 1 <= value <= 20 else "must be between 1 and 20"


MAX_WORKERS = 64


def _workers(value: Any) -> str | None:
    if isinstance(value, str):
        return None if value == "auto" else 'must be "auto" or a number from 1 to 64'
    return None if 1 <= value <= MAX_WORKERS else 'must be "auto" or a number from 1 to 64'


def usable_cpus() -> int:
    """The CPUs this process may run on (its affinity mask; the cgroup's cpuset included)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # not Linux
        return max(1, os.cpu_count() or 1)


def resolve_workers(value: int | str) -> int:
    """``milter.workers`` as a number of processes: "auto" is one per usable CPU (at most 64)."""
    if value == "auto":
        return min(usable_cpus(), MAX_WORKERS)
    return int(value)


def _umask(value: Any) -> str | None:
    try:
        mask = int(value, 8)
    except ValueError:
        return 'must be an octal string such as "0007"'
    return None if 0 <= mask <= 0o777 else "must be between 0000 and 0777"


def _facility(value: Any) -> str | None:
    import logging.handlers  # noqa: PLC0415

    names = logging.handlers.SysLogHandler.facility_names
    return None if value in names else f"unknown syslog facility {value!r} (e.g. 'mail', 'local0')"


def _ar_token(value: Any) -> str | None:
    if value and not all(c.isalnum() or c in "-._" for c in value):
        return "may only contain letters, digits, '-', '.' and '_'"
    return None


def _canonicalization(value: Any) -> str | None:
    parts = value.split("/")
    if len(parts) > 2 or any(p not in ("relaxed", "simple") for p in parts):
        return "must be header/body, each 'relaxed' or 'simple', e.g. \"relaxed/relaxed\""
    return None


def _field_name(value: Any) -> str | None:
    # RFC 5322 field-name: printable ASCII but ":"
    if value and all(33 <= ord(c) <= 126 and c != ":" for c in value):
        return None
    return "must be a header field name (printable ASCII, no space or ':')"


def _listen(value: Any) -> str | None:
    if not value:
        return None
    from authmilter.metrics import parse_listen  # noqa: PLC0415 (imports nothing heavy)

    try:
        parse_listen(value)
    except ValueError as exc:
        return str(exc)
    return None


@functools.cache
def host_name() -> str:
    """This host's fully qualified name, the default authserv-id."""
    return socket.getfqdn() or "localhost"


@dataclass(frozen=True, slots=True)
class MilterConfig:
    """[milter]: the socket and the daemon."""

    socket: str = field(
        default="unix:/var/spool/postfix/authmilter/authmilter.sock", metadata=_check(_socket_spec)
    )
    authserv_id: str = field(default="", metadata=_check(_ar_token))  # "" = host name
    user: str = ""  # drop privileges to this user after opening the socket ("" = stay)
    group: str = ""  # and this group ("" = the user's primary group)
    umask: str = field(default="0007", metadata=_check(_umask))
    timeout: int = field(default=600, metadata=_check(_positive))  # libmilter I/O timeout, s
    # processes sharing the socket: a number, or "auto" (one per usable CPU)
    workers: int | str = field(default="auto", metadata=_check(_workers))
    # live sessions per process; the next connection gets 451 4.3.2 at CONNECT
    max_sessions: int = field(default=1000, metadata=_check(_positive))
    on_error: str = field(default="tempfail", metadata=_one_of("tempfail", "accept"))
    log_level: str = field(default="info", metadata=_one_of("debug", "info", "warning", "error"))
    log_target: str = field(default="stderr", metadata=_one_of("stderr", "syslog"))
    syslog_facility: str = field(default="mail", metadata=_check(_facility))

    def effective_authserv_id(self) -> str:
        """The configured authserv-id, or this host's name (looked up once per process)."""
        return self.authserv_id or host_name()

    def worker_count(self) -> int:
        """The number of worker processes ``workers`` asks for (resolves "auto")."""
        return resolve_workers(self.workers)


@dataclass(frozen=True, slots=True)
class DnsConfig:
    """[dns]: the shared resolver."""

    nameservers: tuple[str, ...] = field(default=(), metadata=_check(_nameservers))
    timeout: float = field(default=5.0, metadata=_check(_positive))  # per query, seconds
    cache_size: int = field(default=20000, metadata=_check(_non_negative))  # entries; 0 = off
    cache_bytes: int = field(default=64 * 1024 * 1024, metadata=_check(_non_negative))  # 0 = off
    # seconds a timed-out lookup, and name servers that answer nothing, are remembered as
    # failing (the next lookups are temperrors at once instead of waiting again); 0 = off
    failure_ttl: float = field(default=10.0, metadata=_check(_non_negative))


@dataclass(frozen=True, slots=True)
class TrustConfig:
    """[trust]: who is "us" (signed, not checked as inbound)."""

    internal_hosts: tuple[str, ...] = field(
        default=("127.0.0.0/8", "::1/128"), metadata=_check(_cidrs)
    )
    authenticated: bool = True  # SASL-authenticated clients ({auth_authen}) are internal
    daemon_names: tuple[str, ...] = ()  # {daemon_name} values treated as internal
    # {daemon_name} values of local submission (sendmail/pickup through non_smtpd_milters)
    local_daemon_names: tuple[str, ...] = ()
    local_submission: str = field(
        default="login-map", metadata=_one_of("login-map", "sign", "check")
    )
    # Authentication-Results on outbound mail: none, auth=pass alone, or with smtp.auth=<login>
    auth_results: str = field(default="none", metadata=_one_of("none", "anonymous", "full"))

    def networks(self) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
        """The parsed internal networks."""
        return tuple(ipaddress.ip_network(n, strict=False) for n in self.internal_hosts)


@dataclass(frozen=True, slots=True)
class SpfConfig:
    """[spf]: RFC 7208 at MAIL FROM."""

    enabled: bool = True
    helo: bool = False  # also check the HELO identity when MAIL FROM is not null
    time_budget: float = field(default=8.0, metadata=_check(_positive))  # per check, seconds
    reject_fail_at_rcpt: bool = False  # 550 5.7.23 at RCPT for fail (policyd-spf style)
    reject_fail_unless_dkim: bool = False  # 550 5.7.23 at end of data unless aligned DKIM passes
    received_spf_header: bool = False


@dataclass(frozen=True, slots=True)
class IprevConfig:
    """[iprev]: forward-confirmed reverse DNS of the client (RFC 8601 section 3)."""

    enabled: bool = True  # report iprev= in Authentication-Results and the log line
    reject_fail: bool = False  # 550 5.7.25 at RCPT TO for iprev=fail (untrusted clients only)


# Caps on what one DKIM signature may make us do before its b= is checked (anyone with a
# key in his own DNS and a correct bh= gets that far). A refused signature is "policy".
#
# h= entries: signers list 5 to 40 names (opendkim's and Gmail's defaults, doubled by
# oversigning); 256 is several times that. The cost is linear, the cap keeps it small.
MAX_SIGNED_FIELDS = 256
# Header fields in the message: direct mail has 10 to 40, mail relayed through lists and
# forwarders rarely more than 200 (Postfix's hopcount_limit stops at 50 Received fields,
# RFC 8617 at 50 ARC sets of 3). Postfix limits each field (header_size_limit, 100 KB) but
# not their number, and opendkim has no such cap; 1000 bounds the per-field work by far
# more than any real message needs.
MAX_HEADER_FIELDS = 1000


@dataclass(frozen=True, slots=True)
class DkimConfig:
    """[dkim]: verification."""

    verify: bool = True
    max_signatures: int = field(default=5, metadata=_check(_signature_cap))
    min_key_bits: int = field(default=1024, metadata=_check(_positive))
    max_body_bytes: int = field(default=10 * 1024 * 1024, metadata=_check(_positive))
    max_signed_fields: int = field(default=MAX_SIGNED_FIELDS, metadata=_check(_positive))
    max_header_fields: int = field(default=MAX_HEADER_FIELDS, metadata=_check(_positive))


@dataclass(frozen=True, slots=True)
class DmarcConfig:
    """[dmarc]: RFC 9989 evaluation and enforcement."""

    enabled: bool = True
    org_domain: str = field(default="treewalk", metadata=_one_of("treewalk", "psl"))
    psl_file: str = "/usr/share/publicsuffix/public_suffix_list.dat"
    reject: bool = True  # honour p=reject
    quarantine: str = field(default="hold", metadata=_one_of("hold", "header", "none"))
    quarantine_header: str = "X-Authmilter-Quarantine"  # used when quarantine = "header"
    reject_text: str = "DMARC policy of {domain} rejects this message"
    tempfail_on_temperror: bool = True  # a verdict that depends on DNS trouble is 451
    multiple_from: str = field(default="reject", metadata=_one_of("reject", "strictest"))
    missing_from: str = field(default="reject", metadata=_one_of("reject", "accept"))
    unparseable_from: str = field(default="reject", metadata=_one_of("reject", "accept"))


@dataclass(frozen=True, slots=True)
class FromConfig:
    """[from]: what the From field shows its reader besides the address DMARC checks."""

    display_name_check: str = field(default="flag", metadata=_one_of("off", "flag", "reject"))
    flag_header: str = field(default="X-Authmilter-From-Warning", metadata=_check(_field_name))


@dataclass(frozen=True, slots=True)
class KeySpec:
    """[[signing.keys]]: one signing key in TOML form (the same data as a KeyTable line)."""

    domain: str
    selector: str
    key_file: str
    signers: tuple[str, ...] = ()  # SigningTable patterns; empty = "*@domain"


@dataclass(frozen=True, slots=True)
class SigningConfig:
    """[signing]: outbound DKIM."""

    enabled: bool = True
    key_table: str = ""  # opendkim KeyTable file
    signing_table: str = ""  # opendkim SigningTable file ("refile:" prefix allowed)
    keys: tuple[KeySpec, ...] = ()
    canonicalization: str = field(default="relaxed/relaxed", metadata=_check(_canonicalization))
    headers: tuple[str, ...] = ()  # empty = the built-in opendkim-like list
    oversign_headers: tuple[str, ...] = ("From",)
    expire: int = field(default=0, metadata=_check(_non_negative))  # x= after N s; 0 = none
    subdomains: bool = False  # sign for subdomains of a table domain
    require_safe_keys: bool = True  # refuse keys readable by group/other (0640 root:group ok)
    # a key signs only while its DNS record is published and matches it (safe rotation)
    require_published_key: bool = True
    publish_check_interval: float = field(default=3600.0, metadata=_check(_positive))  # s
    sender_login_map: str = ""  # smtpd_sender_login_maps-style file; "" = off


@dataclass(frozen=True, slots=True)
class MetricsConfig:
    """[metrics]: the Prometheus endpoint."""

    # IP:PORT or [IPv6]:PORT of http://.../metrics; "" = no metrics. Read at start only.
    listen: str = field(default="127.0.0.1:9431", metadata=_check(_listen))


def _history_dsn(value: Any) -> str | None:
    if value == "" or value.startswith(("sqlite:///", "postgresql://", "postgres://")):
        return None
    return 'must be "", "sqlite:///PATH" or "postgresql://..."'


def _relay(value: Any) -> str | None:
    if value.startswith(("smtp://", "smtp+starttls://", "smtps://")):
        return None
    return 'must be "smtp://HOST:PORT", "smtp+starttls://HOST:PORT" or "smtps://HOST:PORT"'


@dataclass(frozen=True, slots=True)
class ReportsConfig:
    """[reports]: the DMARC history store, aggregate (RFC 9990) and failure (RFC 9991) reports."""

    # where each inbound message's DMARC evaluation is recorded; "" = not recorded
    history: str = field(
        default="sqlite:///var/lib/authmilter/history.db", metadata=_check(_history_dsn)
    )
    org_name: str = ""  # report_metadata org_name; "" = the authserv-id
    email: str = ""  # report sender and From of report messages; "" = postmaster@authserv-id
    extra_contact_info: str = ""
    # where reports are sent: smtp://HOST:PORT, smtp+starttls://HOST:PORT, smtps://HOST:PORT
    relay: str = field(default="smtp://127.0.0.1:25", metadata=_check(_relay))
    relay_user: str = ""  # SMTP AUTH user ("" = no AUTH)
    relay_password_file: str = ""  # file holding the SMTP AUTH password (never logged)
    keep_days: int = field(default=31, metadata=_check(_positive))  # history retention
    exclude_domains: tuple[str, ...] = ()  # never reported on (nor recorded)
    failure_reports: bool = False  # RFC 9991 failure reports for ruf= with fo= asking
    failure_rate: int = field(default=10, metadata=_check(_non_negative))  # per domain per hour
    failure_redact: str = field(default="headers", metadata=_one_of("headers", "full"))
    queue_size: int = field(default=10000, metadata=_check(_positive))  # rows waiting to be written


@dataclass(frozen=True, slots=True)
class ArcConfig:
    """[arc]: RFC 8617 verification, trusted sealers, sealing."""

    verify: bool = True  # arc= in Authentication-Results
    # sealers (d= of the newest ARC-Seal) whose vouching for DMARC may lift a reject/quarantine
    trusted_sealers: tuple[str, ...] = field(default=(), metadata=_check(_domain_names))
    seal: bool = False
    domain: str = ""  # d= of our seals
    selector: str = ""  # s= of our seals
    key: str = ""  # the sealing key file (the signing keys' permission rules apply)
    signed_headers: tuple[str, ...] = ()  # ARC-Message-Signature h=; empty = a built-in list
    seal_daemon_names: tuple[str, ...] = ()  # empty = seal every accepted message

    def trusted_sealer_names(self) -> frozenset[str]:
        """``trusted_sealers`` as lower-case A-labels without a final dot (checked at load)."""
        from authmilter.idn import normalise_domain  # noqa: PLC0415

        return frozenset(n for d in self.trusted_sealers if (n := normalise_domain(d.rstrip("."))))


@dataclass(frozen=True, slots=True)
class Config:
    """The whole configuration."""

    milter: MilterConfig = field(default_factory=MilterConfig)
    dns: DnsConfig = field(default_factory=DnsConfig)
    trust: TrustConfig = field(default_factory=TrustConfig)
    spf: SpfConfig = field(default_factory=SpfConfig)
    iprev: IprevConfig = field(default_factory=IprevConfig)
    dkim: DkimConfig = field(default_factory=DkimConfig)
    dmarc: DmarcConfig = field(default_factory=DmarcConfig)
    from_: FromConfig = field(default_factory=FromConfig, metadata={"key": "from"})
    signing: SigningConfig = field(default_factory=SigningConfig)
    metrics: MetricsConfig = field(default_factory=MetricsConfig)
    reports: ReportsConfig = field(default_factory=ReportsConfig)
    arc: ArcConfig = field(default_factory=ArcConfig)
    path: str = field(default="", metadata={"internal": True})  # where it was loaded from


def load(path: str | Path) -> Config:
    """Read and validate a config file."""
    path = str(path)
    try:
        data = tomllib.loads(read_text(path, "config file"))
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {_toml_problem(exc)}") from None
    return from_dict(data, path)


# tomllib's messages that quote nothing from the file. The others name a key or show a
# character of it: a config path mistyped as a secret file must not print any of that.
_TOML_MESSAGES = frozenset(
    {
        "Cannot overwrite a value",
        "Escaped character is not a Unicode scalar value",
        "Expected '=' after a key in a key/value pair",
        "Expected ']' at the end of a table declaration",
        "Expected ']]' at the end of an array declaration",
        "Expected newline or end of document after a statement",
        "Invalid date or datetime",
        "Invalid hex value",
        "Invalid initial character for a key part",
        "Invalid statement",
        "Invalid value",
        "Unclosed array",
        "Unclosed inline table",
        "Unescaped '\\' in a string",
        "Unterminated string",
    }
)
_TOML_AT = re.compile(r"(.*) \((at line \d+, column \d+|at end of document)\)", re.DOTALL)


def _toml_problem(exc: tomllib.TOMLDecodeError) -> str:
    """What is wrong and where (line and column), without the file's content."""
    match = _TOML_AT.fullmatch(str(exc))
    if match is None:
        return "syntax error"
    message, where = match.groups()
    return f"{message if message in _TOML_MESSAGES else 'syntax error'} ({where})"


def from_dict(data: dict[str, Any], path: str = "<config>") -> Config:
    """Validate a parsed TOML document."""
    cfg = _build(Config, data, path, "")
    return _replace_path(cfg, path)


def _replace_path(cfg: Config, path: str) -> Config:
    import dataclasses  # noqa: PLC0415

    return dataclasses.replace(cfg, path=path)


def _build(cls: type[Any], data: Any, path: str, prefix: str) -> Any:
    where = prefix.rstrip(".") or "(top level)"
    if not isinstance(data, dict):
        raise ConfigError.at(path, where, f"must be a table, not {_tname(data)}")
    hints = typing.get_type_hints(cls)
    known = {key_name(f): f for f in fields(cls) if not f.metadata.get("internal")}
    unknown = [k for k in data if k not in known]
    if unknown:
        key = unknown[0]
        hint = difflib.get_close_matches(key, known, n=1)
        extra = f" (did you mean {hint[0]!r}?)" if hint else ""
        raise ConfigError.at(path, prefix + key, f"unknown key{extra}")
    values: dict[str, Any] = {}
    for name, f in known.items():
        key = prefix + name
        if name not in data:
            if f.default is MISSING and f.default_factory is MISSING:
                raise ConfigError.at(path, key, "is required")
            continue
        value = _convert(hints[f.name], data[name], path, key)
        check = f.metadata.get("check")
        problem = check(value) if check else None
        if problem:
            raise ConfigError.at(path, key, problem)
        values[f.name] = value
    return cls(**values)


def key_name(f: Field[Any]) -> str:
    """The TOML key of a config field (``from_`` is written ``from``)."""
    name: str = f.metadata.get("key", f.name)
    return name


def _convert(tp: Any, value: Any, path: str, key: str) -> Any:
    origin = typing.get_origin(tp)
    if isinstance(tp, type) and is_dataclass(tp):
        return _build(tp, value, path, key + ".")
    if origin is tuple:
        (item_tp, _ellipsis) = typing.get_args(tp)
        if not isinstance(value, list):
            raise ConfigError.at(path, key, f"must be a list, not {_tname(value)}")
        return tuple(_convert(item_tp, v, path, f"{key}[{i}]") for i, v in enumerate(value))
    if origin in (types.UnionType, typing.Union):  # of plain types, e.g. int | str
        options = typing.get_args(tp)
        for option in options:
            if isinstance(value, option) and not (option is int and isinstance(value, bool)):
                return value
        wanted = " or ".join(_tname_of(o) for o in options)
        raise ConfigError.at(path, key, f"must be {wanted}, not {_tname(value)}")
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError.at(path, key, f"must be a number, not {_tname(value)}")
        return float(value)
    if not isinstance(value, tp) or (tp is int and isinstance(value, bool)):
        raise ConfigError.at(path, key, f"must be {_tname_of(tp)}, not {_tname(value)}")
    return value


def _tname(value: Any) -> str:
    return {
        bool: "a boolean",
        int: "an integer",
        float: "a number",
        str: "a string",
        list: "a list",
        dict: "a table",
    }.get(type(value), type(value).__name__)


def _tname_of(tp: Any) -> str:
    return {bool: "true or false", int: "an integer", str: "a string"}.get(tp, str(tp))
