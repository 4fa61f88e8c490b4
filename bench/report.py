"""RESULTS.md from the results JSON of a run (``python3 -m bench report`` redoes it)."""

from __future__ import annotations

import statistics
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.runner import summarize


@dataclass(frozen=True)
class Goal:
    """One row of issue 15's target table, for the shipped configuration (``authmilter``).

    ``checks``: ``("rate", ref, min)`` authmilter ÷ ref msg/s per round; ``("cpu", max_ms)``
    authmilter's CPU ms/msg; ``("p99", ref)`` authmilter's p99 latency <= ref's;
    ``("cpu_ratio", ref, max)`` authmilter ÷ ref CPU/msg per round; ``("rss", max_mb)``
    authmilter's peak RSS (the whole process tree: every worker); ``("cpu_vs", scenario,
    max)`` authmilter's CPU/msg here ÷ its CPU/msg in ``scenario`` at the same concurrency;
    ``("rate_within", ref, frac)`` and ``("cpu_within", ref, frac)``: authmilter ÷ ref
    within ``frac`` (msg/s at least 1 - frac, CPU/msg at most 1 + frac).
    """

    scenario: str
    conc: int
    label: str  # the "scenario" column
    target: str  # the "target" column
    checks: tuple[tuple[Any, ...], ...]


GOALS = [
    Goal(
        "inbound-2k-rsa",
        16,
        "inbound 2 KB RSA-2048, c=16, shipped config",
        ">= 1.5x opendkim's msg/s (DKIM only), <= 1.0 ms CPU/msg, p99 latency <= opendkim's",
        (("rate", "opendkim", 1.5), ("cpu", 1.0), ("p99", "opendkim")),
    ),
    Goal(
        "inbound-2k-rsa",
        16,
        "inbound 2 KB RSA-2048, c=16, vs opendkim + opendmarc chained",
        ">= 2.5x msg/s, <= 0.5x CPU/msg",
        (("rate", "opendkim+opendmarc", 2.5), ("cpu_ratio", "opendkim+opendmarc", 0.5)),
    ),
    Goal(
        "inbound-100k-rsa",
        16,
        "inbound 100 KB, c=16",
        ">= 1.3x opendkim",
        (("rate", "opendkim", 1.3),),
    ),
    Goal(
        "inbound-10m-rsa", 4, "inbound 10 MB, c=4", ">= 1.2x opendkim", (("rate", "opendkim", 1.2),)
    ),
    Goal(
        "inbound-10m-rsa",
        16,
        "inbound 10 MB, c=16",
        ">= 1.2x opendkim; peak RSS of all workers together <= 150 MB",
        (("rate", "opendkim", 1.2), ("rss", 150.0)),
    ),
    Goal(
        "sign-2k-rsa",
        4,
        "sign 2 KB RSA-2048, c=4",
        ">= 1.8x opendkim",
        (("rate", "opendkim", 1.8),),
    ),
    Goal(
        "sign-2k-ed25519",
        4,
        "sign 2 KB Ed25519, c=4",
        ">= 1.8x opendkim",
        (("rate", "opendkim", 1.8),),
    ),
    Goal(
        "inbound-2k-rsa",
        16,
        "recording + metrics on vs off (inbound 2 KB RSA-2048, c=16)",
        "within 10 % (authmilter ÷ authmilter-bare: msg/s >= 0.9x, CPU/msg <= 1.1x)",
        (("rate_within", "authmilter-bare", 0.1), ("cpu_within", "authmilter-bare", 0.1)),
    ),
    Goal(
        "inbound-2k-arc3",
        16,
        "ARC: inbound 2 KB with a 3-set chain, c=16",
        "<= 1.5x the CPU/msg of one DKIM signature (authmilter in inbound-2k-rsa, same c)",
        (("cpu_vs", "inbound-2k-rsa", 1.5),),
    ),
]
ME = "authmilter"  # the shipped configuration, measured against the targets

REFERENCE_FIGURES = {  # the 2-core machine (only ratios transfer)
    ("inbound-2k-rsa", "opendkim"): "1270 msg/s, 1.0 ms CPU/msg",
    ("inbound-2k-rsa", "dkimpy-milter"): "570 msg/s",
    ("inbound-2k-rsa", "null"): "3440 msg/s",
    ("sign-2k-rsa", "opendkim"): "695 msg/s",
    ("inbound-10m-rsa", "opendkim"): "24 msg/s, 24 MB RSS",
}


