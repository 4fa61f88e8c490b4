"""The engine: runs the checks in a fixed order, asks the policy, assembles the Decision.

An :class:`Engine` is immutable and shared by every connection; a reload builds a new one.
It is built by :func:`build_engine` (the daemon's composition root) or directly in tests
with a StaticResolver.
"""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from authmilter import headers, policy
from authmilter.checks.dkim_body import BodySpec, body_specs
from authmilter.checks.dkim_verify import verify_dkim
from authmilter.checks.dmarc import evaluate_dmarc
from authmilter.checks.fromfield import FromSyntaxError, parse_from, parse_mailboxes
from authmilter.checks.spf import check_helo, check_spf
from authmilter.config import Config
from authmilter.dnsresolver import DnspythonResolver, Resolver
from authmilter.model import Envelope, HeaderField, Transaction
from authmilter.psl import PublicSuffixList
from authmilter.results import (
    Action,
    AuthResults,
    Decision,
    Disposition,
    FromStatus,
    HeaderEdit,
    Reply,
    Result,
    SpfResult,
)
from authmilter.signing.keys import Identity
from authmilter.signing.loginmap import LoginMap
from authmilter.signing.signer import Signer

log = logging.getLogger(__name__)

AR_NAME = headers.AR_NAME


@dataclass(frozen=True)
class Engine:
    """Everything a message needs, built once: config, resolver, keys, PSL, login map."""

    config: Config
    resolver: Resolver
    signer: Signer | None = None
    psl: PublicSuffixList | None = None
    login_map: LoginMap | None = None
    authserv_id: str = ""
    networks: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = field(
        init=False, repr=False
    )

    def __post_init__(self) -> None:
        if not self.authserv_id:
            object.__setattr__(self, "authserv_id", self.config.milter.effective_authserv_id())
        object.__setattr__(self, "networks", self.config.trust.networks())

    # ------------------------------------------------------------------ trust

    def trust_reason(self, env: Envelope) -> str:
        """Why this sender is "us" (``auth``, ``internal``, ``daemon``), or "" for inbound mail."""
        trust = self.config.trust
        if trust.authenticated and env.auth_user:
            return "auth"
        if env.client_ip is not None and any(_in_network(env.client_ip, n) for n in self.networks):
            return "internal"
        if env.daemon_name and env.daemon_name in trust.daemon_names:
            return "daemon"
        return ""

    # ------------------------------------------------------------------ stages

    def check_envelope(self, env: Envelope) -> SpfResult | None:
        """SPF at MAIL FROM time; None when SPF does not apply (disabled or trusted sender)."""
        if not self.config.spf.enabled or self.trust_reason(env):
            return None
        return check_spf(env, self.resolver, self.config.spf, receiver=self.authserv_id)

    def body_specs(self, env: Envelope, headers: Sequence[HeaderField]) -> frozenset[BodySpec]:
        """The body hashes this message will need, so the adapter can stream the body."""
        if self.trust_reason(env):
            signer = self._active_signer()
            return frozenset([signer.body_spec]) if signer is not None else frozenset()
        if not self.config.dkim.verify:
            return frozenset()
        return body_specs(headers, self.config.dkim.max_signatures)

    def _active_signer(self) -> Signer | None:
        if self.signer is None or not self.signer.has_keys or not self.config.signing.enabled:
            return None
        return self.signer

    def check_recipient(self, env: Envelope, spf: SpfResult | None) -> Decision | None:
        """A reject at RCPT TO, when configured for SPF fail."""
        result = spf.result if spf else None
        verdict = policy.rcpt_verdict(result, env.mail_from_domain, self.config)
        if verdict is None:
            return None
        return Decision(verdict.action, verdict.reply, log=(("why", verdict.why),))

    def authenticate(self, tx: Transaction, spf: SpfResult | None = None) -> AuthResults:
        """Run the inbound checks (or note why they are skipped). Pure but for DNS."""
        env = tx.envelope
        trusted = self.trust_reason(env)
        from_field = parse_from(tx)
        if trusted:
            return AuthResults(from_field=from_field, trusted=trusted)
        cfg = self.config
        if spf is None and cfg.spf.enabled:
            spf = check_spf(env, self.resolver, cfg.spf, receiver=self.authserv_id)
        helo_spf = None
        if cfg.spf.enabled and cfg.spf.helo and env.mail_from and env.helo:
            helo_spf = check_helo(env, self.resolver, cfg.spf, receiver=self.authserv_id)
        dkim = verify_dkim(tx, self.resolver, cfg.dkim) if cfg.dkim.verify else ()
        dmarc = None
        if cfg.dmarc.enabled:
            dmarc = evaluate_dmarc(
                from_field,
                spf,
                dkim,
                self.resolver,
                cfg.dmarc,
                self.psl,
                null_sender=not env.mail_from,
            )
        return AuthResults(
            spf=spf, helo_spf=helo_spf, dkim=dkim, dmarc=dmarc, from_field=from_field
        )

    def process(self, tx: Transaction, spf: SpfResult | None = None) -> Decision:
        """End of message: results, policy, header edits, signatures."""
        return self.evaluate(tx, spf)[1]

    def evaluate(
        self, tx: Transaction, spf: SpfResult | None = None
    ) -> tuple[AuthResults, Decision]:
        """Like :meth:`process`, also returning the check results (for ``authmilter test``)."""
        results = self.authenticate(tx, spf)
        return results, self._decide(tx, results)

    def _decide(self, tx: Transaction, results: AuthResults) -> Decision:
        removals = tuple(
            HeaderEdit(AR_NAME, None, index)
            for index in sorted(headers.find_forged(tx.headers, self.authserv_id), reverse=True)
        )
        if results.trusted:
            return self._outbound(tx, results, removals)
        verdict = policy.decide(results, self.config)
        disposition = None
        if results.dmarc is not None and results.dmarc.result != Result.NONE:
            quarantined = verdict.action == Action.QUARANTINE or verdict.quarantine_header
            disposition = Disposition.QUARANTINE if quarantined else Disposition.NONE
            if verdict.action == Action.REJECT:
                disposition = Disposition.REJECT
        adds = [
            HeaderEdit(
                AR_NAME,
                headers.render_authentication_results(
                    self.authserv_id, results, tx.envelope, disposition=disposition
                ),
                0,
            )
        ]
        if results.spf is not None and self.config.spf.received_spf_header:
            received = headers.render_received_spf(results.spf)
            if received:
                adds.append(HeaderEdit("Received-SPF", received, 0))
        if verdict.quarantine_header:
            domain = results.dmarc.from_domain if results.dmarc else ""
            adds.append(
                HeaderEdit(
                    self.config.dmarc.quarantine_header,
                    f"DMARC policy of {domain} asks for quarantine",
                    0,
                )
            )
        return Decision(
            action=verdict.action,
            reply=verdict.reply,
            add_headers=tuple(adds),
            remove_headers=removals,
            quarantine_reason=verdict.why if verdict.action == Action.QUARANTINE else "",
            log=summarise(results) + ((("why", verdict.why),) if verdict.why else ()),
        )

    def _outbound(
        self, tx: Transaction, results: AuthResults, removals: tuple[HeaderEdit, ...]
    ) -> Decision:
        env = tx.envelope
        refusal = self._check_sender_login(tx, results)
        if refusal is not None:
            return Decision(Action.REJECT, refusal, log=(("why", "sender-login-mismatch"),))
        adds = [
            HeaderEdit(
                AR_NAME, headers.render_authentication_results(self.authserv_id, results, env), 0
            )
        ]
        signer = self._active_signer()
        signatures = signer.sign(tx) if signer is not None else ()
        return Decision(
            action=Action.ACCEPT,
            add_headers=(*adds, *signatures),
            remove_headers=removals,
            log=(*summarise(results), ("signed", str(len(signatures)))),
        )

    def _check_sender_login(self, tx: Transaction, results: AuthResults) -> Reply | None:
        env = tx.envelope
        if self.login_map is None or not env.auth_user:
            return None
        ff = results.from_field
        addresses = [env.mail_from] if env.mail_from else []
        if ff is not None and ff.status != FromStatus.OK:
            return Reply(553, "5.7.1", "the From field must hold exactly one address")
        from_addrs = _from_addresses(tx)
        for addr in addresses + from_addrs:
            if not self.login_map.allowed(env.auth_user, addr):
                return Reply(
                    553, "5.7.1", f"sender address {addr} is not owned by user {env.auth_user}"
                )
        return None


