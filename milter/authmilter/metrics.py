"""Prometheus metrics: every metric authmilter exports, defined here and nowhere else.

Metrics are off until the daemon calls :func:`start` (``metrics.listen`` set): until then
every function below returns at once, so ``authmilter test``, ``check-config`` and the
tests that do not turn metrics on (:func:`enable`) never touch ``prometheus_client`` and
need no server. The checks
never call this module; the session, the adapter, the resolver, the signer, the daemon and
the supervisor report what happened.

Label values are bounded: each label takes its values from a fixed set in the code (a
result word, an action, a record type, a stage name), or, for ``key``, from the operator's
own signing configuration. A domain, an address, a host name or anything else a sender
chooses is never a label value. What could be out of its set becomes ``other``.

With ``milter.workers`` > 1, every worker writes its values to files in a private directory
(``prometheus_client``'s multiprocess mode): the supervisor makes it, new and empty, before
it forks the workers (in ``$RUNTIME_DIRECTORY``, where it also removes those an earlier
killed run left; else in the temporary directory), serves the one endpoint that sums them,
forgets a dead worker's gauges and removes the directory when it stops. Why files and not,
say, each worker serving its own port: Prometheus would need to know the workers, and a
restarted worker's counts would start again from zero; with the files, a dead worker's
counts stay in the sum and the one address shows the whole daemon.
"""

from __future__ import annotations

import contextlib
import http.server
import ipaddress
import logging
import os
import shutil
import socket
import socketserver
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar, cast

if TYPE_CHECKING:
    from authmilter.decision import Decision
    from authmilter.results import AuthResults, SpfResult

log = logging.getLogger("authmilter")

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"

# seconds; a stage is a few hundred microseconds, or seconds when DNS is slow
STAGE_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
DNS_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5)

# the values each bounded label may take ("other" stands for anything else)
TRUST = ("inbound", "auth", "local", "internal", "daemon", "unknown")
DKIM_ALGORITHMS = ("rsa-sha256", "ed25519-sha256", "rsa-sha1")
DNS_TYPES = ("A", "AAAA", "MX", "TXT", "PTR", "CNAME", "NS", "SPF", "SOA")
DNS_OUTCOMES = ("ok", "nxdomain", "nodata", "timeout", "servfail", "error")
STAGES = ("envfrom", "envrcpt", "header", "eoh", "body", "eom")
ERROR_STAGES = (*STAGES, "apply")  # "apply": the adapter, executing a decision


@dataclass(frozen=True, slots=True)
class Metric:
    """One exported metric: its name as scraped (counters end in ``_total``)."""

    name: str
    kind: str  # "counter" | "gauge" | "histogram"
    help: str
    labels: tuple[str, ...] = ()
    buckets: tuple[float, ...] = ()
    multiprocess_mode: str = "livesum"  # gauges, with several workers

    @property
    def samples(self) -> tuple[str, ...]:
        """The sample names a scrape shows for this metric."""
        if self.kind == "histogram":
            return (f"{self.name}_bucket", f"{self.name}_sum", f"{self.name}_count")
        return (self.name,)


