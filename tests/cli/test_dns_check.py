"""``authmilter dns-check``: every finding, on a zone set of good and broken records served
by the loopback DNS server, through the command line (``--json`` and the human report),
and on the shipped example zone."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from authmilter.cli import main
from tests.support.dnsserver import DnsServer
from tests.support.keys import new_ed25519_key, new_rsa_key, shared_rsa_key

REPO = Path(__file__).resolve().parents[2]
EXAMPLE_ZONE = REPO / "conf" / "examples" / "example.net.zone"
HOST = "mail.good.example"
IP = "192.0.2.25"
KEY = shared_rsa_key(2048)  # the "%" key: selector "sel" signs every domain
SMALL = shared_rsa_key(1024)  # small.example's second key, selector "s1024"
OTHER = new_rsa_key(2048)  # a key nobody signs with
ED = new_ed25519_key(bytes(range(1, 33)))
TINY = (REPO / "tests" / "data" / "dkim" / "rsa512.pub").read_text().strip()  # 512 bits

GOOD_DMARC = '"v=DMARC1; p=reject; rua=mailto:dmarc@SELF"'


def domain(name: str, *, spf: str = "", dmarc: str = "", dkim: str = "", mx: str = "") -> str:
    """A domain with good records unless told otherwise ("-" leaves a record out); ``SELF``
    in the DMARC record is the domain."""
    dmarc = (dmarc or GOOD_DMARC).replace("SELF", name)
    lines = [
        f"{name}. TXT {spf or quoted('v=spf1 ip4:192.0.2.25 -all')}" if spf != "-" else "",
        f"_dmarc.{name}. TXT {dmarc}" if dmarc != "-" else "",
        f"sel._domainkey.{name}. TXT {dkim or quoted(KEY.txt)}" if dkim != "-" else "",
        f"{name}. MX {mx or f'10 {HOST}.'}" if mx != "-" else "",
    ]
    return "\n".join(line for line in lines if line) + "\n"


def quoted(text: str) -> str:
    return '"' + text + '"'


def spf(text: str) -> str:
    return quoted(text)


ZONE = (
    "$TTL 300\n"
    # this host, and other hosts' reverse DNS
    f"{HOST}. A {IP}\n"
    f"25.2.0.192.in-addr.arpa. PTR {HOST}.\n"
    "26.2.0.192.in-addr.arpa. PTR unconfirmed.good.example.\n"  # no address: iprev fail
    "27.2.0.192.in-addr.arpa. PTR other.good.example.\n"
    "other.good.example. A 192.0.2.27\n"
    "nameless.good.example. A 192.0.2.28\n"  # no PTR at all
    + domain("good.example")
    # SPF
    + domain("nospf.example", spf="-")
    + domain("twospf.example")
    + 'twospf.example. TXT "v=spf1 -all"\n'
    + domain("badspf.example", spf=spf("v=spf1 ip4:192.0.2.300 -all"))
    + domain("passall.example", spf=spf("v=spf1 ip4:192.0.2.25 +all"))
    + domain("neutralall.example", spf=spf("v=spf1 ip4:192.0.2.25 ?all"))
    + domain("noall.example", spf=spf("v=spf1 ip4:192.0.2.25"))
    + domain("afterall.example", spf=spf("v=spf1 ip4:192.0.2.25 -all a"))
    + domain("redirectall.example", spf=spf("v=spf1 ip4:192.0.2.25 -all redirect=good.example"))
    + domain("ptr.example", spf=spf("v=spf1 ip4:192.0.2.25 ptr -all"))
    + domain("macro.example", spf=spf("v=spf1 ip4:192.0.2.25 exists:%{i}._spf.good.example -all"))
    + domain("include.example", spf=spf("v=spf1 ip4:192.0.2.25 include:nothing.example -all"))
    + domain("redirect.example", spf=spf("v=spf1 redirect=nothing.example"))
    + domain("loop.example", spf=spf("v=spf1 ip4:192.0.2.25 include:loop2.example -all"))
    + 'loop2.example. TXT "v=spf1 include:loop.example -all"\n'
    + domain("manymx.example", spf=spf("v=spf1 ip4:192.0.2.25 mx -all"), mx="-")
    + "".join(f"manymx.example. MX {i} {HOST}.\n" for i in range(11))
    + domain(
        "lookups.example",
        spf=spf("v=spf1 " + " ".join(f"a:h{i}.good.example" for i in range(11)) + " -all"),
    )
    + domain(
        "near.example",
        spf=spf("v=spf1 " + " ".join(f"a:h{i}.good.example" for i in range(9)) + " -all"),
    )
    + "".join(
        f"h{i}.good.example. A 192.0.2.25\nh{i}.good.example. AAAA 2001:db8::25\n"
        for i in range(11)
    )
    + domain(
        "void.example",
        spf=spf("v=spf1 a:v1.example a:v2.example a:v3.example ip4:192.0.2.25 -all"),
    )
    + domain("elsewhere.example", spf=spf("v=spf1 ip4:192.0.2.99 -all"))
    + domain("open.example", spf=spf("v=spf1 ip4:0.0.0.0/0 -all"))
    + domain("hidden.example", spf=spf("v=spf1 ip4:192.0.2.25 include:%{d}.inc.good.example -all"))
    + 'hidden.example.inc.good.example. TXT "v=spf1 ip4:1.2.3.999 -all"\n'
    + domain("escape.example", spf=spf("v=spf1 ip4:192.0.2.25 \\027[2J\\013x -all"))
    # DKIM
    + domain("nodkim.example", dkim="-")
    + domain("twodkim.example")
    + f"sel._domainkey.twodkim.example. TXT {quoted(KEY.txt)}\n".replace("k=rsa", "k=rsa ")
    + domain("otherkey.example", dkim=quoted(OTHER.txt))
    + domain("revoked.example", dkim='"v=DKIM1; k=rsa; p="')
    + domain("keytype.example", dkim=quoted(KEY.txt.replace("k=rsa", "k=ed25519")))
    + domain("hash.example", dkim=quoted(KEY.txt.replace("k=rsa;", "k=rsa; h=sha1;")))
    + domain("service.example", dkim=quoted(KEY.txt.replace("k=rsa;", "k=rsa; s=other;")))
    + domain("version.example", dkim=quoted(KEY.txt.replace("v=DKIM1", "v=DKIM2")))
    + domain("testing.example", dkim=quoted(KEY.txt.replace("k=rsa;", "k=rsa; t=y;")))
    + domain("small.example")
    + f"s1024._domainkey.small.example. TXT {quoted(SMALL.txt)}\n"
    + f"tiny._domainkey.good.example. TXT {quoted('v=DKIM1; k=rsa; p=' + TINY)}\n"
    + 'junk._domainkey.good.example. TXT "v=DKIM1; k=rsa; p=AAAA"\n'
    + f"ed._domainkey.good.example. TXT {quoted(ED.txt)}\n"
    # DMARC
    + domain("nodmarc.example", dmarc="-")
    + domain("twodmarc.example")
    + '_dmarc.twodmarc.example. TXT "v=DMARC1; p=none"\n'
    + domain("badp.example", dmarc='"v=DMARC1; p=bogus"')
    + domain("badtag.example", dmarc='"v=DMARC1; p=reject; adkim=x; rua=mailto:d@SELF"')
    + domain("pct.example", dmarc='"v=DMARC1; p=reject; pct=50; rua=mailto:d@SELF"')
    + domain("psd.example", dmarc='"v=DMARC1; p=reject; psd=y; rua=mailto:d@SELF"')
    + domain("testdmarc.example", dmarc='"v=DMARC1; p=reject; t=y; rua=mailto:d@SELF"')
    + domain("pnone.example", dmarc='"v=DMARC1; p=none; rua=mailto:d@SELF"')
    + domain("spweak.example", dmarc='"v=DMARC1; p=reject; sp=none; np=reject; rua=mailto:d@SELF"')
    + domain("nonp.example", dmarc='"v=DMARC1; p=quarantine; rua=mailto:d@SELF"')
    + domain("norua.example", dmarc='"v=DMARC1; p=reject"')
    + domain("https.example", dmarc='"v=DMARC1; p=reject; rua=https://r.good.example/x"')
    + domain("external.example", dmarc='"v=DMARC1; p=reject; rua=mailto:r@reports.example!10m"')
    + domain("allowed.example", dmarc='"v=DMARC1; p=reject; rua=mailto:r@reports.example"')
    + 'allowed.example._report._dmarc.reports.example. TXT "v=DMARC1"\n'
    + domain("twice.example", dmarc='"v=DMARC1; p=reject; rua=mailto:r@reports.example"')
    + 'twice.example._report._dmarc.reports.example. TXT "v=DMARC1"\n'
    + 'twice.example._report._dmarc.reports.example. TXT "other"\n'
    + "reports.example. MX 10 mx.reports.example.\n"
    + domain("sub.good.example", dmarc="-")  # inherits good.example's policy
    + domain("org.suffix.example", dmarc="-")  # only its public suffix has a policy
    + '_dmarc.suffix.example. TXT "v=DMARC1; p=reject; psd=y"\n'
    # MX
    + domain("nomx.example", mx="-")
    + domain("nullmx.example", mx="0 .")
    + domain("mxnoaddr.example", mx="10 nowhere.good.example.")
    + domain("mxcname.example", mx="10 alias.good.example.")
    + f"alias.good.example. CNAME {HOST}.\n"
)


@pytest.fixture(scope="module")
def dns() -> Iterator[DnsServer]:
    with DnsServer(ZONE) as server:
        yield server


@pytest.fixture(scope="module")
def config(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A config that signs every domain with KEY (selector sel), and small.example also
    with a 1024-bit key."""
    base = tmp_path_factory.mktemp("dnscheck")
    KEY.write(base / "sel.private")
    SMALL.write(base / "s1024.private")
    path = base / "authmilter.toml"
    path.write_text(
        '[[signing.keys]]\ndomain = "%"\nselector = "sel"\nkey_file = "sel.private"\n'
        'signers = ["*"]\n\n'
        '[[signing.keys]]\ndomain = "small.example"\nselector = "s1024"\n'
        'key_file = "s1024.private"\n'
    )
    return path


