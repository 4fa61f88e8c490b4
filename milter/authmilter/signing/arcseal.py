"""ARC sealing (RFC 8617 section 5.1): the next ARC set for a message we pass on.

A set is three fields, added at the top in this order from the top down: ``ARC-Seal``,
``ARC-Message-Signature``, ``ARC-Authentication-Results`` (dkimpy's ``arc_sign`` order).

* ``ARC-Authentication-Results``: ``i=N; `` and the value of our own Authentication-Results
  for this message.
* ``ARC-Message-Signature`` (4.1.2): a DKIM signature with ``i=`` instead of ``v=``, always
  relaxed/relaxed, over the header fields of the message as it leaves us (our own edits
  applied); never over ARC fields; by default DKIM-Signature fields are signed and
  Authentication-Results are not.
* ``ARC-Seal`` (4.1.3, 5.1.1): ``i=``, ``cv=``, ``a=``, ``d=``, ``s=``, ``t=``, ``b=``, over
  every set 1..N in instance order, each as AAR, AMS, AS, relaxed, the new seal's ``b=``
  empty. With ``cv=fail`` it covers only the new set (5.1.2: "as if this newest ARC Set was
  the only set present").

The chain status comes from the verifier (``AuthResults.arc``): none -> ``i=1; cv=none``,
pass -> ``cv=pass`` with the next instance, fail -> ``cv=fail`` with the next instance.
Nothing is sealed when the status is unknown (temperror, not verified while sets exist) or
when the set would be number 51 or more (4.2.1: at most 50).

Canonicalisation, folding and the signature are the DKIM signer's (:mod:`.signer`).
"""

from __future__ import annotations

import base64
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import dkim.util

from authmilter.checks.arc_chain import AAR, AMS, KINDS, MAX_SETS, SEAL, arc_fields, collect
from authmilter.checks.dkim_body import BodySpec
from authmilter.checks.dkim_header import relaxed_field, relaxed_signature, relaxed_value
from authmilter.checks.taglist import parse_tag_list
from authmilter.config import ArcConfig
from authmilter.errors import ConfigError
from authmilter.model import HeaderField
from authmilter.results import ArcResult, Result
from authmilter.signing.keys import Identity, PrivateKeyFile, load_key_file
from authmilter.signing.signer import (
    DEFAULT_SIGN_HEADERS,
    fold_b,
    fold_signature,
    fold_tags,
    header_hash_input,
    header_names,
)

BODY_SPEC: BodySpec = ("relaxed", "sha256", None)  # the AMS bh= (c=relaxed/relaxed)
# the DKIM signer's list, what RFC 6376 5.4 adds to it, and the DKIM signatures (4.1.2)
DEFAULT_SEAL_HEADERS: tuple[str, ...] = (
    *DEFAULT_SIGN_HEADERS,
    "sender", "message-id", "mime-version", "content-type", "content-transfer-encoding",
    "dkim-signature",
)  # fmt: skip
# never in the AMS h=: the ARC fields themselves (4.1.2)
FORBIDDEN_HEADERS = frozenset(k.lower() for k in KINDS)
_AAR_INSTANCE = re.compile(rb"\A\s*i\s*=\s*(\d{1,9})\s*;")


@dataclass(frozen=True, slots=True)
class ChainStatus:
    """The set to add (``instance``, ``cv``), or why none is added (``skip``)."""

    instance: int = 0
    cv: str = ""  # "none" | "pass" | "fail"
    skip: str = ""  # fixed words for the log line


def instance_of(kind: str, hf: HeaderField) -> int | None:
    """The ``i=`` of an ARC field of this kind (None when it has none that parses)."""
    if kind == AAR:
        m = _AAR_INSTANCE.match(relaxed_value(hf.value))
        return int(m.group(1)) if m else None
    try:
        raw = parse_tag_list(relaxed_value(hf.value)).get(b"i", b"")
    except (dkim.util.InvalidTagValueList, ValueError):
        return None
    return int(raw) if raw.strip().isdigit() and len(raw.strip()) < 10 else None


def chain_status(headers: Sequence[HeaderField], arc: ArcResult | None) -> ChainStatus:
    """What the next set is, from the verifier's result and the message's ARC fields."""
    fields = arc_fields(headers)
    instances = (instance_of(kind, hf) for kind, hf in fields)
    highest = max((i for i in instances if i is not None), default=0)
    if arc is None or arc.result == Result.NONE:
        if fields:
            return ChainStatus(skip="chain-not-verified")
        return ChainStatus(1, "none")
    if arc.result == Result.PASS:
        if highest != arc.chain or len(fields) != 3 * highest:  # not what was verified
            return ChainStatus(skip="chain-mismatch")
        cv = "pass"
    elif arc.result == Result.FAIL:
        if highest == 0:  # i=1 must say cv=none; a failed set 1 would vouch for nothing
            return ChainStatus(skip="chain-fail-no-instance")
        cv = "fail"
    else:
        return ChainStatus(skip=f"chain-{Result(arc.result).value}")
    if highest + 1 > MAX_SETS:
        return ChainStatus(skip="chain-limit")
    return ChainStatus(highest + 1, cv)


