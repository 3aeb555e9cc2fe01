"""A bare Celery task for the benchmark's baseline: it only counts itself in Redis."""

from __future__ import annotations

import redis
from celery import shared_task
from django.conf import settings


def _redis():
    return redis.Redis.from_url(settings.REDIS_URL, socket_timeout=2, socket_connect_timeout=2)


@shared_task(name="bench.noop.noop_task", ignore_result=True)
def noop_task(*, bench_id: str) -> None:
    _redis().incr(f"dpp:bench:noop:{bench_id}")


def noop_done_count(*, bench_id: str) -> int:
    return int(_redis().get(f"dpp:bench:noop:{bench_id}") or 0)