def _fmt(x: float, nd: int = 1) -> str:
    return f"{x:.{nd}f}"


def _ratios(
    ms: list[dict[str, Any]], sc: str, conc: int, a: str, b: str, *, key: str = "rate"
) -> list[float]:
    """a's ``key`` (rate, cpu_ms_per_msg) over b's, per round in which both ran validly (an
    invalid run has no ratio)."""
    by = {
        (m["target"], m["round"]): m[key]
        for m in ms
        if m["scenario"] == sc and m["concurrency"] == conc and not m.get("invalid")
    }
    return [by[(a, r)] / by[(b, r)] for (t, r) in by if t == a and by.get((b, r))]


def _invalid(ms: list[dict[str, Any]], sc: str, conc: int, target: str) -> list[str]:
    """The reasons of ``target``'s invalid runs in one scenario and concurrency."""
    return [
        m["invalid"]
        for m in ms
        if m["scenario"] == sc
        and m["concurrency"] == conc
        and m["target"] == target
        and m.get("invalid")
    ]


def _verdict_text(ms: list[dict[str, Any]]) -> str:
    counts: dict[str, int] = defaultdict(int)
    for m in ms:
        for v, n in m["verdicts"]:
            words = [f"{k}={v[k]}" for k in ("spf", "dkim", "dmarc", "arc") if k in v]
            if "signatures" in v:
                words.append(f"signed {v['signatures']}")
            key = " ".join([v.get("action", "?"), *words])
            counts[key] += n
    top = sorted(counts.items(), key=lambda kv: -kv[1])
    return "; ".join(f"{k} ({n})" for k, n in top[:2])


def render(data: dict[str, Any]) -> str:
    """The whole RESULTS.md."""
    ms: list[dict[str, Any]] = data["measurements"]
    out: list[str] = []
    w = out.append
    w("# authmilter benchmark results\n")
    w(
        f"Generated by `{data['command']}` on {data['started']} (took {data['elapsed_s']:.0f} s"
        f"{', QUICK smoke run: numbers are not meaningful' if data['quick'] else ''})."
    )
    w(
        "Regenerate this file from the raw data with `python3 -m bench report "
        f"--results {data['results_path']}`.\n"
    )
    w(
        "Performance is measured here, never asserted in tests. Only ratios between milters "
        "measured in the same run transfer between machines.\n"
    )
    _machine(w, data)
    _method(w, data)
    _goals(w, ms, bool(data.get("quick")), data)
    for name in (
        "RESULTS-notes.md",
        "RESULTS-faults.md",
        "RESULTS-soak.md",
        "RESULTS-inprocess.md",
    ):
        # notes; bench.faults; bench.soak; metrics_overhead, arc_cost, history_bench, ...
        hand_written = Path(__file__).with_name(name)
        if not data["quick"] and hand_written.exists():
            w(hand_written.read_text(encoding="utf-8"))
    for sc in data["scenarios"]:
        _scenario_table(w, sc, ms, data)
    _signing_check(w, ms)
    _verdicts(w, data.get("verdicts"))
    _profile(w, data.get("profile"))
    _postfix(w, data.get("postfix"))
    if data.get("skipped"):
        w("## Skipped\n")
        for s in data["skipped"]:
            w(f"- {s}")
        w("")
    if data.get("failed"):
        w("## Milters that did not start\n")
        for k, v in data["failed"].items():
            w(f"- {k}: {v}")
        w("")
    return "\n".join(out) + "\n"


def _machine(w: Any, data: dict[str, Any]) -> None:
    m = data["machine"]
    w("## Machine\n")
    w(f"- {m['nproc']} CPUs: {m['cpu']}; {m['mem_gb']:.0f} GB RAM; kernel {m['kernel']}; {m['os']}")
    w(f"- authmilter {m['authmilter']} (commit {m['commit']}), run by `{data['python']}`")
    w(
        "- reference milters (Debian packages): "
        + ", ".join(f"{k} {v}" for k, v in m["packages"].items())
    )
    w(
        "- load client, DNS server and all milters share these CPUs (the client's and the "
        "DNS server's CPU per message are reported so their share is visible).\n"
    )


