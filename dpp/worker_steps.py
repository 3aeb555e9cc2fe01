"""Worker bootsteps that make a worker on SQS observable.

SQS carries only direct exchanges, so Celery's monitoring events (a fanout exchange) cannot
travel on it and Flower would see nothing. ``DppConsumer`` gives Celery's event dispatcher a
Redis connection (DPP_EVENTS_URL) while tasks stay on SQS; Flower then reads the same Redis.
Redis carries no task: a worker that starts while it is down consumes runs all the same, without
monitoring events until it restarts. ``WorkerLiveness`` writes a short-lived Redis key per
worker so the admin ops page can list live workers without Flower. Celery's "received" log line
carries the run's trace id and request id (from the message headers).
"""

from __future__ import annotations

import logging
import socket
from urllib.parse import urlparse

import redis
from celery import bootsteps
from celery.worker.consumer import Consumer
from django.conf import settings

logger = logging.getLogger(__name__)

LIVENESS_EVERY_SECONDS = 10
LIVENESS_TTL_SECONDS = 30
EVENTS_CONNECT_SECONDS = 2
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
        if not (events_url and url is None):
            return super().connection_for_write(url=url, heartbeat=heartbeat)
        # The transport is named: broker_transport (the SQS transport) must not apply to Redis.
        connection = self.app.connection_for_write(url=events_url, transport=urlparse(events_url).scheme)
        try:
            connection.ensure_connection(max_retries=1, interval_start=0.5, interval_step=0.5, timeout=EVENTS_CONNECT_SECONDS)
        except Exception:  # kombu's OperationalError or the transport's own: Redis is down
            # Celery would retry this connection before consuming anything: runs would wait on
            # monitoring. Events go nowhere instead until the worker restarts.
            logger.warning("the events Redis (DPP_EVENTS_URL) does not answer: consuming runs without "
                           "monitoring events until this worker restarts", exc_info=True)
            connection.release()
            return self.app.connection_for_write(url="memory://", transport="memory")
        return connection

    def create_task_handler(self, *args, **kwargs):
        handler = super().create_task_handler(*args, **kwargs)

        def on_task_received(message):
            # Bound before Celery logs "Task ... received", so that line carries the ids too.
            from dpp.context import bound_context

            headers = getattr(message, "headers", None)
            headers = headers if isinstance(headers, dict) else {}
            with bound_context(request_id=headers.get("dpp_request_id"), trace_id=headers.get("dpp_trace_id")):
                return handler(message)

        return on_task_received
