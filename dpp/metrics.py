"""Prometheus metrics (DESIGN section 9): their definitions, the multiprocess plumbing, the
database gauges read at scrape time, ``GET /metrics`` and the workers' metrics server.

Multiprocess mode. Gunicorn runs several worker processes and Celery several prefork children;
a counter kept in one process's memory would be scraped from whichever process answered. With
``PROMETHEUS_MULTIPROC_DIR`` set (it must be set before ``prometheus_client`` is imported, i.e.
in the environment of the process), every process writes its values to its own mmap file in that
directory and a scrape sums them all. The directory belongs to ONE process group (the API's
gunicorn, or one Celery worker): the process that starts the others wipes it at start
(gunicorn.conf.py ``on_starting``; the Celery worker parent at ``worker_init``), and a process
that ends is marked dead (gunicorn ``child_exit``; Celery ``worker_process_shutdown``), so its
live gauges stop counting while its counters keep adding up. Without the variable (runserver, the
in-process test suite) each process serves its own values.

Labels are bounded: route templates (never raw paths), methods and status codes, pack types,
reason codes from a known set, reaper jobs and actions. No label carries a tenant id or a run id.
Counters are created with their known label values when this module is imported, so every
metric appears from the first scrape.

The database gauges (money and queues) are the truth, not a running estimate: the app that owns
the tables registers a reader (``database_gauges_register``), and the API's scrape calls it (in a
short transaction with a statement timeout, see runs/ops.py). This module imports no app of the
project (dependencies point runs -> billing -> tenants -> dpp).
"""

from __future__ import annotations

import hmac
import logging
import os
import threading
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from socketserver import ThreadingMixIn
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import (
    CONTENT_TYPE_PLAIN_0_0_4,
    CollectorRegistry,
    Counter,
    Histogram,
    disable_created_metrics,
    generate_latest,
    multiprocess,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

logger = logging.getLogger(__name__)

MULTIPROC_DIR_ENV = "PROMETHEUS_MULTIPROC_DIR"
# The classic text format, which every Prometheus version parses (our names need no escaping).
CONTENT_TYPE = CONTENT_TYPE_PLAIN_0_0_4
# No ``*_created`` series: multiprocess mode cannot serve them, so neither mode does.
disable_created_metrics()


def multiprocess_dir() -> Path | None:
    value = os.environ.get(MULTIPROC_DIR_ENV, "").strip()
    return Path(value) if value else None


# prometheus_client opens this process's file in the directory as soon as a value is created
# (below), so the directory must exist before then.
if multiprocess_dir() is not None:
    multiprocess_dir().mkdir(parents=True, exist_ok=True)

# Metrics of this process (single-process mode) live here, never in prometheus_client's global
# REGISTRY, so a scrape shows exactly what this module defines.
PROCESS_REGISTRY = CollectorRegistry()

# --- label values known at start -------------------------------------------------------------------

HTTP_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")
UNMATCHED_ROUTE = "<unmatched>"  # no URL pattern matched (a 404, or refused before routing)
RATE_LIMIT_POLICIES = ("post_runs", "get_requests", "concurrent_runs", "other")
RUN_FINISH_STATUSES = ("COMPLETED", "FAILED", "CANCELED")
# Reason codes the platform itself writes; a pack's own codes are counted as OTHER (packs are
# operator code and could invent any string). "none" is a run that finished without one.
RUN_REASON_CODES = (
    "none", "TIMEBOX_EXCEEDED", "PACK_ERROR", "PACK_UNAVAILABLE", "LEASE_EXPIRED",
    "WORKER_CRASH_DURING_FINALIZE", "NEVER_STARTED", "CANCELED", "OTHER",
)
# What each periodic job reports (runs/reaper.py returns these counts).
REAPER_ACTIONS: Mapping[str, tuple[str, ...]] = {
    "zombies": ("reaped", "lost", "skipped", "errors"),
    "reconcile": ("rolled_forward", "rolled_back", "audit_required", "undecided", "lost", "errors"),
    "outbox": ("resent", "send_failed", "never_started", "lost", "skipped", "errors"),
    "retention": ("deleted", "lost", "errors"),
}
WEBHOOK_OUTCOMES = ("succeeded", "failed", "dead", "disabled")
TASK_STATES = ("SUCCESS", "FAILURE", "RETRY", "OTHER")

# OpenTelemetry's default buckets for http.server.request.duration.
HTTP_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0)
RUN_SECONDS_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 900.0, 3600.0)

# --- the metrics ------------------------------------------------------------------------------------

