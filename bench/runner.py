"""The benchmark run: DNS server, milters, warm-up, measured rounds, verdict check.

Every run of a target is measured the same way: CPU seconds of the target's process trees
(the sum over a chain such as opendkim+opendmarc) from /proc deltas, peak RSS (VmHWM after a
reset, and sampled VmRSS), the bench DNS server's CPU, and the load client's own CPU.
Rounds interleave the targets (round 1: a b c, round 2: b c a, ...) so slow drift of the
machine spreads over all of them; ratios are taken per round, then their median.

Every run of every target is checked, not only authmilter's: each milter of the chain must
deliver the verdict fields it is responsible for (:data:`bench.milters.CHECKS`) with the
scenario's expected values, answer every message, and sign verifiably where it signs. A run
that does not is *invalid*, with the reason (:func:`invalid_reason`), and no ratio is taken
from it (:mod:`bench.report`).
"""

from __future__ import annotations

import json
import shutil
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import dkim

from bench import loadgen, milters, procstat
from bench.procs import Proc, ProcGroup
from bench.procstat import Meter

REPO = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Scenario:
    """One table of RESULTS.md."""

    name: str
    message_set: str
    targets: dict[str, tuple[str, ...]]
    concurrencies: tuple[int, ...]
    duration: float  # seconds per measured run (upper bound)
    count: int  # messages per measured run (upper bound)
    title: str = ""
    # the expected verdict; each target is held to the fields its milters check
    expect: dict[str, str] = field(default_factory=dict)

    def expect_of(self, target: str) -> dict[str, str]:
        """What ``target``'s verdict must say in this scenario."""
        fields = milters.checked_fields(self.targets[target])
        return {k: v for k, v in self.expect.items() if k in fields}


def scenarios(quick: bool = False) -> list[Scenario]:
    """The scenarios of the issue (short and few in quick mode)."""
    d2k, d10m = (1.0, 3.0) if quick else (6.0, 20.0)
    n2k, n10m = (2000, 4) if quick else (50000, 400)
    inbound = dict(milters.INBOUND_TARGETS)
    # arc=none: no chain (RFC 8617 section 10); only authmilter is held to arc=
    ok = {"action": "accept", "spf": "pass", "dkim": "pass", "dmarc": "pass", "arc": "none"}
    all_c = (4,) if quick else (1, 4, 16)
    big_c = (4,) if quick else (4, 16)
    out = [
        Scenario(  # with authmilter-bare: recording + metrics on (authmilter) vs off
            "inbound-2k-rsa",
            "inbound-2k-rsa",
            {**inbound, **milters.BARE_TARGETS},
            all_c,
            d2k,
            n2k,
            "Inbound 2 KB, one RSA-2048 signature (authmilter-bare: no recording, no metrics)",
            ok,
        ),
        Scenario(  # issue 11: authmilter's CPU/msg at most 1.5x that of inbound-2k-rsa
            "inbound-2k-arc3",
            "inbound-2k-arc3",
            inbound,
            (4,) if quick else (16,),
            d2k,
            n2k,
            "Inbound 2 KB, one RSA-2048 signature, then a 3-set ARC chain (three RSA-2048 "
            "sealers; about 7 KB with the ARC fields)",
            {**ok, "arc": "pass"},
        ),
        Scenario(
            "inbound-100k-rsa",
            "inbound-100k-rsa",
            inbound,
            (4,) if quick else (16,),
            d2k,
            n2k,
            "Inbound 100 KB, one RSA-2048 signature",
            ok,
        ),
        Scenario(
            "inbound-10m-rsa",
            "inbound-10m-rsa",
            inbound,
            big_c,
            d10m,
            n10m,
            "Inbound 10 MB, one RSA-2048 signature (peak RSS)",
            ok,
        ),
        Scenario(
            "sign-2k-rsa",
            "sign-2k-rsa",
            dict(milters.SIGN_TARGETS),
            (4,),
            d2k,
            n2k,
            "Sign 2 KB, RSA-2048 (authenticated client)",
            {"action": "accept", "signatures": "rsa-sha256@rsa-signer.example"},
        ),
        Scenario(
            "sign-2k-ed25519",
            "sign-2k-ed25519",
            dict(milters.SIGN_ED_TARGETS),
            (4,),
            d2k,
            n2k,
            "Sign 2 KB, Ed25519 (authenticated client)",
            {"action": "accept", "signatures": "ed25519-sha256@ed-signer.example"},
        ),
        Scenario(
            "sign-10m-rsa",
            "sign-10m-rsa",
            dict(milters.SIGN_TARGETS),
            (4,),
            d10m,
            n10m,
            "Sign 10 MB, RSA-2048 (authenticated client)",
            {"action": "accept", "signatures": "rsa-sha256@rsa-signer.example"},
        ),
    ]
    out.sort(key=lambda s: "10m" in s.name)  # big messages last: Python keeps the heap
    if not quick:
        out.insert(
            1,
            Scenario(
                "inbound-2k-ed25519",
                "inbound-2k-ed25519",
                inbound,
                (16,),
                d2k,
                n2k,
                "Inbound 2 KB, one Ed25519 signature (extra)",
                ok,
            ),
        )
    return out