class Sealer:
    """Seals with one key (``arc.domain``, ``arc.selector``, ``arc.key``)."""

    def __init__(
        self,
        domain: str,
        selector: str,
        key: PrivateKeyFile,
        signed_headers: Sequence[str] = (),
        daemon_names: Sequence[str] = (),
    ) -> None:
        self.domain = domain
        self.selector = selector
        self.key = key
        names = [h.lower() for h in signed_headers] or list(DEFAULT_SEAL_HEADERS)
        self._sign_set = frozenset([*names, "from"]) - FORBIDDEN_HEADERS
        self.daemon_names = frozenset(daemon_names)

    @classmethod
    def from_config(
        cls,
        cfg: ArcConfig,
        config_dir: str,
        *,
        require_safe: bool = True,
        identity: Identity | None = None,
        warn: Callable[[str], None] | None = None,
    ) -> Sealer | None:
        """The sealer of ``[arc]`` (None when ``seal`` is off); ConfigError naming the key."""
        if not cfg.seal:
            return None
        missing = [k for k in ("domain", "selector", "key") if not getattr(cfg, k)]
        if missing:
            names = ", ".join(f"arc.{k}" for k in missing)
            raise ConfigError(f"arc.seal = true needs {names}")
        if not cfg.verify:
            raise ConfigError("arc.seal = true needs arc.verify = true (cv= is its result)")
        bad = [h for h in cfg.signed_headers if h.lower() in FORBIDDEN_HEADERS or ":" in h]
        if bad:
            raise ConfigError(f"arc.signed_headers: {bad[0]!r} may not be signed (RFC 8617)")
        path = str(Path(config_dir) / cfg.key)
        named = None if warn is None else (lambda text: warn(f"{text} (arc.key)"))
        try:
            key = load_key_file(path, require_safe=require_safe, identity=identity, warn=named)
        except ConfigError as exc:
            raise ConfigError(f"{exc} (arc.key)") from None
        return cls(cfg.domain, cfg.selector, key, cfg.signed_headers, cfg.seal_daemon_names)

    def applies(self, daemon_name: str) -> bool:
        """Whether a session of this ``{daemon_name}`` is sealed (``arc.seal_daemon_names``)."""
        return not self.daemon_names or daemon_name in self.daemon_names

    def seal(
        self,
        headers: Sequence[HeaderField],
        body_hash: bytes,
        status: ChainStatus,
        auth_results: str,
        timestamp: int,
    ) -> list[tuple[str, str]]:
        """The new set as (name, value) pairs, ARC-Seal first (values CRLF folded).

        ``headers`` are the message's fields as they will leave us (our own edits applied),
        ``body_hash`` the raw relaxed/sha256 body digest, ``auth_results`` the value of our
        Authentication-Results for this message. With ``cv=pass`` the previous sets come
        from :func:`~authmilter.checks.arc_chain.collect` (ChainError if the chain is not
        well formed: the verifier said pass, so it is).
        """
        n = status.instance
        aar = aar_value(n, auth_results)
        # the AMS: like a DKIM-Signature (the signer's h= rule, folding and hashing)
        h_names = header_names(headers, self._sign_set, ("From",))
        tags = [
            ("i", str(n)),
            ("a", self.key.algorithm),
            ("c", "relaxed/relaxed"),
            ("d", self.domain),
            ("s", self.selector),
            ("t", str(timestamp)),
        ]
        bh = base64.b64encode(body_hash).decode("ascii")
        unsigned = fold_signature(tags, h_names, bh, AMS)
        data = header_hash_input("relaxed", headers, h_names, unsigned, AMS)
        ams = unsigned + fold_b(unsigned, self._sign(data), AMS)
        # the AS: over the sets in instance order, then itself with b= empty
        seal_tags = [
            ("i", str(n)),
            ("a", self.key.algorithm),
            ("cv", status.cv),
            ("d", self.domain),
            ("s", self.selector),
            ("t", str(timestamp)),
        ]
        unsigned = fold_tags([(" ", f"{k}={v};") for k, v in seal_tags], SEAL)
        new_set = [HeaderField(AAR, b" " + aar.encode()), HeaderField(AMS, b" " + ams.encode())]
        previous = [] if status.cv == "fail" else [f for s in collect(headers) for f in s.fields()]
        data = seal_input([*previous, *new_set], HeaderField(SEAL, b" " + unsigned.encode()))
        seal = unsigned + fold_b(unsigned, self._sign(data), SEAL)
        return [(SEAL, seal), (AMS, ams), (AAR, aar)]

    def _sign(self, data: bytes) -> str:
        return base64.b64encode(self.key.sign(data)).decode("ascii")


def aar_value(instance: int, auth_results: str) -> str:
    """``i=N; `` and our A-R value (folded first when the first line would pass 78 columns)."""
    head = f"i={instance};"
    first = auth_results.split("\n", 1)[0]
    if len(AAR) + 2 + len(head) + 1 + len(first) > 78:
        return f"{head}\r\n\t{auth_results}".replace("\r\n", "\n").replace("\n", "\r\n")
    return f"{head} {auth_results}".replace("\r\n", "\n").replace("\n", "\r\n")


def seal_input(fields: Sequence[HeaderField], seal: HeaderField) -> bytes:
    """RFC 8617 5.1.1: the fields relaxed, then the seal (b= empty) without its CRLF."""
    return b"".join(map(relaxed_field, fields)) + relaxed_signature(seal)