METRICS: tuple[Metric, ...] = (
    Metric(
        "authmilter_messages_total",
        "counter",
        "Messages that reached end of message, by action and by trust class",
        ("action", "trust"),
    ),
    Metric(
        "authmilter_replies_total",
        "counter",
        "SMTP replies authmilter made, by stage (rcpt, eom), code and enhanced status",
        ("stage", "code", "status"),
    ),
    Metric(
        "authmilter_spf_results_total",
        "counter",
        "SPF evaluations, by identity (mailfrom, helo) and result",
        ("identity", "result"),
    ),
    Metric(
        "authmilter_dkim_results_total",
        "counter",
        "DKIM signatures verified, one per signature, by result and algorithm",
        ("result", "algorithm"),
    ),
    Metric(
        "authmilter_dmarc_results_total",
        "counter",
        "DMARC evaluations, by result and by the policy that applies",
        ("result", "policy"),
    ),
    Metric(
        "authmilter_arc_results_total",
        "counter",
        "ARC chains validated (RFC 8617), by result (none: no chain)",
        ("result",),
    ),
    Metric(
        "authmilter_from_warnings_total",
        "counter",
        "From fields showing another organization's address, by kind",
        ("kind",),
    ),
    Metric(
        "authmilter_signatures_total",
        "counter",
        "DKIM signatures made, by key (KeyTable entry name, or signing.keys[N])",
        ("key",),
    ),
    Metric(
        "authmilter_dns_queries_total",
        "counter",
        "DNS queries sent (cache hits excluded), by record type and outcome",
        ("type", "outcome"),
    ),
    Metric(
        "authmilter_dns_query_seconds",
        "histogram",
        "Time of one DNS query sent, whatever its outcome",
        (),
        DNS_BUCKETS,
    ),
    Metric(
        "authmilter_dns_cache_lookups_total",
        "counter",
        "DNS answer cache lookups, by result (hit, miss)",
        ("result",),
    ),
    Metric(
        "authmilter_sessions_in_flight",
        "gauge",
        "SMTP connections the MTA has open to authmilter now",
    ),
    Metric("authmilter_sessions_total", "counter", "SMTP connections the MTA opened"),
    Metric(
        "authmilter_internal_errors_total",
        "counter",
        "Internal errors (each answered with milter.on_error), by stage",
        ("stage",),
    ),
    Metric(
        "authmilter_stage_seconds",
        "histogram",
        "Processing time of each milter stage of a message (header and body: summed per"
        " message; eom includes DKIM, DMARC and signing)",
        ("stage",),
        STAGE_BUCKETS,
    ),
    Metric(
        "authmilter_reloads_total",
        "counter",
        "Configuration reloads (SIGUSR1), by result (ok, failed); one per worker",
        ("result",),
    ),
    Metric(
        "authmilter_worker_restarts_total",
        "counter",
        "Workers restarted by the supervisor after they died (milter.workers > 1)",
    ),
    Metric(
        "authmilter_build_info",
        "gauge",
        "Always 1; the version label says which authmilter runs",
        ("version",),
        multiprocess_mode="max",
    ),
    Metric(
        "authmilter_history_rows_total",
        "counter",
        "DMARC history rows for reports, by outcome (stored; dropped: queue full; failed:"
        " the store refused them)",
        ("outcome",),
    ),
    Metric(
        "authmilter_failure_reports_total",
        "counter",
        "DMARC failure reports (RFC 9991): sent, or why not (dropped, best effort)",
        ("outcome",),
    ),
)
HISTORY_OUTCOMES = ("stored", "dropped", "failed")
FAILURE_OUTCOMES = (
    "sent",
    "queue_full",
    "rate_limited",
    "unauthorized",
    "dns_error",
    "relay_error",
    "error",
)

BY_NAME = {m.name: m for m in METRICS}


class _Live:
    """The prometheus_client metrics of one :func:`enable`, their labelled children cached.

    ``live(name, *label_values)`` is the child to count with; prometheus_client's own
    ``labels()`` costs a microsecond more on every call. The cache holds one entry per label
    set, so it is as bounded as the labels are.
    """

    __slots__ = ("_children", "metrics")

    def __init__(self, metrics: dict[str, Any]) -> None:
        self.metrics = metrics
        self._children: dict[tuple[str, tuple[str, ...]], Any] = {}

    def __call__(self, name: str, *values: str) -> Any:
        key = (name, values)
        child = self._children.get(key)
        if child is None:
            child = self.metrics[name].labels(*values) if values else self.metrics[name]
            self._children[key] = child
        return child


# None while metrics are off. Read once per call: enable() and disable() swap the whole
# object, so a call sees one state or the other.
_live: _Live | None = None


def enabled() -> bool:
    """Whether metrics are being recorded in this process."""
    return _live is not None


# --------------------------------------------------------------------------- recording


def message(
    results: AuthResults | None, decision: Decision, trust: str, spf_counted: SpfResult | None
) -> None:
    """One message at end of message: action, results, reply.

    ``trust`` is the trust class (:data:`TRUST`); ``spf_counted`` is the SPF result already
    counted at MAIL FROM (:func:`spf`), not counted again.
    """
    live = _live
    if live is None:
        return
    live("authmilter_messages_total", str(decision.action), _one_of(trust, TRUST)).inc()
    _reply(live, "eom", decision)
    if results is None:
        return
    if results.spf is not None and results.spf is not spf_counted:
        _spf(live, results.spf)
    if results.helo_spf is not None:
        _spf(live, results.helo_spf)
    for d in results.dkim:
        algorithm = _one_of(d.algorithm.lower(), DKIM_ALGORITHMS)
        live("authmilter_dkim_results_total", str(d.result), algorithm).inc()
    if results.dmarc is not None:
        dm = results.dmarc
        live("authmilter_dmarc_results_total", str(dm.result), str(dm.policy)).inc()
    if results.arc is not None:
        live("authmilter_arc_results_total", str(results.arc.result)).inc()
    for w in results.from_warnings:
        live("authmilter_from_warnings_total", str(w.kind)).inc()