@dataclass
class Measurement:
    """One measured run of one target."""

    scenario: str
    target: str
    concurrency: int
    round: int
    messages: int
    errors: int
    wall_s: float
    rate: float
    p50_ms: float
    p99_ms: float
    cpu_ms_per_msg: float
    peak_rss_mb: float
    idle_rss_mb: float
    dns_cpu_ms_per_msg: float
    client_cpu_ms_per_msg: float
    hwm_reset: bool
    verdicts: list[tuple[dict[str, str], int]]
    unexpected: int  # messages whose verdict differs from what this target must deliver
    first_error: str
    signed_checked: int = 0
    signed_valid: int = 0
    invalid: str = ""  # why this run does not count ("" = it does)


def invalid_reason(m: Measurement, expect: dict[str, str]) -> str:
    """Why run ``m`` does not show its target doing its job; "" when it does.

    ``expect``: the verdict the target must deliver (:meth:`Scenario.expect_of`).
    """
    if m.messages == 0:
        return f"{m.target}: no message was answered"
    reasons = []
    if m.errors:
        reasons.append(f"{m.errors} of {m.messages} messages failed ({m.first_error or '?'})")
    if m.unexpected:
        wanted = " ".join(f"{k}={v}" for k, v in sorted(expect.items()))
        seen = "; ".join(
            f"{' '.join(f'{k}={v}' for k, v in sorted(d.items())) or 'nothing'} ({n})"
            for d, n in m.verdicts
            if not all(d.get(k) == v for k, v in expect.items())
        )
        reasons.append(f"{m.unexpected} of {m.messages} not {wanted}: {seen}")
    if m.signed_checked > m.signed_valid:
        bad = m.signed_checked - m.signed_valid
        reasons.append(f"{bad} of {m.signed_checked} signatures do not verify")
    return f"{m.target}: {', '.join(reasons)}" if reasons else ""


def _matches(verdict: loadgen.Verdict, expect: dict[str, str]) -> bool:
    return all(getattr(verdict, k) == v for k, v in expect.items())


def verify_signed(raw: bytes, zone: dict[str, str]) -> bool:
    """Verify the topmost DKIM signature with dkimpy against the corpus zone."""

    def dnsfunc(name: bytes, timeout: int = 5) -> bytes | None:
        txt = zone.get(name.decode().rstrip(".").lower())
        return txt.encode() if txt is not None else None

    try:
        return bool(dkim.DKIM(raw).verify(dnsfunc=dnsfunc))
    except dkim.DKIMException:
        return False


