"""Command line: ``authmilter run | check-config | test | dns-check | report | genkey``.

``main(argv)`` returns the exit status: 0 done (whatever the verdict), 2 usage error,
78 configuration error; ``dns-check`` also 1 (errors found) and 75 (DNS trouble);
``report`` also 75 (some report must be retried). Errors are one line on stderr.
"""

from __future__ import annotations

import argparse
import contextlib
import ipaddress
import json
import logging
import sys
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from authmilter import __version__
from authmilter.config import DEFAULT_PATH, load
from authmilter.decision import Decision
from authmilter.errors import AuthmilterError, UsageError
from authmilter.model import IPAddress, Transaction, parse_message
from authmilter.results import ArcResult, AuthResults

if TYPE_CHECKING:
    from authmilter.session import Session
    from authmilter.signing.dnscheck import KeyCheck

BODY_CHUNK = 65535  # Postfix's MILTER_CHUNK_SIZE: the body reaches a milter in such pieces
DEFAULT_RCPT = "postmaster"  # RCPT TO when ``test`` is given none


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> Any:  # type: ignore[override]
        raise UsageError(f"{self.prog}: {message} (see --help)")


def _parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="authmilter",
        description="SPF, DKIM, DMARC and Authentication-Results milter for Postfix and Sendmail.",
    )
    p.add_argument("--version", action="version", version=f"authmilter {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    run = sub.add_parser("run", help="run the milter in the foreground")
    run.add_argument("-c", "--config", default=DEFAULT_PATH, metavar="FILE")

    check = sub.add_parser("check-config", help="validate config, keys and tables")
    check.add_argument("-c", "--config", default=DEFAULT_PATH, metavar="FILE")
    check.add_argument(
        "--dns",
        action="store_true",
        help="also compare each signing key with its published DNS record",
    )

    test = sub.add_parser("test", help="run the whole pipeline offline on one message")
    test.add_argument(
        "-c", "--config", metavar="FILE", help="config file (default: built-in defaults)"
    )
    test.add_argument("--client-ip", metavar="IP", default=None)
    test.add_argument("--client-name", metavar="NAME", default="")
    test.add_argument("--helo", metavar="NAME", default="")
    test.add_argument("--mail-from", metavar="ADDR", required=True)
    test.add_argument("--rcpt", metavar="ADDR", action="append", default=[])
    test.add_argument("--auth-user", metavar="USER", default=None)
    test.add_argument("--daemon-name", metavar="NAME", default="")
    test.add_argument(
        "--zone",
        metavar="FILE",
        action="append",
        default=[],
        help="answer DNS from this RFC 1035 zone file (repeatable)",
    )
    test.add_argument("--nameserver", metavar="HOST[:PORT]", action="append", default=[])
    test.add_argument("--json", action="store_true", help="print one JSON object")
    test.add_argument(
        "-v", "--verbose", action="store_true", help="also print the daemon's log lines"
    )
    test.add_argument(
        "message",
        nargs="?",
        default="-",
        metavar="MESSAGE",
        help="message file, or - for standard input (default)",
    )

    dns = sub.add_parser(
        "dns-check",
        help="audit our own domains' SPF, DKIM, DMARC and MX records and this host's PTR",
    )
    dns.add_argument(
        "-c",
        "--config",
        metavar="FILE",
        default=None,
        help=f"config file (default: {DEFAULT_PATH}; when it does not exist and domains "
        "are named, the built-in defaults)",
    )
    dns.add_argument(
        "--host",
        metavar="NAME",
        default="",
        help="this host's name (HELO, PTR); default: its fully qualified name",
    )
    dns.add_argument(
        "--ip",
        metavar="IP",
        action="append",
        default=[],
        help="an outgoing address of this host (repeatable); default: the addresses of --host",
    )
    dns.add_argument(
        "--selector",
        metavar="SEL",
        action="append",
        default=[],
        help="also check this DKIM selector, without a private key (repeatable)",
    )
    dns.add_argument(
        "--zone",
        metavar="FILE",
        action="append",
        default=[],
        help="answer DNS from this RFC 1035 zone file (repeatable)",
    )
    dns.add_argument(
        "--nameserver",
        metavar="HOST[:PORT]",
        action="append",
        default=[],
        help="ask this name server instead of the configured ones (repeatable)",
    )
    dns.add_argument("--json", action="store_true", help="print one JSON object")
    dns.add_argument(
        "domains", nargs="*", metavar="DOMAIN", help="default: every domain of the signing keys"
    )

    _report_parser(sub)
    sub.add_parser(
        "genkey", help="generate a DKIM key pair (opendkim-genkey compatible)", add_help=False
    )
    return p


def _report_parser(sub: Any) -> None:
    rep = sub.add_parser(
        "report", help="build and send DMARC aggregate reports (RFC 9990), once per period"
    )
    rep.add_argument("-c", "--config", default=DEFAULT_PATH, metavar="FILE")
    rep.add_argument("--begin", type=int, metavar="EPOCH", help="period start (UTC seconds)")
    rep.add_argument("--end", type=int, metavar="EPOCH", help="period end, exclusive")
    rep.add_argument("--dry-run", action="store_true", help="build only: send and mark nothing")
    rep.add_argument(
        "--output", metavar="DIR", help="also write each report as DIR/NAME.xml.gz and .eml"
    )
    rep.add_argument("--json", action="store_true", help="print one JSON object")
    rep.add_argument("--migrate", action="store_true", help="apply the store's migrations, exit")
    rep.add_argument(
        "--nameserver",
        metavar="HOST[:PORT]",
        action="append",
        default=[],
        help="ask this name server instead of the configured ones (repeatable)",
    )
    rep.add_argument(
        "--zone",
        metavar="FILE",
        action="append",
        default=[],
        help="answer DNS from this RFC 1035 zone file (repeatable)",
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``authmilter`` command."""
    args_list = list(sys.argv[1:] if argv is None else argv)
    try:
        if args_list[:1] == ["genkey"]:
            from authmilter import genkey  # noqa: PLC0415

            return int(genkey.main(args_list[1:]))
        args = _parser().parse_args(args_list)
        if args.command is None:
            raise UsageError(
                "a command is required: run, check-config, test, dns-check, report, genkey "
                "(see --help)"
            )
        if args.command == "run":
            from authmilter import daemon  # noqa: PLC0415  (imports libmilter)

            return daemon.run(args.config)
        if args.command == "check-config":
            return _check_config(args.config, args.dns)
        if args.command == "dns-check":
            return _dns_check(args)
        if args.command == "report":
            return _report_command(args)
        return _test(args)
    except AuthmilterError as exc:
        print(f"authmilter: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130


def _check_config(path: str, dns: bool) -> int:
    from authmilter.compose import build_engine, key_owner  # noqa: PLC0415

    # Without milter.user the daemon's user is unknown here (systemd's User= decides it), so
    # a key unsafe for the user running check-config is a warning, as in ``test``.
    engine = build_engine(
        load(path),
        warn_unsafe_keys=_unsafe_key_warning("check-config", ""),
        check_published=False,  # DNS only with --dns
    )
    cfg = engine.config
    signer = engine.signer
    keys = signer.keys if signer is not None else ()
    print(
        f"{path}: OK (authserv-id {engine.authserv_id}, {len(keys)} signing key(s), "
        f"DMARC organizational domain by {cfg.dmarc.org_domain})"
    )
    if keys:
        safe = cfg.signing.require_safe_keys
        print(
            f"  keys checked for {key_owner(cfg)}"
            if safe
            else "  keys not checked for safety (signing.require_safe_keys = false)"
        )
    for key in keys:
        print(f"  key {key.selector}._domainkey.{key.domain}")
    if not dns:
        return 0
    from authmilter.headers import clean_text  # noqa: PLC0415
    from authmilter.signing.dnscheck import KeyStatus, check_published_keys  # noqa: PLC0415

    gated = engine.publication is not None  # signing.require_published_key
    problems = 0
    for check in check_published_keys(signer, engine.resolver) if signer else []:
        detail = f": {clean_text(check.detail)}" if check.detail else ""  # it quotes DNS
        print(f"  {check.record_name}: {check.status.value}{detail}{_consequence(check, gated)}")
        problems += check.status != KeyStatus.OK
    return 1 if problems else 0


def _dns_check(args: argparse.Namespace) -> int:
    """Audit the named domains (or the signing keys' domains); exit 0, 1 or 75."""
    from authmilter import compose  # noqa: PLC0415
    from authmilter.audit.run import audit, signing_domains  # noqa: PLC0415
    from authmilter.checks.dkim_key import a_label  # noqa: PLC0415
    from authmilter.config import host_name  # noqa: PLC0415

    path = args.config
    if path is None:  # the installed config; a domain may be checked without one
        path = None if args.domains and not Path(DEFAULT_PATH).exists() else DEFAULT_PATH
    cfg = compose.load_config(path)
    try:
        resolver = compose.make_resolver(cfg, zones=args.zone, nameservers=args.nameserver)
        addresses = [ipaddress.ip_address(ip) for ip in args.ip]
    except UsageError as exc:
        raise UsageError(f"authmilter dns-check: {exc}") from None
    except ValueError as exc:
        raise UsageError(f"authmilter dns-check: --ip: {exc}") from None
    engine = compose.build_engine(
        cfg, resolver, warn_unsafe_keys=_unsafe_key_warning("dns-check", "")
    )
    domains = []
    for name in args.domains or signing_domains(engine):
        domain = a_label(name.rstrip("."))
        if domain is None:
            raise UsageError(f"authmilter dns-check: {name!r} is not a domain name")
        domains.append(domain)
    if not domains:
        raise UsageError(
            "authmilter dns-check: no signing key names a domain: name the domains to check"
        )
    host = (args.host or host_name()).rstrip(".").lower()
    report = audit(engine, domains, host=host, addresses=addresses, selectors=args.selector)
    if args.json:
        print(json.dumps(report.to_json(), indent=2))
    else:
        print(report.to_text())
    return report.exit_code


def _report_command(args: argparse.Namespace) -> int:
    """``authmilter report``: the work is in :mod:`authmilter.reports.command`."""
    from authmilter.reports.command import ReportOptions, run_report  # noqa: PLC0415

    opts = ReportOptions(
        config=args.config,
        begin=args.begin,
        end=args.end,
        dry_run=args.dry_run,
        output=args.output,
        migrate=args.migrate,
        nameservers=args.nameserver,
        zones=args.zone,
    )
    with _daemon_log(verbose=False):
        result = run_report(opts)
    if args.migrate:
        print(f"history schema version {result.schema_version}")
    elif args.json:
        print(json.dumps({"reports": [o.to_json() for o in result.outcomes]}, indent=2))
    else:
        for o in result.outcomes:
            why = f": {o.reason}" if o.reason else ""
            print(f"{o.domain} {o.report_id} {o.status} ({o.messages} messages){why}")
    return result.exit_code


def _consequence(check: KeyCheck, gated: bool) -> str:
    """What the daemon does with a key in this state (signing.require_published_key)."""
    from authmilter.signing.dnscheck import KeyStatus  # noqa: PLC0415

    if check.status == KeyStatus.OK:
        return " (signs)" if gated else ""
    if not gated:
        return " (signs anyway: signing.require_published_key = false)"
    if check.status == KeyStatus.TEMPERROR:
        return " (the daemon keeps its last known state; at start it signs)"
    return " (does not sign until its record is published and matches)"


def _test(args: argparse.Namespace) -> int:
    with _daemon_log(args.verbose):
        return _test_session(args)


@contextlib.contextmanager
def _daemon_log(verbose: bool) -> Iterator[None]:
    """The daemon's log lines (and tracebacks) on stderr with -v, else nowhere; restored after."""
    logger = logging.getLogger("authmilter")
    handler: logging.Handler = logging.StreamHandler(sys.stderr)
    if not verbose:
        handler = logging.NullHandler()
    handler.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
    saved = logger.propagate, logger.level
    logger.addHandler(handler)
    logger.propagate = False
    if verbose:
        logger.setLevel(logging.INFO)
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.propagate = saved[0]
        logger.setLevel(saved[1])


def _test_session(args: argparse.Namespace) -> int:
    from authmilter import compose  # noqa: PLC0415
    from authmilter.session import Session  # noqa: PLC0415

    cfg = compose.load_config(args.config)
    try:
        resolver = compose.make_resolver(cfg, zones=args.zone, nameservers=args.nameserver)
    except UsageError as exc:
        raise UsageError(f"authmilter test: {exc}") from None
    engine = compose.build_engine(
        cfg, resolver, warn_unsafe_keys=_unsafe_key_warning("test", "; signing with it anyway")
    )
    try:
        ip = ipaddress.ip_address(args.client_ip) if args.client_ip else None
    except ValueError:
        raise UsageError(
            f"authmilter test: --client-ip: {args.client_ip!r} is not an IP address"
        ) from None
    message = parse_message(_read_message(args.message))
    session = Session(engine, "test")
    decision = run_session(
        session,
        message,
        client=(args.client_name, ip, args.daemon_name),
        helo=args.helo,
        mail_from=args.mail_from,
        rcpts=args.rcpt or [DEFAULT_RCPT],
        auth_user=args.auth_user,
    )
    report = _report(decision, session.results, session.last_line)
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        _print_human(report)
    return 0


def _unsafe_key_warning(command: str, then: str) -> Callable[[str], None]:
    """For commands that never run as the daemon: an unsafe key is reported, not refused."""

    def warn(problem: str) -> None:
        print(f"authmilter {command}: warning: {problem}{then}", file=sys.stderr)

    return warn


def run_session(
    session: Session,
    message: Transaction,
    *,
    client: tuple[str, IPAddress | None, str],
    helo: str,
    mail_from: str,
    rcpts: Sequence[str],
    auth_user: str | None,
    queue_id: str = "TEST",
) -> Decision:
    """Feed one message through the session the way Postfix feeds the milter.

    Header values go with their leading space and LF folds, the body in chunks of
    Postfix's size (:data:`BODY_CHUNK`); a refused recipient is dropped like Postfix drops
    it, and when none is left the message ends at the last refusal, as it does in SMTP.
    """
    session.connect(*client)
    session.helo(helo)
    session.mail_from(mail_from, auth_user, queue_id)
    refusal = None
    accepted = 0
    for rcpt in rcpts:
        decision = session.recipient(rcpt)
        if decision is None:
            accepted += 1
        else:
            refusal = decision
    if not accepted and refusal is not None:
        return refusal
    for field in message.headers:
        session.header(field.name, field.value.replace(b"\r\n", b"\n"))
    session.end_of_headers()
    body = message.body
    for start in range(0, len(body), BODY_CHUNK):
        session.body(body[start : start + BODY_CHUNK])
    return session.end_of_message(queue_id)


def _read_message(name: str) -> bytes:
    if name == "-":
        return sys.stdin.buffer.read()
    try:
        return Path(name).read_bytes()
    except OSError as exc:
        raise UsageError(f"authmilter test: cannot read {name}: {exc.strerror}") from None


def _report(decision: Decision, results: AuthResults | None, line: str) -> dict[str, Any]:
    reply = decision.reply
    spf = results.spf if results else None
    dmarc = results.dmarc if results else None
    iprev = results.iprev if results else None
    return {
        "action": decision.action.value,
        "reply": None
        if reply is None
        else {"code": reply.code, "status": reply.status, "text": reply.text},
        "spf": None
        if spf is None
        else {
            "result": spf.result.value,
            "identity": spf.identity,
            "domain": spf.domain,
            "reason": spf.reason,
        },
        "iprev": None
        if iprev is None
        else {
            "result": iprev.result.value,
            "ip": iprev.ip,
            "name": iprev.name,
            "reason": iprev.reason,
        },
        "dkim": [
            {
                "result": d.result.value,
                "domain": d.domain,
                "selector": d.selector,
                "algorithm": d.algorithm,
                "reason": d.reason,
                "key_bits": d.key_bits,
            }
            for d in (results.dkim if results else ())
        ],
        "dmarc": None
        if dmarc is None
        else {
            "result": dmarc.result.value,
            "from_domain": dmarc.from_domain,
            "policy": dmarc.policy.value,
            "org_domain": dmarc.org_domain,
            "testing": dmarc.testing,
            "reason": dmarc.reason,
            "override": decision.dmarc_override,
        },
        "arc": _arc_report(results.arc if results else None),
        "from_warnings": [
            {"kind": w.kind.value, "domain": w.domain, "shown": w.shown}
            for w in (results.from_warnings if results else ())
        ],
        "headers": {
            "add": [
                {"name": h.name, "value": h.value, "index": h.index} for h in decision.add_headers
            ],
            "remove": [{"name": h.name, "index": h.index} for h in decision.remove_headers],
        },
        "why": decision.why,
        "log": line,
    }


def _arc_report(arc: ArcResult | None) -> dict[str, Any]:
    """The ``arc`` object, for every message (result "none" when there is no chain)."""
    if arc is None:  # arc.verify off, or our own mail
        return {
            "result": "none",
            "chain": 0,
            "oldest_pass": None,
            "sealers": [],
            "reason": "not checked",
        }
    return {
        "result": arc.result.value,
        "chain": arc.chain,
        "oldest_pass": arc.oldest_pass,
        "sealers": [
            {
                "instance": s.instance,
                "domain": s.domain,
                "selector": s.selector,
                "result": s.result.value,
            }
            for s in arc.sealers
        ],
        "reason": arc.reason,
    }


def _print_human(report: dict[str, Any]) -> None:
    for h in report["headers"]["remove"]:
        print(f"remove: {h['name']} #{h['index']}")
    for h in report["headers"]["add"]:
        print(f"{h['name']}: {h['value']}")
    reply = report["reply"]
    line = f"action: {report['action']}"
    if reply:
        line += f" ({reply['code']} {reply['status']} {reply['text']})"
    print(line)
    if report["why"]:
        print(f"why: {report['why']}")
    print(f"log: {report['log']}")
