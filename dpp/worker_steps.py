"""Worker bootsteps that make a worker on SQS observable.

SQS carries only direct exchanges, so Celery's monitoring events (a fanout exchange) cannot
travel on it and Flower would see nothing. ``DppConsumer`` gives Celery's event dispatcher a
Redis connection (DPP_EVENTS_URL) while tasks stay on SQS; Flower then reads the same Redis. ``WorkerLiveness`` writes a short-lived Redis key per
worker so the admin ops page can list live workers without Flower.
"""

from __future__ import annotations

import logging
import socket

import redis
from celery import bootsteps
from celery.worker.consumer import Consumer
from django.conf import settings

logger = logging.getLogger(__name__)

LIVENESS_EVERY_SECONDS = 10
LIVENESS_TTL_SECONDS = 30
# The liveness key of each worker; runs/ops.py lists the live workers from it.
WORKER_ALIVE_KEY = "dpp:worker-alive:"


class WorkerLiveness(bootsteps.StartStopStep):
    requires = ("celery.worker.consumer.connection:Connection",)

    def __init__(self, c, **kwargs):
        super().__init__(c, **kwargs)
        self.timer_entry = None
        self.key = None

    def start(self, c):
        self.key = f"{WORKER_ALIVE_KEY}{c.hostname or socket.gethostname()}"
        redis_url = settings.REDIS_URL

        def beat():
            try:
                client = redis.Redis.from_url(redis_url, socket_timeout=1, socket_connect_timeout=1)
                client.set(self.key, "1", ex=LIVENESS_TTL_SECONDS)
                client.close()
            except Exception:
                logger.warning("could not write the worker liveness key", exc_info=True)

        beat()
        self.timer_entry = c.timer.call_repeatedly(LIVENESS_EVERY_SECONDS, beat)

    def stop(self, c):
        if self.timer_entry is not None:
            self.timer_entry.cancel()
            self.timer_entry = None

    shutdown = stop


class DppConsumer(Consumer):
    """The worker's consumer, with monitoring events on Redis and a liveness key."""

    class Blueprint(Consumer.Blueprint):
        default_steps = [*Consumer.Blueprint.default_steps, "dpp.worker_steps:WorkerLiveness"]

    def connection_for_write(self, url=None, heartbeat=None):
        # In Celery's consumer this connection serves only the event dispatcher (the Events
        # step); tasks are consumed with connection_for_read, on SQS. Events go to Redis.
        events_url = self.app.conf.get("dpp_events_url")
        if events_url and url is None:
            return self.ensure_connected(self.app.connection_for_write(url=events_url))
        return super().connection_for_write(url=url, heartbeat=heartbeat)