def spf(result: SpfResult) -> None:
    """One SPF evaluation (MAIL FROM time)."""
    live = _live
    if live is not None:
        _spf(live, result)


def rcpt_refused(decision: Decision) -> None:
    """A recipient refused at RCPT TO."""
    live = _live
    if live is not None:
        _reply(live, "rcpt", decision)


def stage(name: str, seconds: float) -> None:
    """Time spent in one stage of a message (:data:`STAGES`)."""
    live = _live
    if live is not None:
        live("authmilter_stage_seconds", _one_of(name, STAGES)).observe(seconds)


def internal_error(stage_name: str) -> None:
    """An internal error in a stage (:data:`ERROR_STAGES`)."""
    live = _live
    if live is not None:
        live("authmilter_internal_errors_total", _one_of(stage_name, ERROR_STAGES)).inc()


def failure_report(outcome: str) -> None:
    """One failure report's outcome (:data:`FAILURE_OUTCOMES`)."""
    live = _live
    if live is not None:
        live("authmilter_failure_reports_total", _one_of(outcome, FAILURE_OUTCOMES)).inc()


def signature(key_name: str) -> None:
    """A DKIM signature made with the configured key of that name."""
    live = _live
    if live is not None:
        live("authmilter_signatures_total", key_name).inc()


def reload(ok: bool) -> None:
    """A configuration reload, successful or not."""
    live = _live
    if live is not None:
        live("authmilter_reloads_total", "ok" if ok else "failed").inc()


def dns_cache(hit: bool) -> None:
    """One lookup in the DNS answer cache."""
    live = _live
    if live is not None:
        live("authmilter_dns_cache_lookups_total", "hit" if hit else "miss").inc()


def dns_query(rdtype: str, outcome: str, seconds: float) -> None:
    """One DNS query sent, its outcome (:data:`DNS_OUTCOMES`) and how long it took."""
    live = _live
    if live is None:
        return
    kind, result = _one_of(rdtype.upper(), DNS_TYPES), _one_of(outcome, DNS_OUTCOMES)
    live("authmilter_dns_queries_total", kind, result).inc()
    live("authmilter_dns_query_seconds").observe(seconds)


def session_opened() -> Callable[[], None]:
    """A connection opened; call the returned function (once or more) when it closes."""
    live = _live
    if live is None:
        return _nothing
    live("authmilter_sessions_total").inc()
    gauge = live("authmilter_sessions_in_flight")
    gauge.inc()
    done = [False]

    def closed() -> None:
        if not done[0]:  # libmilter's close callback, then perhaps the finalizer: once
            done[0] = True
            gauge.dec()

    return closed


def history_rows(outcome: str, count: int) -> None:
    """History rows for reports by outcome (:data:`HISTORY_OUTCOMES`)."""
    live = _live
    if live is not None and count:
        live("authmilter_history_rows_total", _one_of(outcome, HISTORY_OUTCOMES)).inc(count)


def worker_restarted() -> None:
    """The supervisor replaced a dead worker."""
    live = _live
    if live is not None:
        live("authmilter_worker_restarts_total").inc()


def worker_exited(pid: int) -> None:
    """A worker is gone: its gauges (sessions in flight) no longer count."""
    directory = os.environ.get(MULTIPROC_ENV)
    if _live is None or not directory:
        return
    from prometheus_client import multiprocess  # noqa: PLC0415

    with contextlib.suppress(OSError):
        multiprocess.mark_process_dead(pid, directory)  # type: ignore[no-untyped-call]


R = TypeVar("R")


def timed(resolver: R) -> R:
    """``resolver`` (dnspython's, or what has its ``resolve``) with each query measured."""
    return cast(R, TimedResolve(resolver))