http_request_duration = Histogram(
    "http_server_request_duration_seconds", "Duration of HTTP requests served by the API.",
    ["method", "route", "status_code"], buckets=HTTP_BUCKETS, registry=PROCESS_REGISTRY,
)
runs_created = Counter(
    "dpp_runs_created", "Runs created by POST /v1/runs (a replayed Idempotency-Key is not counted).",
    registry=PROCESS_REGISTRY,
)
runs_finished = Counter(
    "dpp_runs_finished", "Runs the execution task brought to a terminal status.",
    ["pack_type", "status", "reason_code"], registry=PROCESS_REGISTRY,
)
run_queue_wait = Histogram(
    "dpp_run_queue_wait_seconds", "Time from a run's creation to a worker claiming it.",
    ["pack_type"], buckets=RUN_SECONDS_BUCKETS, registry=PROCESS_REGISTRY,
)
run_execution = Histogram(
    "dpp_run_execution_seconds", "Duration of the execution task of a claimed run (pack, upload, settle).",
    ["pack_type"], buckets=RUN_SECONDS_BUCKETS, registry=PROCESS_REGISTRY,
)
reaper_actions = Counter(
    "dpp_reaper_actions", "What the periodic jobs did, per run handled.",
    ["job", "action"], registry=PROCESS_REGISTRY,
)
webhook_deliveries = Counter(
    "dpp_webhook_deliveries", "Webhook delivery attempts by outcome.",
    ["outcome"], registry=PROCESS_REGISTRY,
)
rate_limited = Counter(
    "dpp_rate_limited", "Requests refused with 429, by the limit that refused them.",
    ["policy"], registry=PROCESS_REGISTRY,
)
tasks_finished = Counter(
    "dpp_tasks", "Celery tasks that ended in a worker, by task and state.",
    ["task", "state"], registry=PROCESS_REGISTRY,
)

# Gauges read from PostgreSQL at each scrape of the API (name -> help). The owning app's reader
# returns a mapping with these names.
DATABASE_GAUGES: Mapping[str, str] = {
    "dpp_runs_queued": "Runs in status QUEUED.",
    "dpp_runs_oldest_queued_age_seconds": "Age of the oldest QUEUED run (0 when none).",
    "dpp_runs_audit_required": "Runs whose money state is AUDIT_REQUIRED (an operator must decide).",
    "dpp_ledger_held_usd_micros": "Sum of every tenant's held balance, USD micros.",
    "dpp_ledger_available_usd_micros": "Sum of every tenant's available balance, USD micros.",
    "dpp_outbox_pending": "QUEUED runs whose enqueue the broker has not confirmed.",
    "dpp_outbox_oldest_pending_age_seconds": "Age of the oldest run whose enqueue is unconfirmed (0 when none).",
    "dpp_webhook_pending": "Webhook deliveries waiting for an attempt.",
}


def _precreate() -> None:
    """Create every known label combination at 0, so each series exists from the first scrape."""
    for method in ("GET",):
        for code in ("200", "401"):
            http_request_duration.labels(method=method, route="metrics", status_code=code)
    for policy in RATE_LIMIT_POLICIES:
        rate_limited.labels(policy=policy)
    for job, actions in REAPER_ACTIONS.items():
        for action in (*actions, "other"):
            reaper_actions.labels(job=job, action=action)
    for outcome in WEBHOOK_OUTCOMES:
        webhook_deliveries.labels(outcome=outcome)


_precreate()


def run_labels_precreate(*, pack_types: Iterable[str], task_names: Iterable[str]) -> None:
    """Pre-create the run and task series for the installed packs and tasks (called by the runs app)."""
    for pack_type in pack_types:
        run_queue_wait.labels(pack_type=pack_type)
        run_execution.labels(pack_type=pack_type)
        runs_finished.labels(pack_type=pack_type, status="COMPLETED", reason_code="none")
        for reason in RUN_REASON_CODES[1:]:
            runs_finished.labels(pack_type=pack_type, status="FAILED", reason_code=reason)
        runs_finished.labels(pack_type=pack_type, status="CANCELED", reason_code="CANCELED")
    for task in task_names:
        for state in TASK_STATES:
            tasks_finished.labels(task=task, state=state)


# --- helpers for the code that observes ------------------------------------------------------------


def http_request_observe(*, method: str, route: str | None, status_code: int, seconds: float) -> None:
    method = method if method in HTTP_METHODS else "OTHER"
    http_request_duration.labels(method=method, route=route or UNMATCHED_ROUTE,
                                 status_code=str(status_code)).observe(seconds)


def rate_limited_observe(*, policy: str) -> None:
    rate_limited.labels(policy=policy if policy in RATE_LIMIT_POLICIES else "other").inc()


def run_created_observe() -> None:
    runs_created.inc()


def run_reason_label(reason_code: str | None) -> str:
    if not reason_code:
        return "none"
    return reason_code if reason_code in RUN_REASON_CODES else "OTHER"


def reaper_pass_observe(*, job: str, counts: Mapping[str, int]) -> None:
    """Count a periodic pass's actions (``counts`` as runs/reaper.py returns them)."""
    known = REAPER_ACTIONS.get(job)
    if known is None:
        return
    for action, number in counts.items():
        if action == "backlog":  # a queue depth the outbox saw, not an action on runs
            continue
        if isinstance(number, int) and number > 0:
            reaper_actions.labels(job=job, action=action if action in known else "other").inc(number)


