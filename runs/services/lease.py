"""The worker's lease: claim a QUEUED run, keep the lease alive, fail the run it holds.

Invariants kept here:
- a run executes only under a lease claimed by one conditional UPDATE (QUEUED, before its
  deadline -> PROCESSING with a fresh token); a duplicate or late message claims nothing;
- the heartbeat moves only ``lease_expires_at``, guarded by the token and by finalization not
  having started; it never bumps ``version``, so it never races a transition;
- the worker's own failure is guarded by its lease and by finalization not having started, and
  settles the minimum fee in the same transaction (``finalize.run_fail``).
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone

from runs.models import Run
from runs.services.events import run_event_record
from runs.services.finalize import run_fail


def run_claim_lease(*, run_id, lease_token: uuid.UUID | None = None, now: datetime | None = None) -> Run | None:
    """QUEUED -> PROCESSING with the lease token ``lease_token`` (chosen by the caller before its
    first attempt, so that a retry after a lost commit acknowledgement recognises its own claim);
    None when the run is not QUEUED (a duplicate or late message) or past its deadline, and is
    not already leased with this very token."""
    now = now or timezone.now()
    token = lease_token or uuid.uuid4()
    with transaction.atomic():
        claimed = Run.objects.filter(pk=run_id, status=Run.Status.QUEUED, deadline_at__gt=now).update(
            status=Run.Status.PROCESSING,
            lease_token=token,
            lease_expires_at=now + timedelta(seconds=settings.DPP_LEASE_SECONDS),
            started_at=now,
            attempts=F("attempts") + 1,
            version=F("version") + 1,
            updated_at=now,
        )
        if claimed != 1:
            # "Already mine": the first attempt committed and only its answer was lost.
            return Run.objects.filter(pk=run_id, status=Run.Status.PROCESSING, lease_token=token,
                                      finalize_stage=Run.FinalizeStage.NONE).first()
        run = Run.objects.get(pk=run_id)
        run_event_record(run, kind="LEASE_CLAIMED", actor="worker", from_status=Run.Status.QUEUED,
                         to_status=Run.Status.PROCESSING, data={"lease_token": str(token)})
    return run


def run_extend_lease(*, run_id, lease_token, now: datetime | None = None) -> bool:
    """The heartbeat: move ``lease_expires_at`` while this lease still owns a run that is not yet
    finalizing. Not a transition: ``version`` is left alone so it never races finalization."""
    now = now or timezone.now()
    return Run.objects.filter(
        pk=run_id, status=Run.Status.PROCESSING, lease_token=lease_token, finalize_stage=Run.FinalizeStage.NONE
    ).update(lease_expires_at=now + timedelta(seconds=settings.DPP_LEASE_SECONDS)) == 1


def run_fail_by_worker(*, run: Run, reason: str, detail: str, refund: bool = False,
                       now: datetime | None = None) -> bool:
    """The worker's own failure (pack error, timebox): guarded by its lease, before any claim.
    The minimum fee is charged, or everything released when ``refund`` (the platform's fault)."""
    guard = Q(version=run.version, status=Run.Status.PROCESSING, lease_token=run.lease_token,
              finalize_stage=Run.FinalizeStage.NONE)
    return run_fail(run=run, guard=guard, reason=reason, detail=detail, refund=refund, actor="worker",
                    now=now or timezone.now())
