"""Outbound DKIM signing (RFC 6376, RFC 8463): which keys sign a message, and the signatures.

The engine decides *whether* a message is ours to sign; the :class:`Signer` decides *with
which keys*: every key whose SigningTable entry (or ``[[signing.keys]]`` ``signers`` pattern)
matches the single address in the From field signs, in one pass (RSA and Ed25519 side by
side). With ``signing.subdomains`` a From domain that matches nothing is retried as each of its
parent domains. A key whose ``d=``/``s=`` already signed the message is skipped.

Canonicalisation and header selection are the verifier's own (checked byte for byte against
dkimpy in the tests); the signature itself is made with ``cryptography`` (see :mod:`.keys`).
"""

from __future__ import annotations

import base64
import time
from collections.abc import Callable, Collection, Iterable, Sequence
from dataclasses import dataclass

import dkim.util

from authmilter import metrics
from authmilter.checks.dkim_body import BodySpec, hash_body
from authmilter.checks.dkim_header import CanonicalHeaders
from authmilter.checks.fromfield import FromSyntaxError, parse_mailboxes
from authmilter.checks.taglist import parse_tag_list
from authmilter.config import SigningConfig
from authmilter.decision import HeaderEdit
from authmilter.errors import ConfigError
from authmilter.model import HeaderField, Transaction
from authmilter.signing.keys import Identity, PrivateKeyFile, load_key_file
from authmilter.signing.tables import (
    KeyEntry,
    SigningRule,
    SigningTable,
    load_key_table,
    make_key_entry,
    resolve_path,
)

# libopendkim's dkim_should_signhdrs (RFC 6376 section 5.4): opendkim's SignHeaders default.
DEFAULT_SIGN_HEADERS: tuple[str, ...] = (
    "from", "reply-to", "subject", "date", "to", "cc",
    "resent-date", "resent-from", "resent-sender", "resent-to", "resent-cc",
    "in-reply-to", "references",
    "list-id", "list-help", "list-unsubscribe", "list-subscribe", "list-post", "list-owner",
    "list-archive",
)  # fmt: skip

SIGNATURE_FIELD = "DKIM-Signature"
_MAX_LINE = 78
_FOLD = "\r\n\t"


@dataclass(frozen=True, slots=True)
class SigningKey:
    """A loaded key with its name, ``d=`` (``%`` = the From domain) and ``s=``."""

    name: str
    domain: str
    selector: str
    key: PrivateKeyFile
    origin: str

    @property
    def algorithm(self) -> str:
        """``a=`` value."""
        return self.key.algorithm


@dataclass(frozen=True, slots=True)
class Selection:
    """One signature to make: the key, its ``d=`` and ``i=`` ("" = none)."""

    key: SigningKey
    domain: str
    identity: str = ""


