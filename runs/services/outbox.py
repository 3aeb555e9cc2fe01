"""The outbox: the only writer of ``Run.enqueued_at`` and ``Run.enqueue_attempts``.

Invariants kept here:
- the task is sent only after the run's creation committed (``submit`` registers
  ``run_enqueue`` with ``transaction.on_commit``), never inside a transaction;
- ``enqueued_at`` is the time of the last send this module started: set when the broker
  accepted the first send, or claimed (compare-and-set) by an outbox pass just before a resend
  and put back to NULL if that resend fails; ``enqueue_attempts`` counts every send tried;
- two outbox passes never both resend one run: the resend claim is a conditional UPDATE on the
  ``enqueued_at`` value the pass read;
- a duplicate message is harmless: the lease claim (``lease.run_claim_lease``) decides.

The task is sent by name through the Celery app, so this module does not import runs.tasks
(whose worker imports these services): no import cycle.
"""

from __future__ import annotations

import logging
from datetime import datetime

from django.conf import settings
from django.db.models import F
from django.utils import timezone

from dpp.celery import app as celery_app
from dpp.context import current_request_id
from runs.models import Run

logger = logging.getLogger(__name__)

RUN_EXECUTE_TASK = "runs.tasks.run_execute_task"
SEND_RETRY_POLICY = {"max_retries": 2, "interval_start": 0, "interval_step": 0.2, "interval_max": 0.5}


def run_enqueue(*, run_id, now: datetime | None = None) -> bool:
    """Send the run's task to the broker and record it. Failures leave ``enqueued_at`` as it was
    (NULL for a first send) for the outbox sweeper; returns whether the broker accepted it."""
    run = Run.objects.filter(pk=run_id).only("id", "trace_id", "request_id", "status").first()
    if run is None or run.status != Run.Status.QUEUED:
        return False
    try:
        celery_app.send_task(
            RUN_EXECUTE_TASK,
            kwargs={"run_id": str(run.pk)},
            queue=settings.DPP_QUEUE_NAME,
            headers={"dpp_trace_id": run.trace_id, "dpp_request_id": current_request_id() or run.request_id},
            retry=True,
            retry_policy=SEND_RETRY_POLICY,
        )
    except Exception:  # the broker is down or refused: the outbox will resend
        logger.warning("enqueue failed; the outbox sweeper will resend", exc_info=True,
                       extra={"run_id": str(run_id)})
        Run.objects.filter(pk=run_id).update(enqueue_attempts=F("enqueue_attempts") + 1)
        return False
    Run.objects.filter(pk=run_id).update(
        enqueued_at=now or timezone.now(), enqueue_attempts=F("enqueue_attempts") + 1
    )
    return True


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
    if run_enqueue(run_id=run.pk, now=now):
        return "resent"
    run_resend_release(run=run, now=now)
    return "send_failed"
