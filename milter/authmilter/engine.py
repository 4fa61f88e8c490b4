"""The engine: the stages of one message, each a short call into the checks and the policy.

An :class:`Engine` is immutable and shared by every connection; a reload builds a new one
(:mod:`authmilter.compose` builds it). The :class:`~authmilter.session.Session` calls the
stages in SMTP order:

1. MAIL FROM: :meth:`Engine.classify` (who is "us"), :meth:`Engine.check_envelope` (SPF)
   and :meth:`Engine.check_client` (iprev);
2. each RCPT TO: :meth:`Engine.check_recipient` (reject on SPF or iprev fail, when
   configured);
3. end of headers: :meth:`Engine.body_specs` (the body hashes to stream);
4. end of message: :meth:`Engine.evaluate`: :meth:`Engine.authenticate` (the checks), then
   the inbound policy or the outbound rules, then the header edits (and an ARC seal).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

from authmilter import header_edits, outbound, policy
from authmilter.checks.arc_aar import newest_aar, vouches_for_dmarc
from authmilter.checks.arc_chain import arc_body_specs
from authmilter.checks.arc_verify import verify_arc
from authmilter.checks.dkim_body import BodySpec, body_specs
from authmilter.checks.dkim_verify import verify_dkim
from authmilter.checks.dmarc import evaluate_dmarc
from authmilter.checks.fromdisplay import check_from_display
from authmilter.checks.fromfield import parse_from
from authmilter.checks.iprev import check_iprev
from authmilter.checks.spf import check_helo, check_spf
from authmilter.config import Config
from authmilter.decision import Decision
from authmilter.dnsresolver import Resolver
from authmilter.model import Envelope, HeaderField, Transaction
from authmilter.psl import PublicSuffixList
from authmilter.results import (
    ArcResult,
    AuthResults,
    DmarcResult,
    FromField,
    IprevResult,
    Result,
    SpfResult,
)
from authmilter.signing.arcseal import BODY_SPEC as ARC_SEAL_SPEC
from authmilter.signing.arcseal import Sealer
from authmilter.signing.loginmap import LoginMap
from authmilter.signing.publication import KeyPublication
from authmilter.signing.signer import Signer
from authmilter.trust import Trust, TrustPolicy


class MessageObserver(Protocol):
    """Told about each decided message after its decision (history recording, failure reports).

    Called on the session's thread at end of message: it must only hand the message on (a
    bounded queue) and return at once. It can never change the decision; an exception is
    logged and otherwise ignored.
    """

    def observe(self, tx: Transaction, results: AuthResults, decision: Decision) -> None:
        """One decided message."""


@dataclass(frozen=True)
class Engine:
    """Everything a message needs, built once: config, resolver, keys, PSL, login map."""

    config: Config
    resolver: Resolver
    signer: Signer | None = None
    psl: PublicSuffixList | None = None
    login_map: LoginMap | None = None
    authserv_id: str = ""  # "" = config.milter.effective_authserv_id()
    # where key records are looked up for signing.require_published_key (default: resolver);
    # compose gives one that skips the answer cache, so a reload sees a record just published
    publication_resolver: Resolver | None = None
    # told about every decided message (the daemon's history recorder); ``test`` has none
    observers: tuple[MessageObserver, ...] = ()
    sealer: Sealer | None = None  # [arc] seal = true: adds an ARC set (header_edits.seal)
    trust: TrustPolicy = field(init=False, repr=False)
    # which keys may sign now (signing.require_published_key): the engine's one runtime state
    publication: KeyPublication | None = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if not self.authserv_id:
            object.__setattr__(self, "authserv_id", self.config.milter.effective_authserv_id())
        object.__setattr__(self, "trust", TrustPolicy.from_config(self.config.trust))
        signing = self.config.signing
        publication = None
        if self.signer is not None and signing.require_published_key:
            publication = KeyPublication(
                self.publication_resolver or self.resolver, signing.publish_check_interval
            )
        object.__setattr__(self, "publication", publication)

    # ------------------------------------------------------------------ stages

    def classify(self, env: Envelope) -> Trust | None:
        """Why this sender is "us", or None for inbound mail."""
        return self.trust.classify(env)

    def check_envelope(self, env: Envelope) -> SpfResult | None:
        """SPF at MAIL FROM time; None when SPF does not apply (disabled or trusted sender)."""
        if not self.config.spf.enabled or self.classify(env):
            return None
        return check_spf(env, self.resolver, self.config.spf, receiver=self.authserv_id)

    def check_client(self, env: Envelope) -> IprevResult | None:
        """iprev at MAIL FROM time; None when it does not apply (off, trusted, no address)."""
        if not self.config.iprev.enabled or env.client_ip is None or self.classify(env):
            return None
        return check_iprev(env.client_ip, self.resolver, 2 * self.config.dns.timeout)

    def check_recipient(
        self, env: Envelope, spf: SpfResult | None, iprev: IprevResult | None = None
    ) -> Decision | None:
        """A reject at RCPT TO, when configured for SPF fail or iprev fail."""
        return policy.rcpt_decision(
            spf.result if spf else None, env.mail_from_domain, self.config
        ) or policy.iprev_decision(iprev, self.config)

    def body_specs(self, env: Envelope, headers: Sequence[HeaderField]) -> frozenset[BodySpec]:
        """The body hashes this message will need, so that the body can stream."""
        sealing = self.sealer is not None and self.sealer.applies(env.daemon_name)
        seal = frozenset([ARC_SEAL_SPEC]) if sealing else frozenset()
        if self.classify(env):
            signer = self.active_signer
            return seal | (frozenset([signer.body_spec]) if signer is not None else frozenset())
        specs = seal
        if self.config.dkim.verify:
            specs |= body_specs(headers, self.config.dkim.max_signatures)
        if self.config.arc.verify:
            specs |= arc_body_specs(headers)
        return specs

    def evaluate(
        self, tx: Transaction, spf: SpfResult | None = None, iprev: IprevResult | None = None
    ) -> tuple[AuthResults, Decision]:
        """End of message: the checks' results and the decision with its header edits."""
        results = self.authenticate(tx, spf, iprev)
        if results.trusted:
            binds = self.trust.login_map_binds(results.trusted)
            decision, signatures = outbound.decide_outbound(
                tx,
                results,
                self.login_map if binds else None,
                self.active_signer,
                self.publication,
            )
            decision = header_edits.outbound(
                decision,
                tx,
                results,
                self.authserv_id,
                signatures,
                auth_results=self.config.trust.auth_results,
            )
        else:
            decision = policy.decide(results, self.config)
            decision = header_edits.inbound(decision, tx, results, self.authserv_id, self.config)
        return results, header_edits.seal(decision, tx, results, self.sealer, self.authserv_id)

    # ------------------------------------------------------------------ the checks

    def authenticate(
        self, tx: Transaction, spf: SpfResult | None = None, iprev: IprevResult | None = None
    ) -> AuthResults:
        """Run the inbound checks (or note why they are skipped). Pure but for DNS.

        ``spf`` and ``iprev`` are the MAIL FROM stage's results; when not given, they are
        computed here.
        """
        env = tx.envelope
        trusted = self.classify(env)
        from_field = parse_from(tx)
        if trusted:
            return AuthResults(from_field=from_field, trusted=trusted)
        cfg = self.config
        if iprev is None:
            iprev = self.check_client(env)
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
        warnings = check_from_display(tx, self.psl) if cfg.from_.display_name_check != "off" else ()
        arc = self.check_arc(tx, from_field, dmarc) if cfg.arc.verify else None
        return AuthResults(
            spf=spf,
            helo_spf=helo_spf,
            dkim=dkim,
            dmarc=dmarc,
            from_field=from_field,
            from_warnings=warnings,
            iprev=iprev,
            arc=arc,
        )

    def check_arc(
        self, tx: Transaction, from_field: FromField, dmarc: DmarcResult | None
    ) -> ArcResult:
        """The ARC chain (RFC 8617); the newest AAR is read only when its sealer is trusted."""
        arc = verify_arc(tx, self.resolver, self.config.dkim.min_key_bits)
        if arc.result != Result.PASS or not arc.sealers:
            return arc
        if arc.sealers[0].domain not in self.config.arc.trusted_sealer_names():
            return arc
        aar = newest_aar(tx.headers)
        org = dmarc.org_domain if dmarc is not None else ""
        if aar is not None and vouches_for_dmarc(aar, from_field.domain, org):
            return dataclasses.replace(arc, newest_vouches_dmarc=True)
        return arc

    @property
    def active_signer(self) -> Signer | None:
        """The signer, when signing is on and there are keys."""
        if self.signer is None or not self.signer.has_keys or not self.config.signing.enabled:
            return None
        return self.signer