def _method(w: Any, data: dict[str, Any]) -> None:
    w("## Method\n")
    w(
        "- Load: `bench/loadgen.py`, the project's milter-protocol v6 client "
        "(`tests/support/milterclient.py`); c threads, one milter connection per message "
        "(negotiation + CONNECT ... EOM, like one Postfix smtpd session per message). A chain "
        "`a+b` is sent to `a`, then to `b` with `a`'s added headers at the top (as Postfix "
        "runs `smtpd_milters = a, b`)."
    )
    w(
        "- Each measured run stops after its message count or its duration; rounds interleave "
        "the targets (rotating order); numbers are the median over rounds with (min-max); "
        "ratios are authmilter ÷ target per round, then median (min-max)."
    )
    w(
        "- CPU ms/msg: utime+stime deltas of the milter process tree (/proc/PID/stat, children "
        "included; a chain is the sum) ÷ messages. Peak RSS: VmHWM after resetting it "
        "(`/proc/PID/clear_refs`) and VmRSS sampled every 50 ms, the larger of the two; a "
        "chain is the sum."
    )
    w(
        "- DNS: `tests/support/dnsserver.py` (Python, uncached, authoritative) on "
        "127.53.0.1:53. opendkim (`Nameservers`, libunbound with its cache) and authmilter "
        "(`dns.nameservers`, its own cache) are pointed at it in their config; opendmarc, "
        "dkimpy-milter and pyspf-milter read only /etc/resolv.conf, so they run in a private "
        "mount namespace (`unshare -m`) with a bind-mounted resolv.conf; the host's file is "
        "never changed. Milters without a DNS cache make the DNS server work harder; its CPU "
        "per message is the `DNS ms/msg` column."
    )
    w(
        "- Verdicts: every reply's added headers are parsed (A-R `spf=`/`dkim=`/`dmarc=`/"
        "`arc=`, Received-SPF, DKIM-Signature `a=`/`d=`); authmilter's runs are checked "
        "against the "
        "intended verdict of the corpus (`unexpected`), and a sample of each signer's output "
        "is verified with dkimpy. Every target is held to the fields its milters deliver "
        "(opendkim: the action and dkim=; opendmarc: spf= and dmarc=; a signer: its "
        "signature; the null and floor milters: accept): a run with an unexpected verdict, "
        "a tempfail, an unanswered message or a signature that does not verify is INVALID, "
        "shown with its reason, and no ratio is computed from it. Keys and sockets live in "
        "a private directory below /run (opendkim's RequireSafeKeys refuses keys below a "
        "world-writable directory such as /tmp)."
    )
    w(
        "- Corpus: `bench/corpus.py` (seeded: keys, text and signatures are reproducible), "
        "signed by dkimpy `dkim.sign` (relaxed/relaxed); zone with SPF, DKIM and DMARC "
        "`p=reject` records. Inbound client 192.0.2.10 (SPF pass); signing client 192.0.2.20 "
        "with `{auth_authen}=alice` (authmilter signs because of the macro; opendkim and "
        "dkimpy-milter because 192.0.2.20 is in their InternalHosts: dkimpy-milter reads "
        "MacroList at CONNECT, before Postfix sends `{auth_authen}`). `inbound-2k-arc3`: the "
        "DKIM-signed 2 KB message sealed by three sealers in turn (dkimpy `arc_sign`, three "
        "seeded RSA-2048 keys published in the zone; each sealer adds its own A-R first), sent "
        "from the inbound client; only authmilter reports `arc=` (pass), the references are "
        "held to what they deliver. `authmilter-bare` (inbound-2k-rsa only) is the shipped "
        'configuration with `reports.history = ""` and `metrics.listen = ""`.'
    )
    w(
        "- opendkim and dkimpy-milter need one instance per signing algorithm (opendkim's "
        "`SignatureAlgorithm` is global; dkimpy-milter looks a SigningTable key name up in both "
        "key tables), so the Ed25519 table uses separate instances.\n"
    )


def _valid(ms: list[dict[str, Any]], sc: str, conc: int, target: str) -> list[dict[str, Any]]:
    return [
        m
        for m in ms
        if m["scenario"] == sc
        and m["concurrency"] == conc
        and m["target"] == target
        and not m.get("invalid")
    ]


def _goal_conc(ms: list[dict[str, Any]], sc: str, conc: int, quick: bool) -> int:
    """``conc``, or in a quick run (which measures fewer concurrencies) the highest one
    measured in ``sc``."""
    have = {m["concurrency"] for m in ms if m["scenario"] == sc}
    if conc in have or not quick or not have:
        return conc
    return max(have)


