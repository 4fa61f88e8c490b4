"""Outbound signing: key selection, h= and oversigning, tags, folding, dkimpy agreement."""

from __future__ import annotations

import base64
import os
import re
import shutil
from pathlib import Path

import dkim
import dkim.util
import pytest

from authmilter.config import KeySpec, SigningConfig
from authmilter.errors import ConfigError
from authmilter.model import Transaction, parse_message
from authmilter.signing.signer import Signer, header_hash_input


def parse_tags(value: str) -> dict[str, str]:
    """The tags of a DKIM-Signature value, white space folded (dkimpy's parser)."""
    tags = dkim.util.parse_tag_value(value.encode())
    return {k.decode(): " ".join(v.decode().split()) for k, v in tags.items()}


DATA = Path(__file__).resolve().parent.parent / "data" / "signing"

MESSAGE = (
    b"Received: from x by y; Mon, 1 Jan 2024 00:00:00 +0000\r\n"
    b"From: Alice <alice@example.com>\r\n"
    b"To: bob@example.net\r\n"
    b"Subject:  hello   world\r\n\tfolded\r\n"
    b"Date: Mon, 1 Jan 2024 00:00:00 +0000\r\n"
    b"Message-ID: <x@example.com>\r\n"
    b"X-Other: not signed\r\n"
    b"\r\n"
    b"Hello  \r\nworld\r\n\r\n\r\n"
)


@pytest.fixture
def keydir(tmp_path: Path) -> Path:
    d = tmp_path / "keys"
    d.mkdir(mode=0o700)
    for name in ("rsa2048-pkcs1.pem", "rsa2048-pkcs8.pem", "ed25519.pem", "ed25519.seed"):
        shutil.copyfile(DATA / name, d / name)
        os.chmod(d / name, 0o600)
    return d


def dual(keydir: Path, **kw: object) -> Signer:
    cfg = SigningConfig(
        keys=(
            KeySpec("example.com", "rsa1", str(keydir / "rsa2048-pkcs1.pem")),
            KeySpec("example.com", "ed1", "keys/ed25519.pem"),  # relative to config dir
        ),
        **kw,  # type: ignore[arg-type]
    )
    return Signer.from_config(cfg, str(keydir.parent))


def dns_for(signer: Signer) -> dict[bytes, bytes]:
    return {
        f"{k.selector}._domainkey.{k.domain}.".encode(): (
            f"v=DKIM1; k={k.key.key_type}; p={k.key.public_p()}".encode()
        )
        for k in signer.keys
    }


def apply(tx: Transaction, edits: tuple) -> bytes:  # type: ignore[type-arg]
    out = tx.raw_message()
    for e in edits:
        assert e.name == "DKIM-Signature" and e.index == 0
        out = b"DKIM-Signature: " + e.value.replace("\n", "\r\n").encode() + b"\r\n" + out
    return out


def verify_all(message: bytes, records: dict[bytes, bytes], count: int) -> list[bool]:
    d = dkim.DKIM(message)
    return [
        bool(d.verify(idx=i, dnsfunc=lambda n, timeout=5: records.get(n))) for i in range(count)
    ]


@pytest.mark.parametrize(
    "canon", ["relaxed/relaxed", "simple/simple", "relaxed/simple", "simple/relaxed", "relaxed"]
)
def test_dual_signature_verifies(keydir: Path, canon: str) -> None:
    signer = dual(keydir, canonicalization=canon)
    tx = parse_message(MESSAGE)
    edits = signer.sign(tx, now=1_700_000_000)
    assert len(edits) == 2
    assert verify_all(apply(tx, edits), dns_for(signer), 2) == [True, True]


def test_tampered_message_fails(keydir: Path) -> None:
    signer = dual(keydir)
    tx = parse_message(MESSAGE)
    signed = apply(tx, signer.sign(tx)).replace(b"Subject:  hello", b"Subject:  HELLO")
    assert verify_all(signed, dns_for(signer), 2) == [False, False]


def test_added_from_breaks_oversigned_signature(keydir: Path) -> None:
    signer = dual(keydir)
    tx = parse_message(MESSAGE)
    signed = apply(tx, signer.sign(tx))
    forged = signed.replace(b"\r\n\r\nHello", b"\r\nFrom: evil@example.org\r\n\r\nHello")
    assert verify_all(forged, dns_for(signer), 2) == [False, False]