def run(
    capsys: pytest.CaptureFixture[str], *args: str, expect: int | None = None
) -> tuple[int, dict[str, Any]]:
    code = main(["dns-check", "--json", *args])
    out = capsys.readouterr().out
    if expect is not None:
        assert code == expect, out
    report = json.loads(out)
    assert report["exit"] == code
    return code, report


def check(
    capsys: pytest.CaptureFixture[str], dns: DnsServer, config: Path, name: str, *extra: str
) -> dict[str, Any]:
    """The report section of one domain, checked from this host (--ip 192.0.2.25)."""
    _, report = run(
        capsys,
        "-c",
        str(config),
        "--nameserver",
        dns.address,
        "--host",
        HOST,
        "--ip",
        IP,
        *extra,
        name,
    )
    assert report["host"]["findings"] == [], report["host"]
    (section,) = report["domains"]
    for finding in section["findings"]:
        assert set(finding) == {"level", "code", "text", "fix"}
        assert finding["text"] and finding["fix"] and "\n" not in finding["fix"]
    return dict(section)


def codes(section: dict[str, Any]) -> set[tuple[str, str]]:
    return {(f["level"], f["code"]) for f in section["findings"]}


# --------------------------------------------------------------------------- good records


def test_good_domain_has_no_finding(
    capsys: pytest.CaptureFixture[str], dns: DnsServer, config: Path
) -> None:
    code, report = run(
        capsys, "-c", str(config), "--nameserver", dns.address, "--host", HOST, "good.example"
    )
    assert code == 0
    assert report["host"] == {
        "name": HOST,
        "addresses": [IP],
        "findings": [],
        "unchecked": [],
    }
    (section,) = report["domains"]
    assert section["findings"] == [] and section["unchecked"] == []
    assert section["spf"] == "v=spf1 ip4:192.0.2.25 -all" and section["spf_lookups"] == 0
    assert section["dkim"] == ["sel._domainkey.good.example"]
    assert section["dmarc_policy"] == "reject" and section["mx"] == [f"10 {HOST}"]
    assert report["summary"] == {"errors": 0, "warnings": 0, "advice": 0, "unchecked": 0}