class _UnjudgedError(Exception):
    """A goal row that cannot be judged: INVALID (with the reason) or not measured."""


def _need(ms: list[dict[str, Any]], sc: str, conc: int, target: str) -> list[dict[str, Any]]:
    """``target``'s valid runs; raise :class:`_UnjudgedError` when there are none."""
    runs = _valid(ms, sc, conc, target)
    if runs:
        return runs
    bad = _invalid(ms, sc, conc, target)
    raise _UnjudgedError(f"INVALID: {bad[0]}" if bad else f"{target} not measured ({sc} c={conc})")


def _paired(ms: list[dict[str, Any]], sc: str, conc: int, ref: str, *, key: str = "rate") -> float:
    """Median of the per-round ratio authmilter ÷ ``ref``; :class:`_UnjudgedError` without one."""
    _need(ms, sc, conc, ME)
    _need(ms, sc, conc, ref)
    rs = _ratios(ms, sc, conc, ME, ref, key=key)
    if not rs:
        bad = _invalid(ms, sc, conc, ME) + _invalid(ms, sc, conc, ref)
        raise _UnjudgedError(f"INVALID: {bad[0]}" if bad else f"no round with both {ME} and {ref}")
    return statistics.median(rs)


def goal_row(g: Goal, ms: list[dict[str, Any]], quick: bool = False) -> tuple[str, str]:
    """(measured, met) of one goal: met is "yes", "**no**" or "-" (INVALID, not measured)."""
    conc = _goal_conc(ms, g.scenario, g.conc, quick)
    texts: list[str] = []
    met = True
    try:
        mine = summarize(_need(ms, g.scenario, conc, ME))
        for check in g.checks:
            kind = check[0]
            if kind == "rate":
                r = _paired(ms, g.scenario, conc, check[1])
                texts.append(f"{r:.2f}x {check[1]} ({mine['rate']:.0f} msg/s)")
                met = met and r >= check[2]
            elif kind == "cpu":
                texts.append(f"{mine['cpu']:.2f} ms CPU/msg")
                met = met and mine["cpu"] <= check[1]
            elif kind == "p99":
                theirs = summarize(_need(ms, g.scenario, conc, check[1]))
                texts.append(f"p99 {mine['p99']:.1f} ms vs {check[1]} {theirs['p99']:.1f} ms")
                met = met and mine["p99"] <= theirs["p99"]
            elif kind == "cpu_ratio":
                r = _paired(ms, g.scenario, conc, check[1], key="cpu_ms_per_msg")
                texts.append(f"{r:.2f}x {check[1]}'s CPU/msg ({mine['cpu']:.2f} ms)")
                met = met and r <= check[2]
            elif kind == "rss":
                texts.append(f"peak RSS {mine['rss']:.0f} MB")
                met = met and mine["rss"] <= check[1]
            elif kind == "rate_within":
                r = _paired(ms, g.scenario, conc, check[1])
                texts.append(f"{r:.2f}x {check[1]}'s msg/s")
                met = met and r >= 1 - check[2]
            elif kind == "cpu_within":
                r = _paired(ms, g.scenario, conc, check[1], key="cpu_ms_per_msg")
                texts.append(f"{r:.2f}x {check[1]}'s CPU/msg")
                met = met and r <= 1 + check[2]
            elif kind == "cpu_vs":
                other_c = _goal_conc(ms, check[1], conc, quick)
                base = summarize(_need(ms, check[1], other_c, ME))
                r = mine["cpu"] / base["cpu"] if base["cpu"] else float("inf")
                texts.append(
                    f"{r:.2f}x ({mine['cpu']:.2f} ms CPU/msg vs {base['cpu']:.2f} ms in {check[1]})"
                )
                met = met and r <= check[2]
            else:
                raise ValueError(f"unknown goal check {kind}")
    except _UnjudgedError as why:
        return str(why), "-"
    quick_note = f" (quick run: c={conc})" if conc != g.conc else ""
    return ", ".join(texts) + quick_note, "yes" if met else "**no**"