def key_zone(manifest: dict[str, Any]) -> dict[str, str]:
    """DKIM key records of the corpus: ``selector._domainkey.domain`` -> TXT."""
    return {f"{k['selector']}._domainkey.{k['domain']}": k["txt"] for k in manifest["keys"]}


class Bench:
    """Owns the processes of one benchmark run; use as a context manager."""

    def __init__(
        self, work: Path, manifest: dict[str, Any], python: str, log: Callable[[str], None] = print
    ) -> None:
        self.work = work
        self.run_dir = work / "run"
        self.manifest = manifest
        self.python = python
        self.log = log
        self.private = milters.private_dir()  # keys and sockets, where opendkim accepts them
        self.specs = milters.build_specs(self.run_dir, manifest, python, private=self.private)
        self.group = ProcGroup()
        self.procs: dict[str, Proc] = {}
        self.dns: Proc | None = None
        self.measurements: list[Measurement] = []
        self.failed: dict[str, str] = {}

    def __enter__(self) -> Bench:
        return self

    def __exit__(self, *exc: object) -> None:
        self.group.stop_all()
        shutil.rmtree(self.private, ignore_errors=True)

    # ------------------------------------------------------------------ processes

    def start_dns(self) -> None:
        """The corpus zone on DNS_IP:53 (tests/support/dnsserver.py as a process)."""
        argv = [
            self.python,
            "-m",
            "tests.support.dnsserver",
            "--zone",
            self.manifest["zone"],
            "--host",
            milters.DNS_IP,
            "--port",
            "53",
        ]
        self.dns = self.group.add(Proc("dns", argv, self.run_dir / "dns.log", cwd=REPO))
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if not self.dns.alive():
                raise RuntimeError(f"DNS server exited: {self.dns.log.read_text()[-2000:]}")
            if self.dns.log.exists() and self.dns.log.read_text().strip():
                return
            time.sleep(0.05)
        raise RuntimeError("DNS server did not start")

    def ensure(self, names: tuple[str, ...]) -> bool:
        """Start the milters of a chain (once); False if one cannot start."""
        for name in names:
            if name in self.failed:
                return False
            if name in self.procs and self.procs[name].alive():
                continue
            spec = self.specs[name]
            binary = spec.argv[1] if spec.argv[1].startswith("/") else spec.argv[0]
            if not milters.have(binary):
                self.failed[name] = f"{binary} not installed"
                return False
            proc = self.group.add(spec.proc(self.run_dir))
            try:
                proc.wait_unix_socket(spec.socket, 30)
            except RuntimeError as exc:
                self.failed[name] = str(exc).splitlines()[0]
                self.log(f"  ! {name} did not start: {exc}")
                proc.stop()
                return False
            self.procs[name] = proc
        return True

    def pids(self, names: tuple[str, ...]) -> list[int]:
        """The PIDs of a chain's processes."""
        return [self.procs[n].pid for n in names]

    def addresses(self, names: tuple[str, ...]) -> list[str]:
        """The milter addresses of a chain."""
        return [self.specs[n].address for n in names]

    # ------------------------------------------------------------------ measuring

    def measure(
        self,
        sc: Scenario,
        target: str,
        conc: int,
        rnd: int,
        *,
        works: list[loadgen.Work],
        zone: dict[str, str],
    ) -> Measurement | None:
        """One measured run."""
        chain = sc.targets[target]
        if not self.ensure(chain):
            return None
        pids = self.pids(chain)
        assert self.dns is not None
        meter_pids = [*pids, self.dns.pid]
        with Meter(meter_pids) as meter:
            idle = sum(procstat.rss_kb(p) for p in pids)
            res = loadgen.run_load(
                self.addresses(chain),
                works,
                conc,
                sc.count,
                sc.duration,
                keep_signed=3 if sc.name.startswith("sign") else 0,
            )
        ok = max(1, res.messages - res.errors)
        cpu = sum(meter.usage[p].cpu_s for p in pids)
        peak = sum(meter.usage[p].peak_rss_kb for p in pids)
        checked = valid = 0
        for raw in res.signed_samples:
            checked += 1
            valid += verify_signed(raw, zone)
        expect = sc.expect_of(target)
        unexpected = sum(n for v, n in res.verdicts.items() if not _matches(v, expect))
        common = [(_vdict(v), n) for v, n in res.verdicts.most_common(4)]
        m = Measurement(
            sc.name,
            target,
            conc,
            rnd,
            res.messages,
            res.errors,
            res.wall_s,
            res.rate,
            res.percentile(50) * 1000,
            res.percentile(99) * 1000,
            cpu * 1000 / ok,
            peak / 1024,
            idle / 1024,
            meter.usage[self.dns.pid].cpu_s * 1000 / ok,
            res.client_cpu_s * 1000 / ok,
            meter.hwm_reset,
            common,
            unexpected,
            res.first_error[:200],
            checked,
            valid,
        )
        m.invalid = invalid_reason(m, expect)
        self.measurements.append(m)
        return m

    def run_scenario(
        self,
        sc: Scenario,
        rounds: int,
        targets: list[str] | None = None,
        concurrencies: list[int] | None = None,
    ) -> None:
        """Warm up every target, then ``rounds`` interleaved rounds at each concurrency."""
        works = loadgen.works_from_manifest(self.manifest["sets"][sc.message_set])
        zone = key_zone(self.manifest)
        names = [t for t in sc.targets if targets is None or t in targets]
        concs = [c for c in sc.concurrencies if concurrencies is None or c in concurrencies]
        self.log(f"== {sc.name}: {', '.join(names)} at c={concs}, {rounds} round(s)")
        for name in names:
            if self.ensure(sc.targets[name]):
                loadgen.run_load(self.addresses(sc.targets[name]), works, 2, min(len(works), 8), 30)
        for conc in concs:
            for rnd in range(rounds):
                order = names[rnd % len(names) :] + names[: rnd % len(names)]
                for name in order:
                    m = self.measure(sc, name, conc, rnd, works=works, zone=zone)
                    if m is not None:
                        self.log(
                            f"  {name:20} c={conc:<2} r{rnd} {m.rate:8.1f} msg/s "
                            f"cpu {m.cpu_ms_per_msg:6.2f} ms/msg p99 {m.p99_ms:7.1f} ms "
                            f"rss {m.peak_rss_mb:6.1f} MB err {m.errors} "
                            f"unexpected {m.unexpected}"
                            + (f"  INVALID: {m.invalid}" if m.invalid else "")
                        )

    # ------------------------------------------------------------------ verdicts

    def verdict_check(self) -> dict[str, Any]:
        """Every verdict-* set through every inbound target, one message at a time."""
        table: dict[str, dict[str, dict[str, str]]] = {}
        expect: dict[str, dict[str, str]] = {}
        for set_name, info in sorted(self.manifest["sets"].items()):
            if not set_name.startswith(("verdict-", "inbound-2k")):
                continue
            works = loadgen.works_from_manifest(info)[:2]
            for target, chain in milters.INBOUND_TARGETS.items():
                if target in ("null", "floor") or not self.ensure(chain):
                    continue
                res = loadgen.run_load(
                    self.addresses(chain), works, 1, len(works), 60, keep_per_message=True
                )
                for path, verdict in res.per_message:
                    key = f"{set_name}/{Path(path).name}"
                    table.setdefault(key, {})[target] = _vdict(verdict)
                    expect[key] = info["expect"]
        return {
            "table": table,
            "expect": expect,
            "mismatches": compare_verdicts(table, expect),
            "reference_failures": reference_failures(table),
        }