def test_tags_and_header_list(keydir: Path) -> None:
    signer = dual(keydir, expire=3600)
    tx = parse_message(MESSAGE)
    rsa_edit, ed_edit = signer.sign(tx, now=1_700_000_000)
    rsa = parse_tags(rsa_edit.value)
    ed = parse_tags(ed_edit.value)
    assert (rsa["a"], rsa["d"], rsa["s"], rsa["c"]) == (
        "rsa-sha256",
        "example.com",
        "rsa1",
        "relaxed/relaxed",
    )
    assert (ed["a"], ed["s"]) == ("ed25519-sha256", "ed1")
    assert rsa["t"] == "1700000000" and rsa["x"] == "1700003600"
    h = [x.strip() for x in rsa["h"].replace(" ", "").split(":")]
    # present fields from opendkim's default list in message order, then From once more
    assert h == ["From", "To", "Subject", "Date", "From"]
    assert "i" not in rsa


def test_no_expiry_by_default_and_tag_order(keydir: Path) -> None:
    (edit, _) = dual(keydir).sign(parse_message(MESSAGE), now=5)
    assert "x" not in parse_tags(edit.value)
    order = [t.split("=")[0].strip() for t in edit.value.split(";")]
    assert order == ["v", "a", "c", "d", "s", "t", "h", "bh", "b"]


def test_folding_lf_tab(keydir: Path) -> None:
    for edit in dual(keydir).sign(parse_message(MESSAGE)):
        assert "\r" not in edit.value
        lines = edit.value.split("\n")
        assert len(lines) > 1
        assert all(line.startswith("\t") for line in lines[1:])
        assert all(len(line.expandtabs(8)) <= 78 for line in lines[1:])
        assert len("DKIM-Signature: " + lines[0]) <= 78
        assert not edit.value.startswith(" ")


def test_custom_headers_and_oversign(keydir: Path) -> None:
    signer = dual(keydir, headers=("subject", "x-other"), oversign_headers=("From", "Reply-To"))
    tx = parse_message(MESSAGE)
    edits = signer.sign(tx)
    h = parse_tags(edits[0].value)["h"].replace(" ", "").split(":")
    assert h == ["From", "Subject", "X-Other", "From", "Reply-To"]
    assert verify_all(apply(tx, edits), dns_for(signer), 2) == [True, True]
    # a Reply-To added later breaks the signature (its absence was signed)
    forged = apply(tx, edits).replace(
        b"\r\n\r\nHello", b"\r\nReply-To: x@evil.example\r\n\r\nHello"
    )
    assert verify_all(forged, dns_for(signer), 2) == [False, False]


def test_not_signed_twice(keydir: Path) -> None:
    signer = dual(keydir)
    tx = parse_message(MESSAGE)
    once = apply(tx, signer.sign(tx)[:1])  # only the RSA signature present
    again = signer.sign(parse_message(once))
    assert [parse_tags(e.value)["s"] for e in again] == ["ed1"]
    assert signer.sign(parse_message(apply(tx, signer.sign(tx)))) == ()


@pytest.mark.parametrize(
    "from_header",
    [
        b"",
        b"From: a@example.com\r\nFrom: b@example.com\r\n",
        b"From: a@example.com, b@example.com\r\n",
        b"From: undisclosed\r\n",
        b"From: a@other.example\r\n",
        b"From: a@sub.example.com\r\n",
    ],
)
def test_no_signature(keydir: Path, from_header: bytes) -> None:
    message = from_header + b"Subject: x\r\n\r\nbody\r\n"
    tx = parse_message(message)
    signer = dual(keydir)
    assert signer.sign(tx) == ()
    assert signer.domains_for(tx) == ()


def test_subdomains(keydir: Path) -> None:
    signer = dual(keydir, subdomains=True)
    tx = parse_message(b"From: a@deep.sub.Example.com\r\nSubject: x\r\n\r\nbody\r\n")
    assert signer.domains_for(tx) == ("example.com",)
    edits = signer.sign(tx)
    assert len(edits) == 2
    assert verify_all(apply(tx, edits), dns_for(signer), 2) == [True, True]


def test_signers_patterns(keydir: Path) -> None:
    cfg = SigningConfig(
        keys=(
            KeySpec(
                "example.com", "rsa1", str(keydir / "rsa2048-pkcs1.pem"), ("boss@example.com",)
            ),
            KeySpec("example.com", "ed1", str(keydir / "ed25519.seed"), ("*@example.com",)),
        )
    )
    signer = Signer.from_config(cfg, "/")
    boss = parse_message(b"From: boss@example.com\r\n\r\n")
    other = parse_message(b"From: other@example.com\r\n\r\n")
    assert [parse_tags(e.value)["s"] for e in signer.sign(boss)] == ["rsa1", "ed1"]
    assert [parse_tags(e.value)["s"] for e in signer.sign(other)] == ["ed1"]


