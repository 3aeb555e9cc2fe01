"""The relay: sends pending runs (the run row is the outbox) to the broker, out of the request.

``python manage.py run_relay`` runs ``relay_forever``; several may run at once. Each loop
claims a bounded batch of pending runs (``outbox.runs_relay_claim``: one UPDATE over
``FOR UPDATE SKIP LOCKED``, so two relays never claim one run), publishes each with ONE
long-lived producer, then marks the accepted ones (``runs_relay_confirm``: publish then mark,
at-least-once; the worker's lease claim makes a duplicate harmless) and puts the failed ones
back (``runs_relay_release``). It drains while batches come back full, then sleeps until a
submission's commit wakes it (a Redis publish on ``outbox.RELAY_CHANNEL``) or its poll interval
ends, whichever is first. The beat's outbox pass stays the backstop for a relay that is down.
"""

from __future__ import annotations

import logging
import threading
import time

import redis
from django.conf import settings
from django.db import InterfaceError, OperationalError, close_old_connections, connections
from django.utils import timezone

from dpp.celery import app as celery_app
from dpp.context import bound_context
from runs.services.outbox import RELAY_CHANNEL, run_send, runs_relay_claim, runs_relay_confirm, runs_relay_release

logger = logging.getLogger(__name__)


def relay_batch(*, producer, limit: int) -> dict:
    """One batch: claim, publish, mark. Returns the counts (``failed``: the runs put back).

    The first failed send ends the batch: that run and every run not yet tried go back to
    pending at once, so a broker that hangs costs one send's timeout, not one per claimed run."""
    claimed_at = timezone.now()
    pending = runs_relay_claim(now=claimed_at, limit=limit)
    sent, unsent = [], []
    for index, run in enumerate(pending):
        with bound_context(run_id=run.id, trace_id=run.trace_id, request_id=run.request_id):
            try:
                run_send(run_id=run.id, trace_id=run.trace_id, request_id=run.request_id, producer=producer)
            except Exception:
                unsent = [later.id for later in pending[index:]]
                logger.warning("relay send failed; the batch stops and its unsent runs go back to pending",
                               exc_info=True, extra={"unsent": len(unsent)})
                break
        sent.append(run.id)
    if sent:
        runs_relay_confirm(run_ids=sent, claimed_at=claimed_at)
    if unsent:
        runs_relay_release(run_ids=unsent, claimed_at=claimed_at)
    return {"claimed": len(pending), "sent": len(sent), "failed": len(unsent)}


class _Wakeup:
    """The Redis subscription that wakes the relay; without Redis it only sleeps (poll)."""

    def __init__(self):
        self.pubsub = None
        self.down_since = None  # time.monotonic() of the outage's first failure

    def wait(self, timeout: float) -> None:
        try:
            if self.pubsub is None:
                client = redis.Redis.from_url(settings.REDIS_URL, socket_timeout=timeout + 5,
                                              socket_connect_timeout=1)
                self.pubsub = client.pubsub(ignore_subscribe_messages=True)
                self.pubsub.subscribe(RELAY_CHANNEL)
            message = self.pubsub.get_message(timeout=timeout)
            # Coalesce the wake-ups that arrived meanwhile: one drain serves them all.
            while message is not None:
                message = self.pubsub.get_message(timeout=0)
        except (redis.RedisError, OSError) as error:
            # One WARNING per outage (class only: the message can name the host), not a traceback
            # every poll; the relay polls meanwhile.
            if self.down_since is None:
                self.down_since = time.monotonic()
                logger.warning("relay: the wake-up channel is unavailable; polling",
                               extra={"error": type(error).__name__})
            self.close()
            time.sleep(timeout)
            return
        if self.down_since is not None:
            logger.info("relay: the wake-up channel answers again",
                        extra={"outage_seconds": round(time.monotonic() - self.down_since, 1)})
            self.down_since = None

    def close(self) -> None:
        if self.pubsub is not None:
            try:
                self.pubsub.close()
            except Exception:  # noqa: BLE001 - closing a broken connection
                pass
            self.pubsub = None


def relay_forever(*, stop: threading.Event, batch_size: int, poll_seconds: float) -> None:
    """Run until ``stop`` is set (the command sets it on SIGTERM/SIGINT)."""
    wakeup = _Wakeup()
    wakeup.wait(0)  # subscribe before the first drain: a commit after it wakes us
    producer = celery_app.producer_pool.acquire(block=True)
    logger.info("relay started", extra={"batch_size": batch_size, "poll_seconds": poll_seconds})
    database_down_since = None  # time.monotonic() of the outage's first failed batch
    try:
        while not stop.is_set():
            try:
                close_old_connections()
                counts = relay_batch(producer=producer, limit=batch_size)
            except (OperationalError, InterfaceError) as error:
                # PostgreSQL unreachable: one WARNING per outage (class only: a driver's message
                # can name the host and user), not a traceback every poll; the runs wait in it.
                if database_down_since is None:
                    database_down_since = time.monotonic()
                    logger.warning("relay: the database is unreachable; retrying every poll interval",
                                   extra={"error": type(error).__name__})
                connections.close_all()
                stop.wait(poll_seconds)
                continue
            except Exception:
                logger.exception("relay batch failed; retrying after the poll interval")
                counts = {"claimed": 0, "failed": 1}
            if database_down_since is not None:
                logger.info("relay: the database answers again",
                            extra={"outage_seconds": round(time.monotonic() - database_down_since, 1)})
                database_down_since = None
            if counts["failed"]:
                # The broker refused: keep a fresh producer and do not spin on it.
                producer.release()
                producer = celery_app.producer_pool.acquire(block=True)
                stop.wait(poll_seconds)
            elif counts["claimed"] < batch_size:
                wakeup.wait(poll_seconds)  # drained: sleep until a commit or the poll
    finally:
        producer.release()
        wakeup.close()
        logger.info("relay stopped")