def _from_addresses(tx: Transaction) -> list[str]:
    """Every address in the From fields (the caller made sure they parse)."""
    out: list[str] = []
    for field_ in tx.get_all("From"):
        try:
            out.extend(f"{box.local_part}@{box.domain}" for box in parse_mailboxes(field_.value))
        except FromSyntaxError:
            continue
    return out


def _in_network(
    ip: ipaddress.IPv4Address | ipaddress.IPv6Address,
    net: ipaddress.IPv4Network | ipaddress.IPv6Network,
) -> bool:
    if ip.version != net.version:
        mapped = getattr(ip, "ipv4_mapped", None)
        return mapped is not None and mapped in net
    return ip in net


def summarise(results: AuthResults) -> tuple[tuple[str, str], ...]:
    """key=value pairs for the one log line per message."""
    out: list[tuple[str, str]] = []
    if results.trusted:
        out.append(("trusted", results.trusted))
    if results.spf is not None:
        out.append(
            ("spf", f"{results.spf.result.value}({results.spf.identity}:{results.spf.domain})")
        )
    for d in results.dkim:
        out.append(("dkim", f"{d.result.value}(d={d.domain} s={d.selector})"))
    if results.dmarc is not None:
        dm = results.dmarc
        out.append(
            (
                "dmarc",
                f"{dm.result.value}(from={dm.from_domain} p={dm.policy.value}"
                f"{' t=y' if dm.testing else ''})",
            )
        )
    elif results.from_field is not None and results.from_field.status != FromStatus.OK:
        out.append(("from", results.from_field.status.value))
    return tuple(out)