def webhook_delivery_observe(*, outcome: str) -> None:
    if outcome not in WEBHOOK_OUTCOMES:
        raise ValueError(f"unknown webhook delivery outcome {outcome!r}")
    webhook_deliveries.labels(outcome=outcome).inc()


# --- database gauges -----------------------------------------------------------------------------------

GaugeReader = Callable[[], Mapping[str, float]]
_database_readers: list[GaugeReader] = []


def database_gauges_register(reader: GaugeReader) -> None:
    """Add a reader of database gauges (idempotent). It returns {gauge name: value}."""
    if reader not in _database_readers:
        _database_readers.append(reader)


def database_gauges_read() -> dict[str, float]:
    values: dict[str, float] = {}
    for reader in _database_readers:
        values.update(reader())
    return values


class DatabaseGaugesCollector(Collector):
    """Reads the database gauges at each scrape. A failed read (database down, statement timeout)
    is logged and shown as ``dpp_metrics_database_up 0``; the process metrics are still served."""

    def collect(self):
        try:
            values = database_gauges_read()
        except Exception as error:
            logger.warning("metrics: database gauges unavailable", extra={"error": type(error).__name__})
            yield GaugeMetricFamily("dpp_metrics_database_up", "1 when the database gauges were read.", value=0)
            return
        yield GaugeMetricFamily("dpp_metrics_database_up", "1 when the database gauges were read.", value=1)
        for name, help_text in DATABASE_GAUGES.items():
            if name in values:
                yield GaugeMetricFamily(name, help_text, value=values[name])


class _ProcessCollector(Collector):
    """This process's own metrics, for single-process mode."""

    def collect(self):
        return PROCESS_REGISTRY.collect()


def scrape(*, database: bool) -> bytes:
    """The exposition: every process's metrics (summed across processes in multiprocess mode),
    plus the database gauges when ``database``."""
    registry = CollectorRegistry()
    if multiprocess_dir() is not None:
        multiprocess.MultiProcessCollector(registry)
    else:
        registry.register(_ProcessCollector())
    if database:
        registry.register(DatabaseGaugesCollector())
    return generate_latest(registry)


# --- the multiprocess directory -----------------------------------------------------------------


def metrics_dir_wipe(*, keep_pid: int | None = None) -> int:
    """Remove the metric files of earlier processes (called by the process that starts the others,
    before it starts them). The calling process's own files are kept: its metrics already point
    at them. Returns how many files were removed."""
    path = multiprocess_dir()
    if path is None:
        return 0
    path.mkdir(parents=True, exist_ok=True)
    keep_suffix = f"_{keep_pid if keep_pid is not None else os.getpid()}.db"
    removed = 0
    for entry in path.glob("*.db"):
        if not entry.name.endswith(keep_suffix):
            entry.unlink(missing_ok=True)
            removed += 1
    return removed


def metrics_process_dead(*, pid: int) -> None:
    """Mark a process that ended: its live gauges are dropped (its counters keep counting)."""
    path = multiprocess_dir()
    if path is not None:
        multiprocess.mark_process_dead(pid, str(path))


# --- serving ----------------------------------------------------------------------------------------


def bearer_token_ok(*, authorization: str | None, token: str) -> bool:
    """True when no token is configured, or the Authorization header carries it (constant time)."""
    if not token:
        return True
    scheme, _, presented = (authorization or "").partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(presented.strip().encode(), token.encode())


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format, *args):  # noqa: A002 - the signature of the base class
        pass  # scrapes every few seconds would drown the worker's log


class _ThreadingWSGIServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True


def _worker_metrics_app(token: str):
    def app(environ, start_response):
        if environ.get("PATH_INFO", "/") not in ("/", "/metrics"):
            start_response("404 Not Found", [("Content-Type", "text/plain")])
            return [b"not found\n"]
        if not bearer_token_ok(authorization=environ.get("HTTP_AUTHORIZATION"), token=token):
            start_response("401 Unauthorized", [("Content-Type", "text/plain"), ("WWW-Authenticate", "Bearer")])
            return [b"a bearer token is required\n"]
        body = scrape(database=False)
        start_response("200 OK", [("Content-Type", CONTENT_TYPE), ("Content-Length", str(len(body)))])
        return [body]

    return app


def worker_metrics_server_start(*, addr: str, port: int, token: str) -> _ThreadingWSGIServer:
    """Serve the worker's metrics (every prefork child's, summed) on addr:port from a daemon
    thread of the worker's parent process. Same bearer rule as the API's /metrics."""
    server = make_server(addr, port, _worker_metrics_app(token), server_class=_ThreadingWSGIServer,
                         handler_class=_QuietHandler)
    thread = threading.Thread(target=server.serve_forever, name="dpp-metrics-server", daemon=True)
    thread.start()
    logger.info("worker metrics served", extra={"addr": addr, "port": server.server_port})
    return server