def test_subdomain_is_judged_by_its_organizational_domain_policy(
    capsys: pytest.CaptureFixture[str], dns: DnsServer, config: Path
) -> None:
    section = check(capsys, dns, config, "sub.good.example")
    assert section["findings"] == []
    assert section["dmarc_policy_domain"] == "good.example"
    assert section["dmarc_org_domain"] == "good.example"


def test_authorized_external_report_destination(
    capsys: pytest.CaptureFixture[str], dns: DnsServer, config: Path
) -> None:
    assert check(capsys, dns, config, "allowed.example")["findings"] == []


# --------------------------------------------------------------------------- each finding

E, W, A = "error", "warning", "advice"
CASES = [
    # SPF
    ("nospf.example", {(E, "spf-missing")}),
    ("twospf.example", {(E, "spf-multiple")}),
    ("badspf.example", {(E, "spf-syntax")}),
    ("escape.example", {(E, "spf-syntax")}),
    ("passall.example", {(E, "spf-pass-all")}),
    ("neutralall.example", {(W, "spf-neutral-all")}),
    ("noall.example", {(W, "spf-no-all")}),
    ("afterall.example", {(W, "spf-after-all")}),
    ("redirectall.example", {(W, "spf-redirect-ignored")}),
    ("ptr.example", {(W, "spf-ptr")}),
    ("macro.example", {(A, "spf-macro")}),
    ("include.example", {(E, "spf-include-missing")}),
    ("redirect.example", {(E, "spf-redirect-missing")}),
    ("loop.example", {(E, "spf-loop")}),
    ("manymx.example", {(E, "spf-mx-too-many")}),
    ("lookups.example", {(E, "spf-too-many-lookups")}),
    ("near.example", {(A, "spf-lookups-near-limit")}),
    ("void.example", {(E, "spf-void-lookups")}),
    ("elsewhere.example", {(E, "spf-host-not-permitted")}),
    ("open.example", {(E, "spf-open")}),
    ("hidden.example", {(A, "spf-macro"), (E, "spf-permerror")}),
    # DKIM
    ("nodkim.example", {(E, "dkim-missing")}),
    ("twodkim.example", {(E, "dkim-multiple")}),
    ("otherkey.example", {(E, "dkim-mismatch")}),
    ("revoked.example", {(E, "dkim-revoked")}),
    ("keytype.example", {(E, "dkim-key-type")}),
    ("hash.example", {(E, "dkim-hash")}),
    ("service.example", {(E, "dkim-service")}),
    ("version.example", {(E, "dkim-syntax")}),
    ("testing.example", {(W, "dkim-testing")}),
    ("small.example", {(W, "dkim-key-size")}),
    # DMARC
    ("nodmarc.example", {(W, "dmarc-missing")}),
    ("org.suffix.example", {(W, "dmarc-missing")}),
    ("twodmarc.example", {(E, "dmarc-multiple")}),
    ("badp.example", {(E, "dmarc-policy-invalid"), (A, "dmarc-no-rua"), (A, "dmarc-p-none")}),
    ("badtag.example", {(W, "dmarc-syntax")}),
    ("pct.example", {(A, "dmarc-obsolete-tag")}),
    ("psd.example", {(W, "dmarc-psd")}),
    ("testdmarc.example", {(W, "dmarc-testing")}),
    ("pnone.example", {(A, "dmarc-p-none")}),
    ("spweak.example", {(A, "dmarc-sp-weaker")}),
    ("nonp.example", {(A, "dmarc-np")}),
    ("norua.example", {(A, "dmarc-no-rua")}),
    ("https.example", {(W, "dmarc-uri-scheme"), (A, "dmarc-no-rua")}),
    ("external.example", {(E, "dmarc-report-unauthorized")}),
    ("twice.example", {(W, "dmarc-report-ambiguous")}),
    # MX
    ("nomx.example", {(W, "mx-missing")}),
    ("nullmx.example", {(A, "mx-null")}),
    ("mxnoaddr.example", {(E, "mx-no-address")}),
    ("mxcname.example", {(W, "mx-cname")}),
]


