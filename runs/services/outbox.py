"""The outbox: the only writer of ``Run.enqueued_at`` and ``Run.enqueue_attempts``.

The run row is the outbox. A committed QUEUED run with ``enqueued_at`` NULL is pending; the
relay (``runs.relay``, ``manage.py run_relay``) sends it, and the beat's outbox pass
(``runs.reaper.outbox_sweep``) is the backstop.

Invariants kept here:
- the task is sent only after the run's creation committed, never inside a transaction: the
  request sends nothing, it only wakes the relay after its commit (``relay_wake``);
- ``enqueued_at`` is the time of the last send this module started: claimed (compare-and-set
  from the value read, NULL for a first send) just before a send, by the relay
  (``runs_relay_claim``, a batch under ``FOR UPDATE SKIP LOCKED``) or by an outbox pass
  (``run_resend_claim``), and put back to NULL if that send fails: one claimant per send,
  however many relays and passes run;
- publish then mark: ``enqueue_attempts`` counts CONFIRMED sends only (the broker accepted the
  message); it is incremented after the send, so a crash between the two leaves a claimed,
  unconfirmed run (``enqueue_attempts`` 0) that the outbox pass sends again; the resend backoff
  counts confirmed sends only, a broker outage does not stretch it;
- a duplicate message is harmless: the lease claim (``lease.run_claim_lease``) decides.

The task is sent by name through the Celery app, so this module does not import runs.tasks
(whose worker imports these services): no import cycle.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from datetime import datetime

import redis
from django.conf import settings
from django.db import connection, transaction
from django.db.models import F
from redis.backoff import NoBackoff
from redis.retry import Retry

from dpp.celery import app as celery_app
from dpp.context import current_request_id
from runs.models import Run

logger = logging.getLogger(__name__)

RUN_EXECUTE_TASK = "runs.tasks.run_execute_task"
RELAY_CHANNEL = "dpp:relay:wake"
SEND_RETRY_POLICY = {"max_retries": 2, "interval_start": 0, "interval_step": 0.2, "interval_max": 0.5}


def relay_wake() -> None:
    """Wake the relays (a Redis publish; called after a submission's commit). Best effort, with a
    short timeout: a lost wake-up costs the relay's poll interval, never a run."""
    try:
        _wake_client().publish(RELAY_CHANNEL, b"1")
    except redis.RedisError:
        logger.warning("relay wake-up not published; the relay's poll will find the run")


def _wake_client() -> redis.Redis:
    global _wake
    if _wake is None:
        _wake = redis.Redis.from_url(settings.REDIS_URL, socket_timeout=0.2, socket_connect_timeout=0.2,
                                     retry=Retry(NoBackoff(), 0))
    return _wake


_wake: redis.Redis | None = None


@dataclass(frozen=True)
class PendingRun:
    id: uuid.UUID
    trace_id: str
    request_id: str


_RELAY_CLAIM_SQL = """
UPDATE runs_run SET enqueued_at = %s
 WHERE id IN (SELECT id FROM runs_run
               WHERE status = 'QUEUED' AND enqueued_at IS NULL AND deadline_at > %s
               ORDER BY created_at
               LIMIT %s
               FOR UPDATE SKIP LOCKED)
   AND status = 'QUEUED' AND enqueued_at IS NULL
RETURNING id, trace_id, request_id
"""


def runs_relay_claim(*, now: datetime, limit: int) -> list[PendingRun]:
    """Claim up to ``limit`` pending runs (QUEUED, never sent, deadline ahead: the outbox pass
    fails the others), oldest first, for one relay: one
    statement in its own short transaction; rows another relay is claiming are skipped."""
    with transaction.atomic(durable=True), connection.cursor() as cursor:
        cursor.execute(_RELAY_CLAIM_SQL, [now, now, limit])
        return [PendingRun(*row) for row in cursor.fetchall()]


def runs_relay_confirm(*, run_ids: list, claimed_at: datetime) -> int:
    """Mark runs whose send the broker accepted (publish, then mark)."""
    return Run.objects.filter(pk__in=run_ids, enqueued_at=claimed_at).update(
        enqueue_attempts=F("enqueue_attempts") + 1
    )


def runs_relay_release(*, run_ids: list, claimed_at: datetime) -> int:
    """Sends that failed: back to pending (only where this relay's claim is still there)."""
    return Run.objects.filter(pk__in=run_ids, status=Run.Status.QUEUED, enqueued_at=claimed_at).update(
        enqueued_at=None
    )


def run_send(*, run_id, trace_id: str, request_id: str, producer=None) -> None:
    """Publish the run's task (raises when the broker does not accept it)."""
    celery_app.send_task(
        RUN_EXECUTE_TASK,
        kwargs={"run_id": str(run_id)},
        queue=settings.DPP_QUEUE_NAME,
        headers={"dpp_trace_id": trace_id, "dpp_request_id": current_request_id() or request_id},
        retry=True,
        retry_policy=SEND_RETRY_POLICY,
        producer=producer,
    )


def run_resend_claim(*, run: Run, now: datetime) -> bool:
    """Claim the resend of a QUEUED run (compare-and-set on ``enqueued_at``) so that two outbox
    passes do not both send it; the caller sends only when this returns True."""
    return Run.objects.filter(pk=run.pk, status=Run.Status.QUEUED, enqueued_at=run.enqueued_at).update(
        enqueued_at=now
    ) == 1


def run_resend_release(*, run: Run, now: datetime) -> bool:
    """A claimed resend failed: put ``enqueued_at`` back to NULL (only if this pass's claim is
    still there) so the next pass tries again."""
    return Run.objects.filter(pk=run.pk, status=Run.Status.QUEUED, enqueued_at=now).update(enqueued_at=None) == 1


def run_resend(*, run: Run, now: datetime) -> str:
    """One outbox resend: claim, send, release on failure. Returns the outcome for the pass's counts."""
    if not run_resend_claim(run=run, now=now):
        return "skipped"
    try:
        run_send(run_id=run.pk, trace_id=run.trace_id, request_id=run.request_id)
    except Exception:  # the broker is down or refused: the next pass resends
        logger.warning("outbox resend failed; the next pass tries again", exc_info=True)
        run_resend_release(run=run, now=now)
        return "send_failed"
    # Publish, then mark under this pass's claim: a run claimed by a worker, canceled or claimed
    # again meanwhile is not touched (its enqueued_at is no longer this claim's).
    runs_relay_confirm(run_ids=[run.pk], claimed_at=now)
    return "resent"