class TimedResolve:
    """dnspython's resolver with each query counted and timed (:func:`dns_query`).

    Wraps the object DnspythonResolver sends its queries through; only ``resolve`` is
    measured, everything else is passed on.
    """

    def __init__(self, inner: Any) -> None:
        self._inner = inner

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def __setattr__(self, name: str, value: Any) -> None:
        if name == "_inner":
            object.__setattr__(self, name, value)
        else:
            setattr(self._inner, name, value)

    def resolve(self, qname: Any, rdtype: Any, *args: Any, **kwargs: Any) -> Any:
        """The inner ``resolve``, measured; its answer or exception is passed on unchanged."""
        if _live is None:
            return self._inner.resolve(qname, rdtype, *args, **kwargs)
        import dns.exception  # noqa: PLC0415
        import dns.rdatatype  # noqa: PLC0415
        import dns.resolver  # noqa: PLC0415

        kind = rdtype if isinstance(rdtype, str) else dns.rdatatype.to_text(rdtype)
        started = time.perf_counter()
        outcome = "error"
        try:
            answer = self._inner.resolve(qname, rdtype, *args, **kwargs)
            outcome = "ok" if answer.rrset is not None else "nodata"
            return answer
        except dns.resolver.NXDOMAIN:
            outcome = "nxdomain"
            raise
        except dns.resolver.NoAnswer:
            outcome = "nodata"
            raise
        except dns.exception.Timeout:
            outcome = "timeout"
            raise
        except dns.resolver.NoNameservers:  # SERVFAIL or REFUSED from every server
            outcome = "servfail"
            raise
        finally:  # never in the way of the answer or of the exception being raised
            with contextlib.suppress(Exception):
                dns_query(kind, outcome, time.perf_counter() - started)


def _spf(live: _Live, result: SpfResult) -> None:
    identity = "helo" if result.identity == "helo" else "mailfrom"
    live("authmilter_spf_results_total", identity, str(result.result)).inc()


def _reply(live: _Live, stage_name: str, decision: Decision) -> None:
    reply = decision.reply
    if reply is not None:
        live("authmilter_replies_total", stage_name, str(reply.code), reply.status).inc()


def _one_of(value: str, allowed: tuple[str, ...]) -> str:
    return value if value in allowed else "other"


def _nothing() -> None:
    return None


# --------------------------------------------------------------------------- set-up


def enable(registry: Any = None, *, multiprocess: bool = False) -> None:
    """Create the metrics (in ``registry``, or none in multiprocess mode) and record.

    Multiprocess mode needs ``PROMETHEUS_MULTIPROC_DIR`` set before the metrics are made
    (:func:`start` does it); the values then go to files there.
    """
    global _live
    import prometheus_client  # noqa: PLC0415
    from prometheus_client import values  # noqa: PLC0415

    # prometheus_client picks its value class (in memory, or files in PROMETHEUS_MULTIPROC_DIR)
    # from the environment when first imported: pick it again for the environment of now
    values.ValueClass = values.get_value_class()  # type: ignore[no-untyped-call]
    target = None if multiprocess else registry
    made: dict[str, Any] = {}
    for m in METRICS:
        base = m.name.removesuffix("_total") if m.kind == "counter" else m.name
        kwargs: dict[str, Any] = {"labelnames": m.labels, "registry": target}
        if m.kind == "counter":
            made[m.name] = prometheus_client.Counter(base, m.help, **kwargs)
        elif m.kind == "gauge":
            mode: Any = m.multiprocess_mode
            made[m.name] = prometheus_client.Gauge(base, m.help, multiprocess_mode=mode, **kwargs)
        else:
            made[m.name] = prometheus_client.Histogram(base, m.help, buckets=m.buckets, **kwargs)
    from authmilter import __version__  # noqa: PLC0415

    live = _Live(made)
    live("authmilter_build_info", __version__).set(1)
    for result in ("ok", "failed"):  # present from the start, so that rate() sees the first
        live("authmilter_reloads_total", result)
    _live = live


def disable() -> None:
    """Stop recording (tests; the daemon's metrics live as long as the process)."""
    global _live
    _live = None


def parse_listen(spec: str) -> tuple[str, int]:
    """``IP:PORT`` or ``[IPv6]:PORT`` -> (ip, port); ValueError otherwise."""
    host, sep, port = spec.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError("must be IP:PORT or [IPv6]:PORT, e.g. 127.0.0.1:9431")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
        if ipaddress.ip_address(host).version != 6:
            raise ValueError("brackets are for an IPv6 address")
    elif ":" in host:
        raise ValueError("an IPv6 address needs brackets: [::1]:9431")
    try:
        ipaddress.ip_address(host)
    except ValueError:
        raise ValueError(f"{host!r} is not an IP address") from None
    return host, int(port)


