"""Deterministic benchmark corpus: keys, messages, DNS zone and a manifest.

Everything comes from one seed: RSA keys are built from seeded primes, Ed25519 keys from
seeded 32-byte seeds, message text from a seeded word list, and DKIM signatures (dkimpy
``dkim.sign``) carry a fixed ``t=``. So the same seed gives byte-identical files.

Layout under ``OUT`` (normally ``bench/work/corpus``)::

    keys/<domain>.<selector>.pem     private keys (0600); Ed25519 also as .seed (dkimpy-milter)
    bench.zone                       SPF, DKIM and DMARC (p=reject) records for every domain
    sets/<set>/NNN.eml               messages
    manifest.json                    sets -> files and envelope
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import os
import random
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any
from unittest import mock

import dkim
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

SIGNED_AT = 1764547200  # t= of every corpus signature (2025-12-01T00:00:00Z)
DATE = "Mon, 01 Dec 2025 00:00:00 +0000"

# Inbound mail: signed by sender.example, sent from 192.0.2.10 (permitted by SPF).
INBOUND_DOMAIN = "sender.example"
INBOUND_IP = "192.0.2.10"
INBOUND_HELO = "mx.sender.example"
# Outbound mail: unsigned, From these domains, sent by an authenticated user.
SIGN_RSA_DOMAIN = "rsa-signer.example"
SIGN_ED_DOMAIN = "ed-signer.example"
SUBMIT_IP = "192.0.2.20"
SUBMIT_HELO = "laptop.example"
AUTH_USER = "alice"
RCPT = "rcpt@receiver.example"
RSA_SELECTOR = "rsa2048"
ED_SELECTOR = "ed25519"
# ARC: three sealers (oldest first), each with an RSA-2048 key of its own under ARC_SELECTOR
ARC_SEALERS = ("lists.arc-one.example", "fwd.arc-two.example", "mx.arc-three.example")
ARC_SELECTOR = "arc2048"
SPF_RECORD = "v=spf1 ip4:192.0.2.0/24 ip4:127.0.0.0/8 -all"  # 127/8: the Postfix run
DMARC_RECORD = "v=DMARC1; p=reject"

SIZES = {"2k": 2 * 1024, "100k": 100 * 1024, "10m": 10 * 1024 * 1024}


@dataclass(frozen=True)
class Envelope:
    """What the MTA says about one message."""

    client_ip: str
    helo: str
    mail_from: str
    rcpts: tuple[str, ...] = (RCPT,)
    macros: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class MessageSet:
    """A group of messages sharing an envelope; ``expect`` describes the intended verdict."""

    name: str
    files: tuple[str, ...]
    envelope: Envelope
    expect: dict[str, str]


@dataclass(frozen=True)
class Spec:
    """One message set to generate."""

    name: str
    size: str
    count: int
    domain: str
    sign: tuple[str, ...]  # selectors to sign with ("" = none)
    outbound: bool
    tamper: str = ""  # "", "body" or "header": break the signature after signing
    client_ip: str = ""
    arc: int = 0  # ARC sets to seal the (signed) message with (ARC_SEALERS, oldest first)


def default_specs(quick: bool = False) -> list[Spec]:
    """The message sets the scenarios use (fewer and smaller in quick mode)."""
    n2k, n100k, n10m = (8, 4, 1) if quick else (64, 16, 3)
    return [
        Spec("inbound-2k-rsa", "2k", n2k, INBOUND_DOMAIN, (RSA_SELECTOR,), False),
        Spec("inbound-100k-rsa", "100k", n100k, INBOUND_DOMAIN, (RSA_SELECTOR,), False),
        Spec("inbound-10m-rsa", "10m", n10m, INBOUND_DOMAIN, (RSA_SELECTOR,), False),
        Spec("inbound-2k-ed25519", "2k", n2k, INBOUND_DOMAIN, (ED_SELECTOR,), False),
        Spec("inbound-2k-arc3", "2k", n2k, INBOUND_DOMAIN, (RSA_SELECTOR,), False, arc=3),
        Spec("sign-2k-rsa", "2k", n2k, SIGN_RSA_DOMAIN, (), True),
        Spec("sign-2k-ed25519", "2k", n2k, SIGN_ED_DOMAIN, (), True),
        Spec("sign-10m-rsa", "10m", n10m, SIGN_RSA_DOMAIN, (), True),
        # the verdict corpus: pass, broken signatures, unsigned, SPF fail
        Spec("verdict-pass-dual", "2k", 2, INBOUND_DOMAIN, (RSA_SELECTOR, ED_SELECTOR), False),
        Spec("verdict-body-tampered", "2k", 2, INBOUND_DOMAIN, (RSA_SELECTOR,), False, "body"),
        Spec("verdict-header-tampered", "2k", 2, INBOUND_DOMAIN, (ED_SELECTOR,), False, "header"),
        Spec("verdict-unsigned", "2k", 2, INBOUND_DOMAIN, (), False),
        Spec(
            "verdict-spf-fail-signed",
            "2k",
            2,
            INBOUND_DOMAIN,
            (RSA_SELECTOR,),
            False,
            client_ip="198.51.100.7",
        ),
        Spec(  # SPF fail and a broken signature: DMARC fail, p=reject
            "verdict-dmarc-fail",
            "2k",
            2,
            INBOUND_DOMAIN,
            (RSA_SELECTOR,),
            False,
            "body",
            client_ip="198.51.100.7",
        ),
    ]


# --------------------------------------------------------------------------- keys


_SMALL_PRIMES = [p for p in range(3, 2000) if all(p % d for d in range(2, int(p**0.5) + 1))]


def _is_probable_prime(n: int, rng: random.Random, rounds: int = 40) -> bool:
    if n < 2:
        return False
    for p in _SMALL_PRIMES:
        if n % p == 0:
            return n == p
    d, s = n - 1, 0
    while d % 2 == 0:
        d //= 2
        s += 1
    for _ in range(rounds):
        x = pow(rng.randrange(2, n - 2), d, n)
        if x in (1, n - 1):
            continue
        for _ in range(s - 1):
            x = pow(x, 2, n)
            if x == n - 1:
                break
        else:
            return False
    return True


def _prime(bits: int, rng: random.Random, e: int) -> int:
    while True:
        n = rng.getrandbits(bits) | (3 << (bits - 2)) | 1  # top two bits: n*m has 2*bits
        if (n - 1) % e and _is_probable_prime(n, rng):
            return n


def seeded_rsa_key(seed: str, bits: int = 2048) -> rsa.RSAPrivateKey:
    """An RSA key derived from ``seed`` (same seed, same key). For benchmarks only."""
    rng = random.Random(hashlib.sha256(seed.encode()).digest())
    e = 65537
    while True:
        p, q = _prime(bits // 2, rng, e), _prime(bits // 2, rng, e)
        if p != q:
            break
    p, q = max(p, q), min(p, q)
    d = pow(e, -1, (p - 1) * (q - 1))
    numbers = rsa.RSAPrivateNumbers(
        p=p,
        q=q,
        d=d,
        dmp1=rsa.rsa_crt_dmp1(d, p),
        dmq1=rsa.rsa_crt_dmq1(d, q),
        iqmp=rsa.rsa_crt_iqmp(p, q),
        public_numbers=rsa.RSAPublicNumbers(e, p * q),
    )
    return numbers.private_key()


def seeded_ed25519_key(seed: str) -> ed25519.Ed25519PrivateKey:
    """An Ed25519 key derived from ``seed``."""
    return ed25519.Ed25519PrivateKey.from_private_bytes(hashlib.sha256(seed.encode()).digest())


@dataclass(frozen=True)
class KeyFiles:
    """A generated key: its files and its DNS TXT record."""

    domain: str
    selector: str
    algorithm: str  # rsa-sha256 | ed25519-sha256
    pem: str  # PKCS#1 (RSA) or PKCS#8 (Ed25519) PEM
    seed: str  # Ed25519 only: base64 seed (dkimpy format); "" for RSA
    txt: str


def write_key(out: Path, seed: str, domain: str, selector: str) -> KeyFiles:
    """Create (deterministically) and store one key; return its description."""
    keydir = out / "keys"
    keydir.mkdir(parents=True, exist_ok=True)
    pem_path = keydir / f"{domain}.{selector}.pem"
    seed_path = keydir / f"{domain}.{selector}.seed"
    if selector.startswith("ed"):
        key = seeded_ed25519_key(f"{seed}/{domain}/{selector}")
        pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        raw = key.private_bytes(
            serialization.Encoding.Raw,
            serialization.PrivateFormat.Raw,
            serialization.NoEncryption(),
        )
        pub = key.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )
        _write_secret(seed_path, base64.b64encode(raw) + b"\n")
        txt = f"v=DKIM1; k=ed25519; p={base64.b64encode(pub).decode()}"
        algorithm = "ed25519-sha256"
    else:
        rkey = seeded_rsa_key(f"{seed}/{domain}/{selector}")
        pem = rkey.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        )
        der = rkey.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        txt = f"v=DKIM1; k=rsa; p={base64.b64encode(der).decode()}"
        algorithm = "rsa-sha256"
    _write_secret(pem_path, pem)
    return KeyFiles(
        domain,
        selector,
        algorithm,
        str(pem_path),
        str(seed_path) if algorithm.startswith("ed") else "",
        txt,
    )


def _write_secret(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
    os.chmod(path, 0o600)


# --------------------------------------------------------------------------- messages


def _words(rng: random.Random) -> list[str]:
    letters = "abcdefghijklmnopqrstuvwxyz"
    return ["".join(rng.choice(letters) for _ in range(rng.randint(2, 10))) for _ in range(512)]


def body_text(size: int, rng: random.Random) -> bytes:
    """About ``size`` bytes of CRLF text lines (at most 76 characters each)."""
    words = _words(rng)
    lines: list[str] = []
    pool: list[str] = []
    for _ in range(256):  # a pool of lines; large bodies repeat lines in a seeded order
        parts: list[str] = []
        while sum(len(w) + 1 for w in parts) < 60:
            parts.append(rng.choice(words))
        pool.append(" ".join(parts))
    total = 0
    while total < size:
        line = rng.choice(pool)
        if rng.random() < 0.05:
            line = line + "  "  # trailing spaces: relaxed and simple canonicalization differ
        lines.append(line)
        total += len(line) + 2
    return ("\r\n".join(lines) + "\r\n").encode()


def message(spec: Spec, index: int, rng: random.Random) -> bytes:
    """One unsigned message of ``spec``."""
    frm = f"user{index}@{spec.domain}"
    headers = [
        f"From: Bench User {index} <{frm}>",
        f"To: <{RCPT}>",
        f"Subject: {spec.name} message {index}",
        f"Date: {DATE}",
        f"Message-ID: <{spec.name}.{index}@{spec.domain}>",
        "MIME-Version: 1.0",
        "Content-Type: text/plain; charset=us-ascii",
        "Content-Transfer-Encoding: 7bit",
    ]
    head = "\r\n".join(headers).encode() + b"\r\n\r\n"
    return head + body_text(max(256, SIZES[spec.size] - len(head)), rng)


@contextmanager
def fixed_time(when: int) -> Iterator[None]:
    """Make dkimpy's ``t=`` deterministic (it calls ``time.time()`` directly)."""
    with mock.patch.object(dkim.time, "time", return_value=float(when)):
        yield