class Signer:
    """Signs messages with keys loaded once at start (and again on reload: build a new one)."""

    def __init__(
        self,
        keys: Sequence[SigningKey] = (),
        rules: Sequence[SigningRule] = (),
        tables: Sequence[SigningTable] = (),
        *,
        canonicalization: str = "relaxed/relaxed",
        headers: Iterable[str] = (),
        oversign_headers: Iterable[str] = ("From",),
        expire: int = 0,
        subdomains: bool = False,
    ) -> None:
        self._keys = {k.name: k for k in keys}
        self._rules = tuple(rules)  # [[signing.keys]] patterns (wildcards), in config order
        self._tables = tuple(tables)
        header_c, _, body_c = canonicalization.partition("/")
        self.canonicalization = f"{header_c}/{body_c or 'simple'}"
        self._header_canon = header_c
        self.body_spec: BodySpec = (body_c or "simple", "sha256", None)  # what bh= needs
        sign = [h.lower() for h in headers] or list(DEFAULT_SIGN_HEADERS)
        self._oversign = tuple(dict.fromkeys(oversign_headers))
        self._sign_set = frozenset([*sign, "from", *(h.lower() for h in self._oversign)])
        self.expire = expire
        self.subdomains = subdomains

    # ------------------------------------------------------------------ construction

    @classmethod
    def from_config(
        cls,
        cfg: SigningConfig,
        config_dir: str,
        *,
        identity: Identity | None = None,
        warn: Callable[[str], None] | None = None,
    ) -> Signer:
        """Load tables and keys (ConfigError on any problem); an empty config has no keys.

        ``identity`` is the account the daemon runs as after dropping privileges (for the
        key safety check); the default is the current process. ``warn``: see
        :func:`~authmilter.signing.keys.load_key_file`.
        """
        options = {
            "canonicalization": cfg.canonicalization,
            "headers": cfg.headers,
            "oversign_headers": cfg.oversign_headers,
            "expire": cfg.expire,
            "subdomains": cfg.subdomains,
        }
        if not cfg.enabled:
            return cls(**options)  # type: ignore[arg-type]
        if bool(cfg.key_table) != bool(cfg.signing_table):
            raise ConfigError("signing.key_table and signing.signing_table must be given together")
        entries: list[KeyEntry] = []
        tables: list[SigningTable] = []
        if cfg.key_table:
            entries += load_key_table(cfg.key_table, config_dir)
            table = SigningTable.load(cfg.signing_table, config_dir)
            names = {e.name for e in entries}
            for rule in table.rules:
                if rule.keyname != "%" and rule.keyname not in names:
                    raise ConfigError(f"{rule.origin}: the key name is not in the KeyTable")
            tables.append(table)
        rules: list[SigningRule] = []
        for i, spec in enumerate(cfg.keys):
            where = f"signing.keys[{i}]"
            entry = make_key_entry(
                where, spec.domain, spec.selector, resolve_path(spec.key_file, config_dir), where
            )
            entries.append(entry)
            patterns = spec.signers or (f"*@{entry.domain}",)
            rules += [SigningRule(p.lower(), where, "", True, where) for p in patterns]
        loaded: dict[str, PrivateKeyFile] = {}
        keys: list[SigningKey] = []
        require_safe = cfg.require_safe_keys
        for e in entries:
            if e.key_path not in loaded:
                try:
                    loaded[e.key_path] = load_key_file(
                        e.key_path, require_safe=require_safe, identity=identity, warn=warn
                    )
                except ConfigError as exc:
                    raise ConfigError(f"{exc} ({e.origin})") from None
            keys.append(SigningKey(e.name, e.domain, e.selector, loaded[e.key_path], e.origin))
        return cls(keys, rules, tables, **options)  # type: ignore[arg-type]

    # ------------------------------------------------------------------ queries

    @property
    def has_keys(self) -> bool:
        """Whether any key is configured."""
        return bool(self._keys)

    @property
    def keys(self) -> tuple[SigningKey, ...]:
        """Every loaded key (for ``check-config --dns``)."""
        return tuple(self._keys.values())

    def select(self, tx: Transaction) -> list[Selection]:
        """The signatures this message would get (before skipping ones already present)."""
        address = from_address(tx.headers)
        if not address or not self._keys:
            return []
        user, _, host = address.rpartition("@")
        candidates = [host]
        if self.subdomains:
            labels = host.split(".")
            candidates += [".".join(labels[i:]) for i in range(1, len(labels) - 1)]
        for candidate in candidates:
            found = self._select_for(f"{user}@{candidate}", host)
            if found:
                return found
        return []

    def _select_for(self, address: str, from_domain: str) -> list[Selection]:
        host = address.rpartition("@")[2]
        matched: list[SigningRule] = []
        for table in self._tables:
            matched += table.lookup(address)
        matched += [r for r in self._rules if r.matches(address, host)]
        out: list[Selection] = []
        seen: set[tuple[str, str]] = set()
        for rule in matched:
            key = self._keys.get(from_domain if rule.keyname == "%" else rule.keyname)
            if key is None:
                continue
            domain = from_domain if key.domain == "%" else key.domain
            if (domain, key.selector.lower()) in seen:
                continue
            seen.add((domain, key.selector.lower()))
            out.append(Selection(key, domain, _identity(rule.signer, from_domain, domain)))
        return out

    def domains_for(self, tx: Transaction) -> tuple[str, ...]:
        """The ``d=`` domains this message would be signed for."""
        return tuple(dict.fromkeys(s.domain for s in self.select(tx)))

    # ------------------------------------------------------------------ signing

    def sign(
        self,
        tx: Transaction,
        now: int | None = None,
        *,
        allowed: Collection[tuple[str, str]] | None = None,
    ) -> tuple[HeaderEdit, ...]:
        """One ``DKIM-Signature`` insertion per matching key (value folded with LF + TAB).

        ``allowed``: the (``d=``, lower-case ``s=``) pairs that may sign now (those whose
        record is published, see :mod:`.publication`); None: every key.
        """
        selections = self.select(tx)
        if allowed is not None:
            selections = [s for s in selections if (s.domain, s.key.selector.lower()) in allowed]
        if not selections:
            return ()
        present = existing_signatures(tx.headers)
        todo = [s for s in selections if (s.domain, s.key.selector.lower()) not in present]
        if not todo:
            return ()
        timestamp = int(time.time()) if now is None else int(now)
        digest = tx.digest_for(*self.body_spec)
        if digest is None:
            if not tx.body_kept:
                raise ValueError("body neither kept nor hashed for signing")
            digest = hash_body(tx.body, [self.body_spec])[0]
        body_hash = base64.b64encode(digest.digest).decode("ascii")
        h_names = self.header_list(tx.headers)
        edits = []
        for sel in todo:
            value = self._signature(tx, sel, timestamp, body_hash, h_names)
            edits.append(
                HeaderEdit(name=SIGNATURE_FIELD, value=value.replace("\r\n", "\n"), index=0)
            )
            metrics.signature(sel.key.name)
        return tuple(edits)

    def header_list(self, headers: Sequence[HeaderField]) -> list[str]:
        """``h=``: present fields from the sign list in message order, then the oversigned ones."""
        return header_names(headers, self._sign_set, self._oversign)

    def _signature(
        self, tx: Transaction, sel: Selection, timestamp: int, body_hash: str, h_names: list[str]
    ) -> str:
        tags: list[tuple[str, str]] = [
            ("v", "1"),
            ("a", sel.key.algorithm),
            ("c", self.canonicalization),
            ("d", sel.domain),
        ]
        if sel.identity:
            tags.append(("i", sel.identity))
        tags += [("s", sel.key.selector), ("t", str(timestamp))]
        if self.expire > 0:
            tags.append(("x", str(timestamp + self.expire)))
        unsigned = fold_signature(tags, h_names, body_hash)
        data = header_hash_input(self._header_canon, tx.headers, h_names, unsigned)
        b = base64.b64encode(sel.key.key.sign(data)).decode("ascii")
        return unsigned + fold_b(unsigned, b)