class Endpoint:
    """The ``/metrics`` HTTP endpoint and, with several workers, the values directory."""

    def __init__(self, server: socketserver.TCPServer, directory: str | None) -> None:
        self.server = server
        self.directory = directory
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.5}, name="metrics"
        )
        self._thread.daemon = True
        self._thread.start()

    def close_in_worker(self) -> None:
        """In a forked worker: let go of the listening socket (the supervisor serves)."""
        with contextlib.suppress(OSError):
            self.server.socket.close()

    def close(self) -> None:
        """Stop serving; remove the values directory."""
        self.server.shutdown()
        self.server.server_close()
        if self.directory:
            shutil.rmtree(self.directory, ignore_errors=True)


def start(listen: str, *, workers: int = 1) -> Endpoint | None:
    """Turn metrics on and serve them on ``listen``; None when off or impossible.

    Never fatal: without ``prometheus_client``, or when the address cannot be bound, the
    problem is logged and mail flows without metrics. With ``workers`` > 1 call this in the
    supervisor, after dropping privileges and before forking.
    """
    if not listen:
        return None
    try:
        import prometheus_client  # noqa: PLC0415, F401
    except ImportError:
        log.error("metrics.listen is set but prometheus_client is not installed: no metrics")
        return None
    directory = None
    registry: Any
    try:
        host, port = parse_listen(listen)
        if workers > 1:
            directory = _values_directory()
            os.environ[MULTIPROC_ENV] = directory
            registry = _multiprocess_registry(directory)
            enable(multiprocess=True)
        else:
            os.environ.pop(MULTIPROC_ENV, None)
            registry = _single_registry()
            enable(registry)
        server = _http_server(host, port, registry)
    except (OSError, ValueError) as exc:
        log.error("metrics: cannot serve on %s: %s; running without metrics", listen, exc)
        disable()
        if directory:
            shutil.rmtree(directory, ignore_errors=True)
        return None
    endpoint = Endpoint(server, directory)
    log.info("metrics on http://%s/metrics", listen)
    return endpoint


DIRECTORY_PREFIX = "authmilter-metrics-"


def _values_directory() -> str:
    """A new, empty, private (0700) directory for the workers' value files.

    In ``$RUNTIME_DIRECTORY`` (systemd's RuntimeDirectory=, ours alone) the directories of
    an earlier run that could not clean up (killed) are removed first; elsewhere (the
    temporary directory, shared) only our own is ever touched.
    """
    runtime = os.environ.get("RUNTIME_DIRECTORY", "").split(":")[0]
    if runtime:
        for old in Path(runtime).glob(DIRECTORY_PREFIX + "*"):
            shutil.rmtree(old, ignore_errors=True)
    return tempfile.mkdtemp(prefix=DIRECTORY_PREFIX, dir=runtime or None)


def _single_registry() -> Any:
    from prometheus_client import CollectorRegistry, ProcessCollector  # noqa: PLC0415

    registry = CollectorRegistry()
    ProcessCollector(registry=registry)
    return registry


def _multiprocess_registry(directory: str) -> Any:
    from prometheus_client import CollectorRegistry, multiprocess  # noqa: PLC0415

    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry, path=directory)  # type: ignore[no-untyped-call]
    return registry


class _Handler(http.server.BaseHTTPRequestHandler):
    """GET /metrics (or /): the exposition text; nothing else."""

    registry: Any = None
    timeout = 10  # seconds a client may take to send its request

    def do_GET(self) -> None:
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest  # noqa: PLC0415

        if self.path.split("?")[0] not in ("/", "/metrics"):
            self.send_error(404)
            return
        try:
            body = generate_latest(self.registry)
        except Exception:  # never let a broken collection kill the server thread
            log.exception("metrics: collection failed")
            self.send_error(500)
            return
        self.send_response(200)
        self.send_header("Content-Type", CONTENT_TYPE_LATEST)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        return None  # scrapes are not news


def _http_server(host: str, port: int, registry: Any) -> socketserver.TCPServer:
    """One request at a time (scrapes are rare); no name lookup of the address."""
    handler = type("MetricsHandler", (_Handler,), {"registry": registry})

    class Server(socketserver.TCPServer):
        address_family = socket.AF_INET6 if ":" in host else socket.AF_INET
        allow_reuse_address = True

    return Server((host, port), handler)