@pytest.mark.parametrize(("name", "expected"), CASES, ids=[c[0] for c in CASES])
def test_each_finding(
    capsys: pytest.CaptureFixture[str],
    dns: DnsServer,
    config: Path,
    name: str,
    expected: set[tuple[str, str]],
) -> None:
    section = check(capsys, dns, config, name)
    assert codes(section) == expected, section["findings"]


def test_finding_text_names_what_and_where(
    capsys: pytest.CaptureFixture[str], dns: DnsServer, config: Path
) -> None:
    (found,) = check(capsys, dns, config, "elsewhere.example")["findings"]
    assert found["text"] == (
        "this host's address 192.0.2.25 gets spf=fail from the SPF record of elsewhere.example"
    )
    assert found["fix"] == "add ip4:192.0.2.25 to the SPF record of elsewhere.example"
    (found,) = check(capsys, dns, config, "external.example")["findings"]
    assert "external.example._report._dmarc.reports.example" in found["fix"]
    (found,) = check(capsys, dns, config, "lookups.example")["findings"]
    assert found["text"].startswith("11 DNS-querying terms")
    (found,) = check(capsys, dns, config, "void.example")["findings"]
    assert found["text"].startswith("3 lookups of the SPF record of void.example find nothing")


def test_dkim_no_key_without_a_signing_key(
    capsys: pytest.CaptureFixture[str], dns: DnsServer, tmp_path: Path
) -> None:
    empty = tmp_path / "empty.toml"
    empty.write_text("")
    section = check(capsys, dns, empty, "good.example")
    assert codes(section) == {(W, "dkim-no-key")}
    assert section["dkim"] == []


