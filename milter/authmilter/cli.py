"""Command line: ``authmilter run | check-config | test | genkey``.

``main(argv)`` returns the exit status: 0 done (whatever the verdict), 2 usage error,
78 configuration error. Errors are one line on stderr.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from authmilter import __version__
from authmilter.config import DEFAULT_PATH, Config, from_dict, load
from authmilter.errors import AuthmilterError, UsageError
from authmilter.model import Envelope, parse_message
from authmilter.results import Decision, DkimResult, DmarcResult, SpfResult


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
        "message",
        nargs="?",
        default="-",
        metavar="MESSAGE",
        help="message file, or - for standard input (default)",
    )

    sub.add_parser(
        "genkey", help="generate a DKIM key pair (opendkim-genkey compatible)", add_help=False
    )
    return p


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
                "authmilter: a command is required: run, check-config, test, genkey (see --help)"
            )
        if args.command == "run":
            from authmilter import daemon  # noqa: PLC0415  (imports libmilter)

            return daemon.run(args.config)
        if args.command == "check-config":
            return _check_config(args.config, args.dns)
        return _test(args)
    except AuthmilterError as exc:
        print(f"authmilter: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130


def _check_config(path: str, dns: bool) -> int:
    from authmilter.engine import build_engine  # noqa: PLC0415

    cfg = load(path)
    engine = build_engine(cfg)
    signer = engine.signer
    keys = signer.keys if signer is not None else ()
    print(
        f"{path}: OK (authserv-id {engine.authserv_id}, {len(keys)} signing key(s), "
        f"DMARC organizational domain by {cfg.dmarc.org_domain})"
    )
    for key in keys:
        print(f"  key {key.selector}._domainkey.{key.domain}")
    if not dns:
        return 0
    from authmilter.signing.dnscheck import KeyStatus, check_published_keys  # noqa: PLC0415

    problems = 0
    for check in check_published_keys(signer, engine.resolver) if signer else []:
        status = check.status.value if hasattr(check.status, "value") else str(check.status)
        detail = f": {check.detail}" if check.detail else ""
        print(f"  {check.record_name}: {status}{detail}")
        problems += check.status != KeyStatus.OK
    return 1 if problems else 0


def _test(args: argparse.Namespace) -> int:
    from authmilter.dnsresolver import DnspythonResolver, Resolver, StaticResolver  # noqa: PLC0415
    from authmilter.engine import build_engine_with  # noqa: PLC0415

    cfg: Config = load(args.config) if args.config else from_dict({}, "<defaults>")
    resolver: Resolver
    if args.zone and args.nameserver:
        raise UsageError("authmilter test: use --zone or --nameserver, not both")
    if args.zone:
        static = StaticResolver()
        for zone in args.zone:
            static.add_zone_file(zone)
        resolver = static
    elif args.nameserver:
        try:
            resolver = DnspythonResolver(
                args.nameserver, cfg.dns.timeout, cfg.dns.cache_size, cfg.dns.cache_bytes
            )
        except ValueError as exc:
            raise UsageError(f"authmilter test: --nameserver: {exc}") from None
    else:
        resolver = DnspythonResolver(
            cfg.dns.nameservers, cfg.dns.timeout, cfg.dns.cache_size, cfg.dns.cache_bytes
        )
    engine = build_engine_with(cfg, resolver)

    try:
        ip = ipaddress.ip_address(args.client_ip) if args.client_ip else None
    except ValueError:
        raise UsageError(
            f"authmilter test: --client-ip: {args.client_ip!r} is not an IP address"
        ) from None
    mail_from = args.mail_from.strip()
    if mail_from.startswith("<") and mail_from.endswith(">"):
        mail_from = mail_from[1:-1]
    env = Envelope(
        client_ip=ip,
        client_name=args.client_name,
        helo=args.helo,
        mail_from=mail_from,
        rcpt_to=tuple(args.rcpt),
        auth_user=args.auth_user,
        daemon_name=args.daemon_name,
        queue_id="TEST",
        mta_name=engine.authserv_id,
    )
    data = _read_message(args.message)
    tx = parse_message(data, env)

    spf = engine.check_envelope(env)
    rcpt_decision = engine.check_recipient(env, spf)
    if rcpt_decision is not None:
        report = _report(rcpt_decision, spf, (), None)
    else:
        results, decision = engine.evaluate(tx, spf)
        report = _report(decision, results.spf, results.dkim, results.dmarc)
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        _print_human(report)
    return 0


def _read_message(name: str) -> bytes:
    if name == "-":
        return sys.stdin.buffer.read()
    try:
        return Path(name).read_bytes()
    except OSError as exc:
        raise UsageError(f"authmilter test: cannot read {name}: {exc.strerror}") from None


def _report(
    decision: Decision, spf: SpfResult | None, dkim: Sequence[DkimResult], dmarc: DmarcResult | None
) -> dict[str, Any]:
    reply = decision.reply
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
        "dkim": [
            {
                "result": d.result.value,
                "domain": d.domain,
                "selector": d.selector,
                "algorithm": d.algorithm,
                "reason": d.reason,
                "key_bits": d.key_bits,
            }
            for d in dkim
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
        },
        "headers": {
            "add": [{"name": h.name, "value": h.value} for h in decision.add_headers],
            "remove": [{"name": h.name, "index": h.index} for h in decision.remove_headers],
        },
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
