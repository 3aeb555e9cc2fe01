"""Liveness (/health, always 200), readiness (/readyz: every dependency, each bounded) and the
Prometheus scrape (/metrics, see dpp/metrics.py).

/readyz is public, so it is cheap to hammer: one answer per process is reused for
DPP_READYZ_CACHE_SECONDS (concurrent callers wait for the one check in flight rather than start
their own), PostgreSQL is checked on the request's own pooled connection, Redis through one
long-lived client, and the checks run on one long-lived thread pool. The SQS check also compares
the queue's visibility timeout with the lease (they must be equal: docs/RELIABILITY.md). S3 is
ready when the bucket answers and a missing object is a 404: a 403 there means the role lacks
s3:ListBucket, and /readyz says so (``down: S3ReadPermissionMissing``)."""

from __future__ import annotations

import logging
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor, wait
from functools import lru_cache

import redis
from django.conf import settings
from django.core.signals import setting_changed
from django.db import connection, transaction
from django.http import HttpResponse, JsonResponse

from dpp import metrics
from dpp.aws import run_queue_url, s3_client, sqs_client
from dpp.problems import problem_response

logger = logging.getLogger(__name__)

CHECK_TIMEOUT_SECONDS = 2.0


def _check_postgres() -> None:
    """On the calling thread's own connection (the request's, kept by CONN_MAX_AGE): no new
    connection per call."""
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SET LOCAL statement_timeout = 2000")
        cursor.execute("SELECT 1")


@lru_cache(maxsize=4)
def _redis_client(url: str) -> redis.Redis:
    return redis.Redis.from_url(url, socket_timeout=1, socket_connect_timeout=1)


def _check_redis() -> None:
    _redis_client(settings.REDIS_URL).ping()


class VisibilityMismatch(Exception):
    """The queue's visibility timeout is not the lease: a live run's message would come back
    while it runs (shorter) or a dead worker's run would wait past its lease (longer)."""


# A key no result ever has: HEAD on it must be a 404.
ABSENT_PROBE_KEY = "dpp-readyz/absent-probe"


class S3ReadPermissionMissing(Exception):
    """HEAD on a missing object answered 403: the role lacks s3:ListBucket (or s3:GetObject), so a
    missing result would look like a permission error instead of a 404 (see the README's policy)."""


def _check_sqs() -> None:
    client = sqs_client(read_timeout=2)
    url = run_queue_url()  # DPP_QUEUE_URL for predefined queues: no ListQueues/GetQueueUrl
    attributes = client.get_queue_attributes(QueueUrl=url, AttributeNames=["VisibilityTimeout"])["Attributes"]
    visibility = int(attributes["VisibilityTimeout"])
    if visibility != settings.DPP_LEASE_SECONDS:
        raise VisibilityMismatch(f"visibility timeout {visibility} s, lease {settings.DPP_LEASE_SECONDS} s")


def _check_s3() -> None:
    from botocore.exceptions import ClientError

    client = s3_client(read_timeout=2)
    client.head_bucket(Bucket=settings.DPP_RESULT_BUCKET)
    try:
        client.head_object(Bucket=settings.DPP_RESULT_BUCKET, Key=ABSENT_PROBE_KEY)
    except ClientError as error:
        code = str(error.response.get("Error", {}).get("Code"))
        if code in {"404", "NoSuchKey", "NotFound"}:
            return
        if code in {"403", "AccessDenied", "Forbidden"}:
            raise S3ReadPermissionMissing(str(error)) from None
        raise


CHECKS = {"postgres": _check_postgres, "redis": _check_redis, "sqs": _check_sqs, "s3": _check_s3}
LOCAL_CHECK = "postgres"  # run on the request's thread, on its pooled connection

# One pool per process, for the network checks. A check stuck past its timeout keeps its thread;
# there are twice as many threads as such checks, and a stuck one is reported "timed out".
_POOL = ThreadPoolExecutor(max_workers=2 * (len(CHECKS) - 1), thread_name_prefix="readyz")
_cache_lock = threading.Lock()
_cached: tuple[float, dict[str, str]] | None = None
_in_flight: dict[str, Future] = {}  # a check still running from an earlier call is not started again


def _state(error: BaseException | None) -> str:
    if error is None:
        return "up"
    if isinstance(error, VisibilityMismatch):
        return f"down: {error}"
    return f"down: {type(error).__name__}"


def dependency_status() -> dict[str, str]:
    """Run every check in parallel; each is 'up' or 'down: <reason>' within the timeout."""
    # Building a boto client is local work (loading service models: a second on a busy machine,
    # once per process; they are cached). Done before the clock starts, it never reads as an outage.
    sqs_client(read_timeout=2), s3_client(read_timeout=2)
    started = time.monotonic()
    futures = {}
    for name, check in CHECKS.items():
        if name == LOCAL_CHECK:
            continue
        previous = _in_flight.get(name)
        if previous is None or previous.done():  # never queue behind a stuck check of the same kind
            _in_flight[name] = _POOL.submit(check)
        futures[_in_flight[name]] = name
    results: dict[str, str] = {}
    try:
        CHECKS[LOCAL_CHECK]()
        results[LOCAL_CHECK] = "up"
    except Exception as error:  # noqa: BLE001 - any failure is "down", named
        results[LOCAL_CHECK] = _state(error)
    done, _ = wait(futures, timeout=max(0.0, CHECK_TIMEOUT_SECONDS - (time.monotonic() - started)))
    for future, name in futures.items():
        results[name] = _state(future.exception()) if future in done else "down: timed out"
    return {name: results[name] for name in CHECKS}


def dependency_status_cached() -> dict[str, str]:
    """``dependency_status()``, computed at most once per DPP_READYZ_CACHE_SECONDS per process."""
    global _cached
    with _cache_lock:
        if _cached is not None and time.monotonic() - _cached[0] < settings.DPP_READYZ_CACHE_SECONDS:
            return _cached[1]
        status = dependency_status()
        _cached = (time.monotonic(), status)
        return status


def _forget(**kwargs) -> None:
    global _cached
    _cached = None  # tests change the settings the checks read
    _in_flight.clear()


setting_changed.connect(_forget)


def _get_only(view):
    """Plain Django views answer 405 as a problem too (DRF views do it themselves)."""

    def wrapped(request, *args, **kwargs):
        if request.method not in ("GET", "HEAD"):
            response = problem_response(slug="method-not-allowed", request=request)
            response["Allow"] = "GET, HEAD"
            return response
        return view(request, *args, **kwargs)

    return wrapped


@_get_only
def health(request):
    return JsonResponse({"status": "ok", "version": settings.DPP_VERSION, "services": {"api": "up"}})


@_get_only
def readyz(request):
    services = dependency_status_cached()
    down = sorted(name for name, state in services.items() if state != "up")
    if down:
        logger.warning("readiness check failed", extra={"down": down})
        return problem_response(
            slug="service-unavailable", request=request,
            detail="Down: " + ", ".join(down), extra={"services": services},
        )
    return JsonResponse({"status": "ready", "version": settings.DPP_VERSION, "services": services})


@_get_only
def metrics_scrape(request):
    """Prometheus text format: every gunicorn process's metrics and the database gauges. With
    DPP_METRICS_TOKEN set, the scrape must present it as a bearer token (401 otherwise)."""
    if not metrics.bearer_token_ok(authorization=request.headers.get("Authorization"),
                                   token=settings.DPP_METRICS_TOKEN):
        return problem_response(status=401, slug="unauthorized", request=request,
                                detail="Send the metrics token as a bearer token.")
    return HttpResponse(metrics.scrape(database=True), content_type=metrics.CONTENT_TYPE)