def sign(msg: bytes, key: KeyFiles) -> bytes:
    """Prepend a DKIM-Signature made by dkimpy (relaxed/relaxed)."""
    if key.algorithm.startswith("ed"):
        private = Path(key.seed).read_bytes().strip()
    else:
        private = Path(key.pem).read_bytes()
    with fixed_time(SIGNED_AT):
        sig = dkim.sign(
            msg,
            key.selector.encode(),
            key.domain.encode(),
            private,
            canonicalize=(b"relaxed", b"relaxed"),
            signature_algorithm=key.algorithm.encode(),
            include_headers=[
                b"from",
                b"to",
                b"subject",
                b"date",
                b"message-id",
                b"mime-version",
                b"content-type",
            ],
        )
    return bytes(sig) + msg


def arc_seal(msg: bytes, key: KeyFiles) -> bytes:
    """Prepend the sealer's Authentication-Results and the ARC set dkimpy ``arc_sign`` makes
    for it (RFC 8617; cv=none for the first set, cv=pass after), sealed at ``SIGNED_AT``."""
    instance = (b"\n" + msg.lower()).count(b"\narc-seal:") + 1
    srv_id = f"hop{instance}.{key.domain}"
    arc = "; arc=pass" if instance > 1 else ""  # dkimpy takes cv= from the sealer's A-R
    results = (
        f"Authentication-Results: {srv_id}; spf=pass smtp.mailfrom={INBOUND_DOMAIN};"
        f" dkim=pass header.d={INBOUND_DOMAIN}; dmarc=pass header.from={INBOUND_DOMAIN}{arc}\r\n"
    )
    msg = results.encode() + msg
    with fixed_time(SIGNED_AT):
        fields = dkim.arc_sign(
            msg,
            key.selector.encode(),
            key.domain.encode(),
            Path(key.pem).read_bytes(),
            srv_id.encode(),
            timestamp=SIGNED_AT,
        )
    if not fields:
        raise RuntimeError(f"dkimpy arc_sign made no ARC set for {key.domain}")
    return b"".join(fields) + msg