# ---------------------------------------------------------------------- helpers


def header_names(
    headers: Sequence[HeaderField], sign_set: Collection[str], oversign: Sequence[str]
) -> list[str]:
    """``h=``: the fields named in ``sign_set`` (lower-case) in message order, then ``oversign``."""
    return [h.name for h in headers if h.name.lower() in sign_set] + list(oversign)


def header_hash_input(
    header_canon: str,
    headers: Sequence[HeaderField],
    h_names: Sequence[str],
    signature_value: str,
    field_name: str = SIGNATURE_FIELD,
) -> bytes:
    """RFC 6376 3.7: the canonicalised signed fields, then the signature field (b= empty).

    The same code the verifier uses (:class:`~authmilter.checks.dkim_header.CanonicalHeaders`),
    so what we sign is what we, and dkimpy, check. ``signature_value`` is the field value as
    the MTA will store it, CRLF folded, without the leading space the MTA inserts;
    ``field_name`` is ``ARC-Message-Signature`` for ARC (RFC 8617 4.1.2: hashed like DKIM).
    """
    field = HeaderField(field_name, b" " + signature_value.encode("ascii"))
    h_value = ":".join(h_names).encode("ascii")
    return CanonicalHeaders(headers).signed_data(header_canon, h_value, field)


def fold_signature(
    tags: list[tuple[str, str]],
    h_names: Sequence[str],
    body_hash: str,
    field_name: str = SIGNATURE_FIELD,
) -> str:
    """The field value up to and including ``b=``, folded at 78 columns with CRLF + TAB."""
    h = [f"{n}:" for n in h_names]
    h[0] = "h=" + h[0]
    h[-1] = h[-1][:-1] + ";"
    pieces = [(" ", f"{k}={v};") for k, v in tags]
    pieces += [(" " if i == 0 else "", part) for i, part in enumerate(h)]
    pieces += [(" ", f"bh={body_hash};")]
    return fold_tags(pieces, field_name)