def _not_started(g: Goal, text: str, data: dict[str, Any]) -> str:
    """Why a target named in an unjudged row was not measured: its milter did not start."""
    failed: dict[str, str] = data.get("failed") or {}
    chains = next((s["targets"] for s in data.get("scenarios", []) if s["name"] == g.scenario), {})
    why = [
        f"{name}: {failed[name]}"
        for target, chain in chains.items()
        if text.startswith(f"{target} not measured")
        for name in chain
        if name in failed
    ]
    return f" ({'; '.join(why)})" if why else ""


def _goals(
    w: Any, ms: list[dict[str, Any]], quick: bool = False, data: dict[str, Any] | None = None
) -> None:
    w("## Issue 15 targets\n")
    w(
        f"`{ME}` is the shipped configuration (workers auto, recording to SQLite, metrics on). "
        "Ratios are per round, then the median; CPU/msg and p99 are medians over rounds; peak "
        "RSS is the largest over rounds (all worker processes together). A row whose runs "
        "did not show every milter doing its job is INVALID, not met or unmet.\n"
    )
    w("| scenario | target | measured | met? |")
    w("|---|---|---|---|")
    for g in GOALS:
        text, met = goal_row(g, ms, quick)
        if met == "-" and data is not None:
            text += _not_started(g, text, data)
        w(f"| {g.label} | {g.target} | {text} | {met} |")
    w("")


def _scenario_table(
    w: Any, sc: dict[str, Any], ms: list[dict[str, Any]], data: dict[str, Any]
) -> None:
    rows = [m for m in ms if m["scenario"] == sc["name"]]
    if not rows:
        return
    w(f"## {sc['name']}: {sc['title']}\n")
    w(
        f"Command: `{data['base_command']} --scenario {sc['name']}` "
        f"(each run: at most {sc['count']} messages or {sc['duration']:.0f} s; "
        f"message set `{sc['message_set']}`).\n"
    )
    w(
        "| target | chain | c | msg/s median (min-max) | authmilter ÷ target | CPU ms/msg | "
        "p50 ms | p99 ms | peak RSS MB (idle) | DNS ms/msg | client ms/msg | errors | verdicts "
        "(most common) |"
    )
    w("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for conc in sorted({m["concurrency"] for m in rows}):
        for target, chain in sc["targets"].items():
            tm = [m for m in rows if m["concurrency"] == conc and m["target"] == target]
            if not tm:
                continue
            s = summarize(tm)
            rs = _ratios(ms, sc["name"], conc, "authmilter", target)
            ratio = (
                "-"
                if target == "authmilter" or not rs
                else (f"{statistics.median(rs):.2f} ({min(rs):.2f}-{max(rs):.2f})")
            )
            if s["invalid"]:
                ratio = f"**INVALID** ({len(s['invalid'])} of {s['rounds']} runs)" + (
                    f"; {ratio} from the others" if ratio != "-" else ""
                )
            idle = f"{s['idle']:.0f}" if s["idle"] else "-"
            err = f"{s['errors']}/{s['messages']}"
            if s["unexpected"]:
                err += f", **{s['unexpected']} unexpected**"
            w(
                f"| {target} | {'+'.join(chain)} | {conc} | {s['rate']:.1f} "
                f"({s['rate_min']:.1f}-{s['rate_max']:.1f}) | {ratio} | {s['cpu']:.2f} | "
                f"{s['p50']:.1f} | {s['p99']:.1f} | {s['rss']:.1f} ({idle}) | "
                f"{s['dns']:.2f} | "
                f"{s['client']:.2f} | {err} | {_verdict_text(tm)} |"
            )
    refs = [
        f"{t}: {REFERENCE_FIGURES[(sc['name'], t)]}"
        for t in sc["targets"]
        if (sc["name"], t) in REFERENCE_FIGURES
    ]
    if refs:
        w(f"\nIssue's reference machine: {'; '.join(refs)}.")
    errs = {m["target"]: m["first_error"] for m in rows if m["first_error"]}
    for t, e in errs.items():
        w(f"\nFirst error of {t}: `{e}`")
    invalid = {(m["target"], m["concurrency"]): m["invalid"] for m in rows if m.get("invalid")}
    if invalid:
        w("\nInvalid runs (the target did not do its job; no ratio is taken from them):\n")
        for (t, c), why in invalid.items():
            w(f"- {t} c={c}: {why}")
    w("")


def _signing_check(w: Any, ms: list[dict[str, Any]]) -> None:
    rows: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0])
    for m in ms:
        if m.get("signed_checked"):
            rows[(m["scenario"], m["target"])][0] += m["signed_valid"]
            rows[(m["scenario"], m["target"])][1] += m["signed_checked"]
    if not rows:
        return
    w("## Signatures checked\n")
    w(
        "A sample of each signer's output (its DKIM-Signature on top of the message) verified "
        "with dkimpy against the corpus keys.\n"
    )
    w("| scenario | target | valid / checked |")
    w("|---|---|---|")
    for (sc, t), (ok, n) in sorted(rows.items()):
        w(f"| {sc} | {t} | {ok} / {n} |")
    w("")