def tamper(msg: bytes, how: str) -> bytes:
    """Break a signed message after signing."""
    if how == "body":
        return msg + b"appended after signing\r\n"
    if how == "header":
        return msg.replace(b"Subject: ", b"Subject: [changed] ", 1)
    return msg


# --------------------------------------------------------------------------- zone


def zone_text(keys: list[KeyFiles]) -> str:
    """SPF, DMARC and DKIM records for every corpus domain."""
    lines = ["; benchmark corpus zone (generated by bench/corpus.py)", "$TTL 3600"]
    for domain in (INBOUND_DOMAIN, SIGN_RSA_DOMAIN, SIGN_ED_DOMAIN):
        lines.append(f'{domain}. IN TXT "{SPF_RECORD}"')
        lines.append(f'_dmarc.{domain}. IN TXT "{DMARC_RECORD}"')
        lines.append(f"{domain}. IN MX 10 mx.{domain}.")
        lines.append(f"mx.{domain}. IN A {INBOUND_IP}")
    lines.append(f'{INBOUND_HELO}. IN TXT "{SPF_RECORD}"')
    lines.append(f"{SUBMIT_HELO}. IN A {SUBMIT_IP}")
    lines.append(f"10.2.0.192.in-addr.arpa. IN PTR {INBOUND_HELO}.")
    for key in keys:
        chunks = [key.txt[i : i + 200] for i in range(0, len(key.txt), 200)]
        quoted = " ".join(f'"{c}"' for c in chunks)
        lines.append(f"{key.selector}._domainkey.{key.domain}. IN TXT {quoted}")
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------- build