SELECTOR_CASES = [
    ("otherkey.example", "sel", set()),  # nothing to compare it with
    ("good.example", "ed", set()),  # k=ed25519: judged for ed25519-sha256
    ("good.example", "gone", {(E, "dkim-missing")}),
    ("hash.example", "sel", {(E, "dkim-hash")}),
    ("good.example", "tiny", {(E, "dkim-key-size")}),  # under RFC 8301's 1024 bits
    ("good.example", "junk", {(E, "dkim-unusable")}),
]


@pytest.mark.parametrize("case", SELECTOR_CASES, ids=[f"{c[1]}@{c[0]}" for c in SELECTOR_CASES])
def test_selector_without_private_key(
    capsys: pytest.CaptureFixture[str],
    dns: DnsServer,
    tmp_path: Path,
    case: tuple[str, str, set[tuple[str, str]]],
) -> None:
    """--selector: the record judged as a verifier would, nothing compared."""
    name, selector, expected = case
    empty = tmp_path / "empty.toml"
    empty.write_text("")
    section = check(capsys, dns, empty, name, "--selector", selector)
    assert codes(section) == expected
    assert section["dkim"] == [f"{selector}._domainkey.{name}"]


# --------------------------------------------------------------------------- this host


HOST_CASES = [
    (["--ip", "192.0.2.28"], {(E, "ptr-missing")}),
    (["--ip", "192.0.2.26"], {(E, "ptr-not-confirmed")}),
    (["--ip", "192.0.2.27"], {(A, "ptr-other-name")}),
    ([], set()),  # the addresses of --host: 192.0.2.25, whose PTR names this host
]


@pytest.mark.parametrize(("args", "expected"), HOST_CASES)
def test_host_reverse_dns(
    capsys: pytest.CaptureFixture[str],
    dns: DnsServer,
    config: Path,
    args: list[str],
    expected: set[tuple[str, str]],
) -> None:
    common = ["-c", str(config), "--nameserver", dns.address, "--host", HOST]
    _, report = run(capsys, *common, *args, "good.example")
    assert codes(report["host"]) == expected


def test_host_without_address(
    capsys: pytest.CaptureFixture[str], dns: DnsServer, config: Path
) -> None:
    common = ["-c", str(config), "--nameserver", dns.address]
    _, report = run(capsys, *common, "--host", "unknown.good.example", "good.example", expect=1)
    assert codes(report["host"]) == {(E, "host-no-address")}
    assert report["host"]["addresses"] == []


# --------------------------------------------------------------------------- exit status


def test_exit_1_on_errors_and_0_with_warnings_only(
    capsys: pytest.CaptureFixture[str], dns: DnsServer, config: Path
) -> None:
    common = ["-c", str(config), "--nameserver", dns.address, "--host", HOST]
    assert run(capsys, *common, "nospf.example")[0] == 1
    assert run(capsys, *common, "neutralall.example", "pnone.example")[0] == 0


def test_exit_75_when_dns_fails(
    capsys: pytest.CaptureFixture[str], dns: DnsServer, config: Path
) -> None:
    common = ["-c", str(config), "--nameserver", dns.address, "--host", HOST]
    dns.set_fault("_dmarc.good.example", "servfail")
    try:
        code, report = run(capsys, *common, "good.example")
    finally:
        dns.clear_faults()
    assert code == 75
    (section,) = report["domains"]
    assert section["findings"] == []
    assert [u["check"] for u in section["unchecked"]] == ["dmarc"]
    # an error found elsewhere still makes it 1
    dns.set_fault("_dmarc.nospf.example", "servfail")
    try:
        assert run(capsys, *common, "nospf.example")[0] == 1
    finally:
        dns.clear_faults()


# --------------------------------------------------------------------------- the command