def build_engine(cfg: Config) -> Engine:
    """Composition root for one engine: resolver, PSL, keys, login map (ConfigError on trouble)."""
    resolver = DnspythonResolver(
        cfg.dns.nameservers, cfg.dns.timeout, cfg.dns.cache_size, cfg.dns.cache_bytes
    )
    return build_engine_with(cfg, resolver)


def build_engine_with(cfg: Config, resolver: Resolver) -> Engine:
    """The same with a given resolver (``authmilter test --zone``, tests)."""
    config_dir = str(Path(cfg.path).parent) if cfg.path else "."
    psl = None
    if cfg.dmarc.enabled and cfg.dmarc.org_domain == "psl":
        psl = PublicSuffixList.load(cfg.dmarc.psl_file)
    signer = None
    if cfg.signing.enabled:
        identity = Identity.for_user(cfg.milter.user, cfg.milter.group) if cfg.milter.user else None
        signer = Signer.from_config(cfg.signing, config_dir, identity=identity)
    login_map = None
    if cfg.signing.sender_login_map:
        login_map = LoginMap.load(_resolve(config_dir, cfg.signing.sender_login_map))
    return Engine(config=cfg, resolver=resolver, signer=signer, psl=psl, login_map=login_map)


def _resolve(base: str, path: str) -> str:
    p = Path(path)
    return str(p if p.is_absolute() else Path(base) / p)


__all__ = ["Engine", "Result", "build_engine", "build_engine_with"]