def build(
    out: Path,
    seed: str = "authmilter-bench-1",
    quick: bool = False,
    specs: list[Spec] | None = None,
) -> dict[str, Any]:
    """Generate the corpus into ``out``; return the manifest (also written as JSON)."""
    out = out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    keys = {
        (d, s): write_key(out, seed, d, s)
        for d in (INBOUND_DOMAIN, SIGN_RSA_DOMAIN, SIGN_ED_DOMAIN)
        for s in (RSA_SELECTOR, ED_SELECTOR)
    }
    for sealer in ARC_SEALERS:
        keys[(sealer, ARC_SELECTOR)] = write_key(out, seed, sealer, ARC_SELECTOR)
    sets: dict[str, Any] = {}
    for spec in default_specs(quick) if specs is None else specs:
        setdir = out / "sets" / spec.name
        setdir.mkdir(parents=True, exist_ok=True)
        rng = random.Random(f"{seed}/{spec.name}")
        files = []
        for i in range(spec.count):
            msg = message(spec, i, rng)
            for selector in reversed(spec.sign):
                msg = sign(msg, keys[(spec.domain, selector)])
            msg = tamper(msg, spec.tamper)
            for sealer in ARC_SEALERS[: spec.arc]:
                msg = arc_seal(msg, keys[(sealer, ARC_SELECTOR)])
            path = setdir / f"{i:03d}.eml"
            path.write_bytes(msg)
            files.append(str(path))
        sets[spec.name] = asdict(
            MessageSet(spec.name, tuple(files), _envelope(spec), _expect(spec))
        )
    zone = out / "bench.zone"
    zone.write_text(zone_text(list(keys.values())), encoding="utf-8")
    manifest = {
        "seed": seed,
        "quick": quick,
        "zone": str(zone),
        "keys": [asdict(k) for k in keys.values()],
        "sets": sets,
    }
    (out / "manifest.json").write_text(json.dumps(manifest, indent=1), encoding="utf-8")
    return manifest


def _envelope(spec: Spec) -> Envelope:
    if spec.outbound:
        return Envelope(
            SUBMIT_IP,
            SUBMIT_HELO,
            f"user@{spec.domain}",
            macros={"{auth_authen}": AUTH_USER, "{auth_type}": "PLAIN"},
        )
    return Envelope(spec.client_ip or INBOUND_IP, INBOUND_HELO, f"bounce@{spec.domain}")


def _expect(spec: Spec) -> dict[str, str]:
    if spec.outbound:
        return {"sign": spec.domain}
    spf = "fail" if spec.client_ip else "pass"
    dkim_ok = bool(spec.sign) and not spec.tamper
    dmarc = "pass" if dkim_ok or spf == "pass" else "fail"
    return {
        "spf": spf,
        "dkim": "pass" if dkim_ok else ("fail" if spec.sign else "none"),
        "dmarc": dmarc,
        "action": "accept" if dmarc == "pass" else "reject",
        "arc": "pass" if spec.arc else "none",
    }


def load_manifest(out: Path) -> dict[str, Any]:
    """Read ``manifest.json`` written by :func:`build`."""
    data: dict[str, Any] = json.loads((out / "manifest.json").read_text(encoding="utf-8"))
    return data


def main(argv: list[str] | None = None) -> int:
    """``python -m bench.corpus --out DIR [--seed S] [--quick]``."""
    p = argparse.ArgumentParser(prog="python -m bench.corpus")
    p.add_argument("--out", type=Path, default=Path(__file__).parent / "work" / "corpus")
    p.add_argument("--seed", default="authmilter-bench-1")
    p.add_argument("--quick", action="store_true")
    args = p.parse_args(argv)
    start = time.monotonic()
    manifest = build(args.out, args.seed, args.quick)
    n = sum(len(s["files"]) for s in manifest["sets"].values())
    print(
        f"{n} messages in {len(manifest['sets'])} sets, zone {manifest['zone']} "
        f"({time.monotonic() - start:.1f} s)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