def test_tables(keydir: Path, tmp_path: Path) -> None:
    (tmp_path / "KeyTable").write_text(
        f"rsa example.com:rsa1:{keydir}/rsa2048-pkcs8.pem\n"
        "ed  example.com:ed1:keys/ed25519.pem\n"
        f"any %:any:{keydir}/ed25519.seed\n"
    )
    (tmp_path / "SigningTable").write_text(
        "*@example.com rsa\n*@example.com ed %\n*@example.org any\n"
    )
    cfg = SigningConfig(key_table="KeyTable", signing_table="refile:SigningTable")
    signer = Signer.from_config(cfg, str(tmp_path))
    assert signer.has_keys
    tx = parse_message(MESSAGE)
    edits = signer.sign(tx)
    assert [parse_tags(e.value)["s"] for e in edits] == ["rsa1", "ed1"]
    assert parse_tags(edits[1].value)["i"] == "@example.com"
    org = parse_message(b"From: x@Example.ORG\r\n\r\nhi\r\n")
    (edit,) = signer.sign(org)
    assert parse_tags(edit.value)["d"] == "example.org"  # % = the sender's domain


def test_config_errors(keydir: Path, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="must be given together"):
        Signer.from_config(SigningConfig(key_table="kt"), str(tmp_path))
    (tmp_path / "kt").write_text(f"rsa example.com:rsa1:{keydir}/rsa2048-pkcs8.pem\n")
    (tmp_path / "st").write_text("example.com nokey\n")
    with pytest.raises(ConfigError, match=r"st:1: the key name is not in the KeyTable"):
        Signer.from_config(SigningConfig(key_table="kt", signing_table="st"), str(tmp_path))
    (tmp_path / "kt").write_text(f"rsa example.com:rsa1:{keydir}/missing.pem\n")
    (tmp_path / "st").write_text("example.com rsa\n")
    with pytest.raises(ConfigError, match=r"missing.pem: key file does not exist .*kt:1"):
        Signer.from_config(SigningConfig(key_table="kt", signing_table="st"), str(tmp_path))


def test_empty_and_disabled(keydir: Path) -> None:
    assert not Signer.from_config(SigningConfig(), "/").has_keys
    assert Signer.from_config(SigningConfig(), "/").sign(parse_message(MESSAGE)) == ()
    cfg = SigningConfig(enabled=False, keys=(KeySpec("example.com", "s", "/nonexistent"),))
    assert not Signer.from_config(cfg, "/").has_keys


# --------------------------------------------------------------- byte equality with dkimpy

_B = re.compile(rb"(b=)[A-Za-z0-9+/=\s]*$")


@pytest.mark.parametrize("canon", [(b"relaxed", b"relaxed"), (b"simple", b"simple")])
@pytest.mark.parametrize("kind", ["rsa", "ed25519"])
def test_same_signature_as_dkimpy(keydir: Path, canon: tuple[bytes, bytes], kind: str) -> None:
    """For dkimpy's own signature field, our header hash + cryptography give the same b=."""
    if kind == "rsa":
        signer = dual(keydir)
        key = signer.keys[0].key
        privkey = (keydir / "rsa2048-pkcs1.pem").read_bytes()
        algorithm = b"rsa-sha256"
    else:
        cfg = SigningConfig(keys=(KeySpec("example.com", "ed1", str(keydir / "ed25519.seed")),))
        key = Signer.from_config(cfg, "/").keys[0].key
        privkey = (keydir / "ed25519.seed").read_bytes()
        algorithm = b"ed25519-sha256"
    include = [b"from", b"to", b"subject", b"date", b"from"]
    field = dkim.sign(
        MESSAGE,
        b"sel",
        b"example.com",
        privkey,
        canonicalize=canon,
        signature_algorithm=algorithm,
        include_headers=include,
    )
    assert field.startswith(b"DKIM-Signature: ")
    value = field[len(b"DKIM-Signature: ") :].rstrip(b"\r\n")
    unsigned = _B.sub(rb"\1", value).decode()
    dkimpy_b = re.sub(r"\s", "", parse_tags(value.decode())["b"])
    data = header_hash_input(
        canon[0].decode(), parse_message(MESSAGE).headers, [h.decode() for h in include], unsigned
    )
    assert base64.b64encode(key.sign(data)).decode() == dkimpy_b
    # and our body hash is dkimpy's
    tx = parse_message(MESSAGE)
    ours = Signer.from_config(
        SigningConfig(
            canonicalization="/".join(c.decode() for c in canon),
            keys=(KeySpec("example.com", "x", str(keydir / "ed25519.pem")),),
        ),
        "/",
    ).sign(tx)[0]
    assert parse_tags(ours.value)["bh"] == parse_tags(value.decode())["bh"]