def _verdicts(w: Any, v: dict[str, Any] | None) -> None:
    if not v:
        return
    w("## Verdict check\n")
    w(
        "Each message of the verdict corpus (and two of `inbound-2k-*`) sent once through "
        "every inbound target. dkim is compared with opendkim and dkimpy-milter, spf with "
        "pyspf-milter and opendmarc's own SPF, dmarc and the action with "
        "opendkim+opendmarc, and everything with the corpus's intent.\n"
    )
    targets = sorted({t for row in v["table"].values() for t in row})
    w("| message | " + " | ".join(targets) + " |")
    w("|---|" + "---|" * len(targets))
    for msg, row in sorted(v["table"].items()):
        cells = []
        for t in targets:
            d = row.get(t, {})
            cells.append(
                " ".join(
                    [d.get("action", "-")]
                    + [f"{k}={d[k]}" for k in ("spf", "dkim", "dmarc", "arc") if k in d]
                )
            )
        w(f"| {msg} | " + " | ".join(cells) + " |")
    w("")
    if v.get("reference_failures"):
        w(
            f"**{len(v['reference_failures'])} messages not judged by a reference** (tempfail "
            "or no answer; not compared):\n"
        )
        for x in v["reference_failures"]:
            w(f"- {x['message']}: {x['reference']} answered {x['action']}")
        w("")
    if v["mismatches"]:
        w(f"**{len(v['mismatches'])} mismatches:**\n")
        w("| message | field | authmilter | reference | theirs |")
        w("|---|---|---|---|---|")
        for x in v["mismatches"]:
            w(
                f"| {x['message']} | {x['field']} | {x['authmilter']} | {x['reference']} | "
                f"{x['theirs']} |"
            )
    else:
        w("No mismatches.")
    w("")


def _profile(w: Any, p: dict[str, Any] | None) -> None:
    if not p:
        return
    w("## Profile: where authmilter's time goes\n")
    for name, prof in p.items():
        if "error" in prof:
            w(f"### {name}\n\nnot profiled: {prof['error']}\n")
            continue
        w(f"### {name}\n")
        w(
            f"Command: `{prof['command']}` while the load ran ({prof['samples']} samples of "
            "active Python stacks, all threads).\n"
        )
        w("| self % | function (top of stack) | | inclusive % | function (anywhere on stack) |")
        w("|---|---|---|---|---|")
        total = max(1, prof["samples"])
        for i in range(max(len(prof["self"]), len(prof["inclusive"]))):
            a = prof["self"][i] if i < len(prof["self"]) else ("", 0)
            b = prof["inclusive"][i] if i < len(prof["inclusive"]) else ("", 0)
            w(f"| {100 * a[1] / total:.1f} | `{a[0]}` | | {100 * b[1] / total:.1f} | `{b[0]}` |")
        w("")
        if prof.get("notes"):
            w(prof["notes"] + "\n")


def _postfix(w: Any, p: dict[str, Any] | None) -> None:
    if not p:
        return
    w("## End to end through Postfix\n")
    if "error" in p:
        w(f"Not run: {p['error']}\n")
        return
    w(p["description"] + "\n")
    w(
        "| milters | messages | sessions | wall s | msg/s | milter CPU ms/msg | Postfix CPU "
        "ms/msg | delivered | sample A-R |"
    )
    w("|---|---|---|---|---|---|---|---|---|")
    for r in p["runs"]:
        w(
            f"| {r['name']} | {r['messages']} | {r['sessions']} | {r['wall_s']:.1f} | "
            f"{r['rate']:.1f} | {r['milter_cpu_ms']:.2f} | {r['postfix_cpu_ms']:.2f} | "
            f"{r['delivered']} | {r['sample_ar']} |"
        )
    w("")
    w(f"Command: `{p['command']}`\n")
