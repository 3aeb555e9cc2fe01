"""Recovery transitions of the periodic passes (runs/reaper.py): zombies, stuck finalize claims,
runs never started, AUDIT_REQUIRED, and result retention.

Invariants kept here:
- each transition re-checks its guard in one conditional UPDATE on (id, version, status,
  stage/token, and the clock the pass read once); a run another actor moved is left alone;
- a zombie or a rolled-back claim is FAILED at the minimum fee; a run never started is FAILED
  and fully refunded; both settle in the transition's transaction (``finalize.run_fail``);
- AUDIT_REQUIRED moves no money but gives back the run's concurrency slot (it cannot finish on
  its own, and must not block the tenant's new runs until an operator decides); it is logged at ERROR with severity=CRITICAL: an operator
  decides (``audit.run_resolve_audit``).
"""

from __future__ import annotations

import logging
from datetime import datetime

from django.db import transaction
from django.db.models import F, Q

from billing.services import wallet_slot_release
from runs.models import Run
from runs.services.events import run_event_record
from runs.services.finalize import run_fail

logger = logging.getLogger(__name__)


def run_reap_zombie(*, run: Run, now: datetime) -> bool:
    """PROCESSING, not claimed, lease expired (re-checked in the UPDATE) -> FAILED LEASE_EXPIRED."""
    guard = Q(version=run.version, status=Run.Status.PROCESSING, finalize_stage=Run.FinalizeStage.NONE,
              lease_expires_at__lt=now)
    return run_fail(run=run, guard=guard, reason="LEASE_EXPIRED",
                    detail="the worker stopped renewing its lease", refund=False, actor="reaper", now=now)


def run_roll_back_claim(*, run: Run, now: datetime) -> bool:
    """CLAIMED but no result object: the worker died between claim and upload -> FAILED."""
    guard = Q(version=run.version, status=Run.Status.PROCESSING, finalize_stage=Run.FinalizeStage.CLAIMED,
              finalize_token=run.finalize_token)
    return run_fail(run=run, guard=guard, reason="WORKER_CRASH_DURING_FINALIZE",
                    detail="no result object was found for the finalize claim", refund=False,
                    actor="reconciler", now=now)


def run_fail_never_started(*, run: Run, now: datetime) -> bool:
    """QUEUED past its deadline -> FAILED NEVER_STARTED, everything released."""
    guard = Q(version=run.version, status=Run.Status.QUEUED, deadline_at__lte=now)
    return run_fail(run=run, guard=guard, reason="NEVER_STARTED",
                    detail="no worker started the run before its deadline", refund=True, actor="outbox", now=now)


def run_mark_audit_required(*, run: Run, why: str, now: datetime, data: dict | None = None) -> bool:
    """No money moves: an operator must decide. Logged at ERROR with severity=CRITICAL."""
    with transaction.atomic():
        won = Run.objects.filter(
            pk=run.pk, version=run.version, money_state=Run.MoneyState.RESERVED,
        ).update(money_state=Run.MoneyState.AUDIT_REQUIRED, error_reason="AUDIT_REQUIRED",
                 error_detail=why[:1000], version=F("version") + 1, updated_at=now)
        if won != 1:
            return False
        # It can no longer finish on its own: it stops holding a concurrency slot (its money
        # stays HELD until an operator decides).
        wallet_slot_release(tenant_id=run.tenant_id)
        run_event_record(run, kind="AUDIT_REQUIRED", actor="reconciler", money_state=Run.MoneyState.AUDIT_REQUIRED,
                         reason=why, data=data)
    logger.error("run needs an operator decision", extra={"run_id": str(run.pk), "severity": "CRITICAL",
                                                            "why": why})
    return True


def runs_mark_results_deleted(*, run_ids, now: datetime) -> int:
    """Record that retention deleted these runs' results (the owner then gets 410). Guarded as the
    pass's query was: only finished, settled or refunded runs, not already marked."""
    return Run.objects.filter(
        pk__in=list(run_ids), result_deleted_at__isnull=True, status__in=Run.TERMINAL_STATUSES,
        money_state__in=(Run.MoneyState.SETTLED, Run.MoneyState.REFUNDED),
    ).update(result_deleted_at=now)