def _vdict(v: loadgen.Verdict) -> dict[str, str]:
    return {k: str(val) for k, val in asdict(v).items() if val}


# Which reference answers which question.
REFERENCE_FIELDS = {
    "dkim": ("opendkim", "dkimpy-milter"),
    "spf": ("pyspf-milter", "opendmarc"),
    "dmarc": ("opendkim+opendmarc",),
    "action": ("opendkim+opendmarc",),
}


FAILED_ACTIONS = ("tempfail", "error")  # the corpus never asks for either


def reference_failures(table: dict[str, dict[str, dict[str, str]]]) -> list[dict[str, str]]:
    """Messages a reference milter did not judge (tempfail, no answer): no comparison."""
    return [
        {"message": msg, "reference": ref, "action": v.get("action", "-")}
        for msg, by_target in sorted(table.items())
        for ref, v in sorted(by_target.items())
        if ref not in milters.AUTHMILTERS and v.get("action", "error") in FAILED_ACTIONS
    ]


def compare_verdicts(
    table: dict[str, dict[str, dict[str, str]]], expect: dict[str, dict[str, str]]
) -> list[dict[str, str]]:
    """authmilter's spf/dkim/dmarc/action vs the reference milters' and vs the corpus intent.

    A rejected message carries no headers, so then only the action is compared.
    """
    out = []
    for msg, by_target in sorted(table.items()):
        mine = by_target.get("authmilter", {})
        rejected = mine.get("action") in ("reject", "tempfail")
        for fld, refs in REFERENCE_FIELDS.items():
            if rejected and fld != "action":
                continue
            for ref in refs:
                theirs = by_target.get(ref)
                if theirs is None or theirs.get("action", "error") in FAILED_ACTIONS:
                    continue  # no answer to compare with (reference_failures lists it)
                a, b = mine.get(fld, ""), theirs.get(fld, "")
                if fld == "dkim":  # the multiset of results; "none" = no dkim= at all
                    a, b = (",".join(sorted(x.split(","))).replace("none", "") for x in (a, b))
                if a != b:
                    out.append(
                        {
                            "message": msg,
                            "field": fld,
                            "authmilter": a or "-",
                            "reference": ref,
                            "theirs": b or "-",
                        }
                    )
        for fld, want in expect.get(msg, {}).items():
            if rejected and fld != "action":
                continue
            got = mine.get(fld, "")
            if fld == "dkim":
                got = (
                    "pass"
                    if got and all(w == "pass" for w in got.split(","))
                    else ("none" if not got else "fail")
                )
            if got != want:
                out.append(
                    {
                        "message": msg,
                        "field": fld,
                        "authmilter": got or "-",
                        "reference": "corpus intent",
                        "theirs": want,
                    }
                )
    return out