def test_human_report(capsys: pytest.CaptureFixture[str], dns: DnsServer, config: Path) -> None:
    args = ["-c", str(config), "--nameserver", dns.address, "--host", HOST, "--ip", IP]
    assert main(["dns-check", *args, "good.example", "escape.example", "nomx.example"]) == 1
    out = capsys.readouterr().out
    assert all(line.isprintable() for line in out.splitlines()), out  # no escape reaches it
    lines = out.splitlines()
    assert lines[:2] == [f"host {HOST} ({IP})", "  ok"]
    assert lines[2:4] == ["good.example", "  ok"]
    assert lines[4] == "escape.example"
    assert lines[5].startswith("  error    spf-syntax: ")
    assert lines[6].startswith("           fix: ")
    assert "nomx.example" in lines and "  warning  mx-missing: " in "\n".join(lines)
    assert lines[-1] == "1 error(s), 1 warning(s), 0 advice, 0 unchecked"


def test_no_argument_checks_every_signing_domain(
    capsys: pytest.CaptureFixture[str], dns: DnsServer, tmp_path: Path
) -> None:
    KEY.write(tmp_path / "a.private")
    cfg = tmp_path / "authmilter.toml"
    cfg.write_text(
        '[[signing.keys]]\ndomain = "nodmarc.example"\nselector = "sel"\n'
        'key_file = "a.private"\n\n'
        '[[signing.keys]]\ndomain = "good.example"\nselector = "sel"\nkey_file = "a.private"\n'
    )
    _, report = run(capsys, "-c", str(cfg), "--nameserver", dns.address, "--host", HOST)
    assert [d["domain"] for d in report["domains"]] == ["good.example", "nodmarc.example"]
    assert report["exit"] == 0  # dmarc-missing is a warning


def test_usage_errors(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    empty = tmp_path / "empty.toml"
    empty.write_text("")
    zone = ["--zone", str(EXAMPLE_ZONE)]
    assert main(["dns-check", "-c", str(empty), *zone]) == 2  # no domain anywhere
    assert main(["dns-check", "-c", str(empty), *zone, "--ip", "nope", "example.net"]) == 2
    assert main(["dns-check", "-c", str(empty), *zone, "bad domain!"]) == 2
    assert main(["dns-check", "-c", str(tmp_path / "missing.toml"), *zone, "example.net"]) == 78
    err = capsys.readouterr().err
    assert "name the domains to check" in err and "--ip" in err and "not a domain name" in err


# --------------------------------------------------------------------------- the example zone


def test_shipped_example_zone_is_clean(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    empty = tmp_path / "empty.toml"
    empty.write_text("")
    args = ["-c", str(empty), "--host", "mail.example.net", "--selector", "rsa2026"]
    args += ["--selector", "ed2026", "example.net"]
    _, from_file = run(capsys, "--zone", str(EXAMPLE_ZONE), *args, expect=0)
    with DnsServer(EXAMPLE_ZONE) as server:
        _, served = run(capsys, "--nameserver", server.address, *args, expect=0)
    assert from_file == served
    (section,) = served["domains"]
    assert section["findings"] == [] and served["host"]["addresses"] == ["192.0.2.25"]
    assert section["dkim"] == ["rsa2026._domainkey.example.net", "ed2026._domainkey.example.net"]
    assert section["dmarc_policy"] == "reject"


def test_example_zone_from_elsewhere(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """The same zone, checked for a host it does not describe."""
    empty = tmp_path / "empty.toml"
    empty.write_text("")
    args = ["-c", str(empty), "--zone", str(EXAMPLE_ZONE), "--host", "mail.example.net"]
    _, report = run(capsys, *args, "--ip", "203.0.113.9", "example.net", expect=1)
    assert codes(report["host"]) == {(E, "ptr-missing")}
    (section,) = report["domains"]
    assert codes(section) == {(E, "spf-host-not-permitted"), (W, "dkim-no-key")}


def test_every_finding_code_has_a_test() -> None:
    """Each code the audit can report is expected by one of the cases above."""
    source = "".join(p.read_text() for p in (REPO / "milter/authmilter/audit").glob("*.py"))
    reported = set(re.findall(r'"((?:spf|dkim|dmarc|mx|ptr|host)-[a-z-]+)"', source))
    tested = {code for _, found in CASES for _, code in found}
    tested |= {code for *_, found in SELECTOR_CASES for _, code in found}
    tested |= {code for _, found in HOST_CASES for _, code in found}
    tested |= {"dkim-no-key", "host-no-address"}  # their own tests above
    assert reported == tested
