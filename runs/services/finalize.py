"""Terminal transitions and their settlement: the two-phase finalize of a completed run, and
the guarded failure every actor uses.

Invariants kept here:
- phase 1 (claim) records the finalize token and the result's bucket/key BEFORE the S3 upload,
  so a reconciler can find the object whatever happens next;
- phase 2 (commit) and the settle are one transaction: the run row is locked first (by its
  conditional UPDATE), then the wallet; one transaction touches one run (see billing/locks.py);
- a failure settles the minimum fee (or releases everything when ``refund``) in the same
  transaction as its guarded UPDATE; zero rows updated means another actor won and nothing moves;
- a charge never exceeds the reservation (the database's run_charge_within_reservation check).
"""

from __future__ import annotations

import logging
import uuid
from datetime import datetime

from django.conf import settings
from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone

from billing.services import reservation_settle
from runs.models import Run
from runs.services.events import run_event_record
from runs.services.webhooks import EventType, run_webhook_event_record

logger = logging.getLogger(__name__)


def result_key_for(run: Run) -> str:
    return f"runs/{run.tenant_id}/{run.pk}/pack_envelope.json"


def run_finalize_claim(*, run: Run, finalize_token: uuid.UUID | None = None,
                       now: datetime | None = None) -> uuid.UUID | None:
    """Phase 1: PROCESSING/NONE -> CLAIMED with the finalize token ``finalize_token`` (chosen by
    the caller before its first attempt) and the result's pointers, so a reconciler can find the
    object whatever happens next. None when another actor won; the token when the run is already
    CLAIMED with it (a retry after a lost commit acknowledgement)."""
    now = now or timezone.now()
    token = finalize_token or uuid.uuid4()
    bucket, key = settings.DPP_RESULT_BUCKET, result_key_for(run)
    with transaction.atomic():
        won = Run.objects.filter(
            pk=run.pk, version=run.version, status=Run.Status.PROCESSING, lease_token=run.lease_token,
            finalize_stage=Run.FinalizeStage.NONE,
        ).update(
            finalize_stage=Run.FinalizeStage.CLAIMED, finalize_token=token, finalize_claimed_at=now,
            result_bucket=bucket, result_key=key, version=F("version") + 1, updated_at=now,
        )
        if won != 1:
            mine = Run.objects.filter(pk=run.pk, status=Run.Status.PROCESSING, lease_token=run.lease_token,
                                      finalize_stage=Run.FinalizeStage.CLAIMED, finalize_token=token).first()
            if mine is None:
                return None
            _finalize_claim_adopt(run, mine)
            return token
        run_event_record(run, kind="FINALIZE_CLAIMED", actor="worker", data={"finalize_token": str(token), "key": key})
    run.version += 1
    run.finalize_stage, run.finalize_token, run.finalize_claimed_at = Run.FinalizeStage.CLAIMED, token, now
    run.result_bucket, run.result_key = bucket, key
    return token


def _finalize_claim_adopt(run: Run, stored: Run) -> None:
    """The caller's copy of ``run`` takes the claim's fields as the database holds them."""
    for name in ("version", "finalize_stage", "finalize_token", "finalize_claimed_at", "result_bucket", "result_key"):
        setattr(run, name, getattr(stored, name))


def run_finalize_commit(*, run: Run, finalize_token, charge_micros: int, sha256: str, actor: str = "worker",
                        now: datetime | None = None) -> bool:
    """Phase 2: CLAIMED -> COMPLETED / SETTLED / COMMITTED and the settle, in one transaction."""
    now = now or timezone.now()
    with transaction.atomic():
        won = Run.objects.filter(
            pk=run.pk, status=Run.Status.PROCESSING, finalize_stage=Run.FinalizeStage.CLAIMED,
            finalize_token=finalize_token, money_state=Run.MoneyState.RESERVED,
        ).update(
            status=Run.Status.COMPLETED, money_state=Run.MoneyState.SETTLED,
            finalize_stage=Run.FinalizeStage.COMMITTED, actual_cost_micros=charge_micros, result_sha256=sha256,
            finished_at=now, lease_expires_at=None, version=F("version") + 1, updated_at=now,
        )
        if won != 1:
            # "Already mine": a retry after the first attempt committed but its answer was lost.
            return Run.objects.filter(pk=run.pk, status=Run.Status.COMPLETED, finalize_token=finalize_token,
                                      actual_cost_micros=charge_micros, result_sha256=sha256).exists()
        reservation_settle(tenant_id=run.tenant_id, run_id=run.pk, charge_micros=charge_micros,
                           release_slot=True, memo=f"run {run.pk} completed")
        run_event_record(run, kind="COMPLETED", actor=actor, from_status=Run.Status.PROCESSING,
                         to_status=Run.Status.COMPLETED, money_state=Run.MoneyState.SETTLED,
                         amount_micros=charge_micros)
        run_webhook_event_record(run, event_type=EventType.RUN_COMPLETED)
    logger.info("run settled", extra={"run_id": str(run.pk), "charge_micros": charge_micros})
    return True


def run_fail(*, run: Run, guard: Q, reason: str, detail: str, refund: bool, actor: str, now: datetime) -> bool:
    """FAILED with the minimum fee charged (or everything released when ``refund``), guarded by
    ``guard`` (the caller's transition conditions) and by the money still being RESERVED."""
    return run_end(run=run, guard=guard, status=Run.Status.FAILED, reason=reason, detail=detail, refund=refund,
                   actor=actor, now=now)


_END_EVENTS = {Run.Status.FAILED: EventType.RUN_FAILED, Run.Status.CANCELED: EventType.RUN_CANCELED}


def run_end(*, run: Run, guard: Q, status: str, reason: str, detail: str, refund: bool, actor: str,
            now: datetime) -> bool:
    """A run ends without a result (FAILED, or CANCELED by its client): the minimum fee is charged,
    or everything released when ``refund``, in the transaction of the UPDATE guarded by ``guard``
    and by the money still being RESERVED. False when another actor won (nothing moved)."""
    charge = 0 if refund else run.minimum_fee_micros
    money_state = Run.MoneyState.REFUNDED if refund else Run.MoneyState.SETTLED
    with transaction.atomic():
        won = Run.objects.filter(guard, pk=run.pk, money_state=Run.MoneyState.RESERVED).update(
            status=status, money_state=money_state, actual_cost_micros=charge,
            error_reason=reason, error_detail=detail[:1000], finished_at=now, lease_expires_at=None,
            version=F("version") + 1, updated_at=now,
        )
        if won != 1:
            return False
        reservation_settle(tenant_id=run.tenant_id, run_id=run.pk, charge_micros=charge, release_slot=True,
                           memo=f"run {run.pk} {reason}")
        run_event_record(run, kind=status, actor=actor, from_status=run.status, to_status=status,
                         money_state=money_state, amount_micros=charge, reason=f"{reason}: {detail}")
        run_webhook_event_record(run, event_type=_END_EVENTS[status])
    logger.info("run ended", extra={"run_id": str(run.pk), "status": status, "reason": reason,
                                    "charge_micros": charge})
    return True