def save(path: Path, data: dict[str, Any]) -> None:
    """Write results JSON."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=1, default=str), encoding="utf-8")


def summarize(ms: list[dict[str, Any]]) -> dict[str, float]:
    """Median and range of one target's rounds."""
    rates = [m["rate"] for m in ms]
    return {
        "rate": statistics.median(rates),
        "rate_min": min(rates),
        "rate_max": max(rates),
        "cpu": statistics.median(m["cpu_ms_per_msg"] for m in ms),
        "p50": statistics.median(m["p50_ms"] for m in ms),
        "p99": statistics.median(m["p99_ms"] for m in ms),
        "rss": max(m["peak_rss_mb"] for m in ms),
        "idle": min(m["idle_rss_mb"] for m in ms),
        "dns": statistics.median(m["dns_cpu_ms_per_msg"] for m in ms),
        "client": statistics.median(m["client_cpu_ms_per_msg"] for m in ms),
        "errors": sum(m["errors"] for m in ms),
        "unexpected": sum(m["unexpected"] for m in ms),
        "invalid": [m["invalid"] for m in ms if m.get("invalid")],
        "messages": sum(m["messages"] for m in ms),
        "rounds": len(ms),
    }


def log_stderr(msg: str) -> None:
    """Progress lines."""
    print(msg, file=sys.stderr, flush=True)
