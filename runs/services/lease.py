"""The worker's lease: claim a QUEUED run, keep the lease alive, fail the run it holds.

Invariants kept here:
- a run executes only under a lease claimed by one conditional UPDATE (QUEUED, before its
  deadline -> PROCESSING with a fresh token); a duplicate or late message claims nothing;
- the heartbeat moves only ``lease_expires_at``, guarded by the token and by finalization not
  having started; it never bumps ``version``, so it never races a transition;
- a lease never reaches past the run's start + timebox + DPP_LEASE_GRACE_SECONDS, and lease
  times are the database's clock (``Now()`` in the UPDATE), never a worker host's;
- the worker's own failure is guarded by its lease and by finalization not having started, and
  settles the minimum fee in the same transaction (``finalize.run_fail``).
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import DateTimeField, DurationField, ExpressionWrapper, F, Q, Value
from django.db.models.functions import Least, Now
from django.utils import timezone

from runs.models import Run
from runs.services.events import run_event_record
from runs.services.finalize import run_fail
from runs.services.webhooks import EventType, run_webhook_event_record


def _clock(now: datetime | None):
    """The clock of a lease write: the database's (``Now()``), or the time a test passes in."""
    return Now() if now is None else Value(now, output_field=DateTimeField())


def _lease_cap():
    """How long after its start a run may hold a lease at most: its timebox plus a grace. A pack
    blocked in native code therefore loses its lease and its reservation is released by the
    reaper, however long the heartbeat goes on."""
    return ExpressionWrapper(F("timebox_sec") * Value(timedelta(seconds=1))
                             + Value(timedelta(seconds=settings.DPP_LEASE_GRACE_SECONDS)),
                             output_field=DurationField())


def _lease_term():
    return Value(timedelta(seconds=settings.DPP_LEASE_SECONDS), output_field=DurationField())


def run_claim_lease(*, run_id, lease_token: uuid.UUID | None = None, now: datetime | None = None) -> Run | None:
    """QUEUED -> PROCESSING with the lease token ``lease_token`` (chosen by the caller before its
    first attempt, so that a retry after a lost commit acknowledgement recognises its own claim);
    None when the run is not QUEUED (a duplicate or late message) or past its deadline, and is
    not already leased with this very token."""
    clock = _clock(now)
    token = lease_token or uuid.uuid4()
    with transaction.atomic():
        claimed = Run.objects.filter(pk=run_id, status=Run.Status.QUEUED, deadline_at__gt=clock).update(
            status=Run.Status.PROCESSING,
            lease_token=token,
            lease_expires_at=Least(clock + _lease_term(), clock + _lease_cap()),
            started_at=clock,
            attempts=F("attempts") + 1,
            version=F("version") + 1,
            updated_at=clock,
        )
        if claimed != 1:
            # "Already mine": the first attempt committed and only its answer was lost.
            return Run.objects.filter(pk=run_id, status=Run.Status.PROCESSING, lease_token=token,
                                      finalize_stage=Run.FinalizeStage.NONE).first()
        run = Run.objects.get(pk=run_id)
        run_event_record(run, kind="LEASE_CLAIMED", actor="worker", from_status=Run.Status.QUEUED,
                         to_status=Run.Status.PROCESSING, data={"lease_token": str(token)})
        run_webhook_event_record(run, event_type=EventType.RUN_STARTED)  # only where run.started is named
    return run


def run_extend_lease(*, run_id, lease_token, now: datetime | None = None) -> bool:
    """The heartbeat: move ``lease_expires_at`` while this lease still owns a run that is not yet
    finalizing, never past the run's start + timebox + DPP_LEASE_GRACE_SECONDS (database clock).
    Not a transition: ``version`` is left alone so it never races finalization."""
    clock = _clock(now)
    return Run.objects.filter(
        pk=run_id, status=Run.Status.PROCESSING, lease_token=lease_token, finalize_stage=Run.FinalizeStage.NONE
    ).update(lease_expires_at=Least(clock + _lease_term(), F("started_at") + _lease_cap())) == 1


def run_fail_by_worker(*, run: Run, reason: str, detail: str, refund: bool = False,
                       now: datetime | None = None) -> bool:
    """The worker's own failure (pack error, timebox): guarded by its lease, before any claim.
    The minimum fee is charged, or everything released when ``refund`` (the platform's fault)."""
    guard = Q(version=run.version, status=Run.Status.PROCESSING, lease_token=run.lease_token,
              finalize_stage=Run.FinalizeStage.NONE)
    return run_fail(run=run, guard=guard, reason=reason, detail=detail, refund=refund, actor="worker",
                    now=now or timezone.now())
