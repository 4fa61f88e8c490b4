"""``authmilter dns-check``: audit our own domains with the engine's resolver and parsers.

Which domains: those named, else every domain of the signing keys (keys whose domain is
``%`` sign for any domain and name none). Which selectors: every key that would sign mail
from ``postmaster@DOMAIN`` (the signer's own selection, so SigningTable patterns,
``%`` keys and ``signing.subdomains`` count) or whose domain is DOMAIN, plus the selectors
named with ``--selector`` (checked without a private key).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from authmilter.audit.dkim import Selector, audit_dkim
from authmilter.audit.dmarc import audit_dmarc
from authmilter.audit.findings import Report, Section
from authmilter.audit.host import audit_mx, audit_ptr, host_addresses
from authmilter.audit.spf import audit_spf
from authmilter.engine import Engine
from authmilter.model import HeaderField, IPAddress, Transaction


def signing_domains(engine: Engine) -> list[str]:
    """Every domain a signing key names (``%`` keys name none), sorted."""
    signer = engine.signer
    keys = signer.keys if signer is not None else ()
    return sorted({k.domain for k in keys if k.domain != "%"})


def selectors_for(engine: Engine, domain: str, extra: Sequence[str] = ()) -> list[Selector]:
    """The keys that sign ``domain``'s mail, then the ``--selector`` names."""
    found: dict[tuple[str, str], Selector] = {}
    signer = engine.signer
    if signer is not None:
        probe = Transaction(headers=(HeaderField("From", f" postmaster@{domain}".encode()),))
        for sel in signer.select(probe):
            key = dataclasses.replace(sel.key, domain=sel.domain)
            found.setdefault(
                (sel.domain, key.selector.lower()), Selector(sel.domain, key.selector, key)
            )
        for key in signer.keys:
            if key.domain == domain:
                found.setdefault(
                    (domain, key.selector.lower()), Selector(domain, key.selector, key)
                )
    for name in extra:
        found.setdefault((domain, name.lower()), Selector(domain, name))
    return list(found.values())


def audit(
    engine: Engine,
    domains: Sequence[str],
    *,
    host: str,
    addresses: Sequence[IPAddress] = (),
    selectors: Sequence[str] = (),
) -> Report:
    """Audit this host and each domain; ``addresses`` empty: the addresses of ``host``."""
    resolver = engine.resolver
    cfg = engine.config
    section = Section(host)
    outgoing = list(addresses) or host_addresses(section, host, resolver)
    section.facts["addresses"] = [str(ip) for ip in outgoing]
    audit_ptr(section, host, outgoing, resolver, 2 * cfg.dns.timeout)
    report = Report(section)
    for domain in domains:
        part = Section(domain)
        audit_spf(part, domain, resolver, cfg.spf, addresses=outgoing, helo=host)
        audit_dkim(part, domain, selectors_for(engine, domain, selectors), resolver)
        audit_dmarc(part, domain, resolver, engine.psl)
        audit_mx(part, domain, resolver)
        report.domains.append(part)
    return report
