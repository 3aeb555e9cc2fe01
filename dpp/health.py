"""Liveness (/health, always 200) and readiness (/readyz: every dependency, each bounded).

S3 is ready when the bucket answers and a missing object is a 404: a 403 there means the role
lacks s3:ListBucket, and /readyz says so (``down: S3ReadPermissionMissing``)."""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor, wait

import redis
from django.conf import settings
from django.db import connections
from django.http import JsonResponse

from dpp.aws import s3_client, sqs_client
from dpp.problems import problem_response

logger = logging.getLogger(__name__)

CHECK_TIMEOUT_SECONDS = 2.0


def _check_postgres() -> None:
    connection = connections.create_connection("default")
    try:
        with connection.cursor() as cursor:
            cursor.execute("SET statement_timeout = 2000")
            cursor.execute("SELECT 1")
    finally:
        connection.close()


def _check_redis() -> None:
    client = redis.Redis.from_url(settings.REDIS_URL, socket_timeout=1, socket_connect_timeout=1)
    try:
        client.ping()
    finally:
        client.close()


# A key no result ever has: HEAD on it must be a 404.
ABSENT_PROBE_KEY = "dpp-readyz/absent-probe"


class S3ReadPermissionMissing(Exception):
    """HEAD on a missing object answered 403: the role lacks s3:ListBucket (or s3:GetObject), so a
    missing result would look like a permission error instead of a 404 (see the README's policy)."""


def _check_sqs() -> None:
    client = sqs_client(read_timeout=2)
    if settings.DPP_QUEUE_URL:  # predefined queue: the URL is known, check that it answers
        client.get_queue_attributes(QueueUrl=settings.DPP_QUEUE_URL, AttributeNames=["QueueArn"])
        return
    prefix = settings.CELERY_BROKER_TRANSPORT_OPTIONS.get("queue_name_prefix", "")
    client.get_queue_url(QueueName=f"{prefix}{settings.DPP_QUEUE_NAME}")


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


def dependency_status() -> dict[str, str]:
    """Run every check in parallel; each is 'up' or 'down: <reason>' within the timeout."""
    results: dict[str, str] = {}
    pool = ThreadPoolExecutor(max_workers=len(CHECKS), thread_name_prefix="readyz")
    futures = {pool.submit(check): name for name, check in CHECKS.items()}
    done, _ = wait(futures, timeout=CHECK_TIMEOUT_SECONDS)
    for future, name in futures.items():
        if future not in done:
            results[name] = "down: timed out"
            continue
        error = future.exception()
        results[name] = "up" if error is None else f"down: {type(error).__name__}"
    pool.shutdown(wait=False, cancel_futures=True)
    return results


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
    services = dependency_status()
    down = sorted(name for name, state in services.items() if state != "up")
    if down:
        logger.warning("readiness check failed", extra={"down": down})
        return problem_response(
            slug="service-unavailable", request=request,
            detail="Down: " + ", ".join(down), extra={"services": services},
        )
    return JsonResponse({"status": "ready", "version": settings.DPP_VERSION, "services": services})
