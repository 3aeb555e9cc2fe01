"""Worker bootsteps that make a worker on SQS observable.

SQS carries only direct exchanges, so Celery's monitoring events (a fanout exchange) cannot
travel on it and Flower would see nothing. ``RedisEvents`` stands in for Celery's own ``Events``
step and gives the event dispatcher a Redis connection (DPP_EVENTS_URL), while tasks stay on
SQS; Flower then reads the same Redis. ``WorkerLiveness`` writes a short-lived Redis key per
worker so the admin ops page can list live workers without Flower.
"""

from __future__ import annotations

import logging
import socket

from celery import bootsteps
from celery.worker.consumer import Consumer
from celery.worker.consumer.events import Events
from kombu import Connection

logger = logging.getLogger(__name__)

LIVENESS_EVERY_SECONDS = 10
LIVENESS_TTL_SECONDS = 30


class RedisEvents(Events):
    # Same step name as Celery's Events, so the steps that require it (Heart) use this one.
    name = Events.name

    def __init__(self, c, **kwargs):
        super().__init__(c, **kwargs)
        self.events_url = c.app.conf.get("dpp_events_url") or ""
        if not self.events_url:
            self.enabled = False

    def start(self, c):
        previous = self._close(c)
        connection = Connection(self.events_url, connect_timeout=2, transport_options={"socket_timeout": 2})
        dispatcher = c.event_dispatcher = c.app.events.Dispatcher(
            connection, hostname=c.hostname, enabled=self.send_events, groups=self.groups,
        )
        if previous:
            dispatcher.extend_buffer(previous)
            dispatcher.flush()
        logger.info("worker events go to Redis", extra={"events_url": self.events_url.split("@")[-1]})


class WorkerLiveness(bootsteps.StartStopStep):
    requires = ("celery.worker.consumer.connection:Connection",)

    def __init__(self, c, **kwargs):
        super().__init__(c, **kwargs)
        self.timer_entry = None
        self.key = None

    def start(self, c):
        from django.conf import settings

        from runs.ops import WORKER_ALIVE_KEY

        self.key = f"{WORKER_ALIVE_KEY}{c.hostname or socket.gethostname()}"
        redis_url = settings.REDIS_URL

        def beat():
            import redis

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
    class Blueprint(Consumer.Blueprint):
        default_steps = [
            "dpp.worker_steps:RedisEvents" if step == "celery.worker.consumer.events:Events" else step
            for step in Consumer.Blueprint.default_steps
        ] + ["dpp.worker_steps:WorkerLiveness"]