def fold_tags(pieces: Sequence[tuple[str, str]], field_name: str) -> str:
    """``pieces`` ((glue, text): glue is " " or "" before text) then `` b=``, folded at 78
    columns with CRLF + TAB (the first line counted after ``field_name: ``)."""
    pieces = [*pieces, (" ", "b=")]
    out = ""
    col = len(field_name) + 2
    for i, (glue, part) in enumerate(pieces):
        sep = "" if i == 0 else glue
        if i and col + len(sep) + len(part) > _MAX_LINE:
            out += _FOLD
            col, sep = 8, ""
        out += sep + part
        col += len(sep) + len(part)
    return out


def fold_b(prefix: str, b: str, field_name: str = SIGNATURE_FIELD) -> str:
    """The b= value, split so no line passes 78 columns (whitespace in b= is allowed)."""
    last = prefix.rsplit(_FOLD, 1)[-1]
    col = (8 if _FOLD in prefix else len(field_name) + 2) + len(last)
    room = max(_MAX_LINE - col, 0)
    chunks = [b[:room]] if room else [""]
    rest = b[room:]
    width = _MAX_LINE - 8
    chunks += [rest[i : i + width] for i in range(0, len(rest), width)]
    return chunks[0] + "".join(_FOLD + c for c in chunks[1:])


def from_address(headers: Sequence[HeaderField]) -> str:
    """The single From address, lower-case; "" unless there is exactly one field and address.

    Uses the same strict parser as DMARC, so what is signed for is what DMARC will check.
    """
    fields = [h for h in headers if h.is_named("From")]
    if len(fields) != 1:
        return ""
    try:
        boxes = parse_mailboxes(fields[0].value)
    except FromSyntaxError:
        return ""
    if len(boxes) != 1:
        return ""
    return f"{boxes[0].local_part.lower()}@{boxes[0].domain}"


def existing_signatures(headers: Sequence[HeaderField]) -> set[tuple[str, str]]:
    """(d, s) pairs of DKIM-Signature fields already in the message, lower-case."""
    found = set()
    for h in headers:
        if h.is_named(SIGNATURE_FIELD):
            try:
                tags = parse_tag_list(h.value)
            except dkim.util.InvalidTagValueList:
                continue
            d, s = tags.get(b"d"), tags.get(b"s")
            if d and s:
                found.add((_text(d).lower().rstrip("."), _text(s).lower()))
    return found


def _text(value: bytes) -> str:
    return value.decode("utf-8", "replace").strip()


def _identity(template: str, from_domain: str, d: str) -> str:
    if not template:
        return ""
    signer = template.replace("%", from_domain)
    if "@" not in signer:
        signer = "@" + signer
    domain = signer.rpartition("@")[2].lower()
    return signer if domain == d or domain.endswith("." + d) else ""
