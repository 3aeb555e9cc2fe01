"""Writes for runs: submission, every state transition, and their ledger movements.

Invariants kept here:
- a run is created in ONE transaction with its reservation (ledger) and its history row; the
  Celery task is sent only after that commits, and a run whose send failed stays QUEUED with
  ``enqueued_at`` NULL for the outbox sweeper;
- submissions of one tenant are serialised by a lock on its wallet, so the idempotency lookup,
  the concurrent-run count and the balance check are exact; (tenant, idempotency_key) is unique
  as a backstop;
- every transition is one conditional UPDATE filtered on id, version and the guards of that
  transition (status, tokens, stage), bumping ``version``; zero rows means another actor won and
  this one does nothing more; the heartbeat moves only ``lease_expires_at``;
- a terminal transition and its settle/release are one transaction: the run row is locked first
  (by its UPDATE), then the wallet, and one transaction touches one run (see billing/locks.py).
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from functools import partial
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import F, Q
from django.utils import timezone

from billing.locks import wallet_lock
from billing.money import MIN_RESERVATION_MICROS, micros_to_usd, minimum_fee_micros
from billing.services import reservation_create, reservation_settle
from dpp.context import current_request_id
from dpp.errors import DomainError, ValidationProblem
from runs.models import Run, RunEvent
from runs.packs import pack_get
from tenants.models import Tenant

logger = logging.getLogger(__name__)


# --- errors --------------------------------------------------------------------------------


class IdempotencyKeyReused(DomainError):
    status = 409
    slug = "idempotency-key-reused"
    title = "Idempotency-Key reused"


class MaxCostExceeded(DomainError):
    status = 402
    slug = "max-cost-exceeded"
    title = "Spend cap above plan limit"


class ConcurrentRunsExceeded(DomainError):
    status = 429
    slug = "concurrent-runs-exceeded"
    title = "Too many concurrent runs"
    policy = "concurrent_runs"  # the metrics label (dpp_rate_limited_total)


# --- submission -----------------------------------------------------------------------------


@dataclass(frozen=True)
class RunSubmission:
    """A validated POST /v1/runs (the serializer builds it)."""

    idempotency_key: str
    payload_hash: str
    pack_type: str
    inputs: dict[str, Any]
    max_cost_micros: int
    timebox_sec: int
    min_reliability_score: Decimal | None
    trace_id: str


@dataclass(frozen=True)
class RunCreateResult:
    run: Run
    replayed: bool


def run_create(*, tenant: Tenant, submission: RunSubmission, now: datetime | None = None) -> RunCreateResult:
    """Create a run and reserve its cap, or replay the run already created with this key."""
    now = now or timezone.now()
    try:
        with transaction.atomic(durable=True):
            wallet_lock(tenant_id=tenant.pk)  # serialises this tenant's submissions
            existing = Run.objects.filter(tenant=tenant, idempotency_key=submission.idempotency_key).first()
            if existing is not None:
                return _replay(existing, submission)
            plan = Tenant.objects.select_related("plan").get(pk=tenant.pk).plan
            _check_plan(plan=plan, submission=submission)
            active = Run.objects.filter(tenant=tenant, status__in=Run.ACTIVE_STATUSES).count()
            if active >= plan.max_concurrent_runs:
                raise ConcurrentRunsExceeded(
                    f"{active} runs are in flight; the plan allows {plan.max_concurrent_runs}.",
                    headers={"Retry-After": "5"},
                )
            run = Run.objects.create(
                tenant=tenant,
                pack_type=submission.pack_type,
                inputs=submission.inputs,
                idempotency_key=submission.idempotency_key,
                payload_hash=submission.payload_hash,
                reserved_micros=submission.max_cost_micros,
                minimum_fee_micros=minimum_fee_micros(submission.max_cost_micros),
                timebox_sec=submission.timebox_sec,
                min_reliability_score=submission.min_reliability_score,
                trace_id=submission.trace_id,
                request_id=current_request_id() or "",
                retention_until=now + timedelta(days=plan.retention_days),
                deadline_at=now + timedelta(seconds=settings.DPP_RUN_QUEUE_DEADLINE_SECONDS),
            )
            reservation_create(tenant_id=tenant.pk, run_id=run.pk, amount_micros=submission.max_cost_micros)
            _event(run, kind="CREATED", actor="api", to_status=Run.Status.QUEUED,
                   money_state=Run.MoneyState.RESERVED, amount_micros=submission.max_cost_micros)
            transaction.on_commit(partial(run_enqueue, run_id=run.pk))
    except IntegrityError:
        # Unreachable while the wallet lock serialises submissions; kept as the database's word.
        existing = Run.objects.filter(tenant=tenant, idempotency_key=submission.idempotency_key).first()
        if existing is None:
            raise
        return _replay(existing, submission)
    logger.info("run created", extra={"run_id": str(run.pk), "reserved_micros": run.reserved_micros})
    return RunCreateResult(run=run, replayed=False)


def _replay(existing: Run, submission: RunSubmission) -> RunCreateResult:
    if existing.payload_hash != submission.payload_hash:
        raise IdempotencyKeyReused("This Idempotency-Key was already used with a different request body.")
    return RunCreateResult(run=existing, replayed=True)


def _check_plan(*, plan, submission: RunSubmission) -> None:
    if not plan.allows_pack(submission.pack_type):
        raise ValidationProblem(
            f"pack_type: '{submission.pack_type}' is not available on the {plan.code} plan",
            errors={"pack_type": "not available on this plan"},
        )
    cap = submission.max_cost_micros
    if cap < MIN_RESERVATION_MICROS:
        raise ValidationProblem(
            f"reservation.max_cost_usd: must be at least {micros_to_usd(MIN_RESERVATION_MICROS)}",
            errors={"reservation": {"max_cost_usd": "below the minimum"}},
        )
    if cap > plan.max_cost_per_run_micros:
        raise MaxCostExceeded(
            f"max_cost_usd {micros_to_usd(cap)} is above the {plan.code} plan's cap of "
            f"{micros_to_usd(plan.max_cost_per_run_micros)} per run.",
        )
    pack = pack_get(submission.pack_type)
    quote = pack.quote_micros(submission.inputs)
    if cap < quote:
        raise ValidationProblem(
            f"reservation.max_cost_usd: this run costs {micros_to_usd(quote)}; reserve at least that",
            errors={"reservation": {"max_cost_usd": f"below the quote {micros_to_usd(quote)}"}},
            quote_usd=micros_to_usd(quote),
        )


def run_enqueue(*, run_id, now: datetime | None = None) -> bool:
    """Send the run's task to the broker and record it. Failures leave ``enqueued_at`` NULL for
    the outbox sweeper; duplicates are harmless because the lease claim decides."""
    from runs.tasks import run_execute_task  # the task module imports these services

    run = Run.objects.filter(pk=run_id).only("id", "trace_id", "request_id", "status").first()
    if run is None or run.status != Run.Status.QUEUED:
        return False
    try:
        run_execute_task.apply_async(
            kwargs={"run_id": str(run.pk)},
            queue=settings.DPP_QUEUE_NAME,
            headers={"dpp_trace_id": run.trace_id, "dpp_request_id": current_request_id() or run.request_id},
            retry=True,
            retry_policy={"max_retries": 2, "interval_start": 0, "interval_step": 0.2, "interval_max": 0.5},
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


# --- transitions -----------------------------------------------------------------------------


def _event(run: Run, *, kind: str, actor: str, from_status: str = "", to_status: str = "", money_state: str = "",
           amount_micros: int | None = None, reason: str = "", data: dict | None = None) -> None:
    RunEvent.objects.create(
        run=run, kind=kind, actor=actor, from_status=from_status, to_status=to_status, money_state=money_state,
        amount_micros=amount_micros, reason=reason[:1000], data=data or {},
    )


def run_claim_lease(*, run_id, now: datetime | None = None) -> Run | None:
    """QUEUED -> PROCESSING with a new lease token; None when the run is not QUEUED (a duplicate
    or late message) or past its deadline."""
    now = now or timezone.now()
    token = uuid.uuid4()
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
            return None
        run = Run.objects.get(pk=run_id)
        _event(run, kind="LEASE_CLAIMED", actor="worker", from_status=Run.Status.QUEUED,
               to_status=Run.Status.PROCESSING, data={"lease_token": str(token)})
    return run


def run_extend_lease(*, run_id, lease_token, now: datetime | None = None) -> bool:
    """The heartbeat: move ``lease_expires_at`` while this lease still owns a run that is not yet
    finalizing. Not a transition: ``version`` is left alone so it never races finalization."""
    now = now or timezone.now()
    return Run.objects.filter(
        pk=run_id, status=Run.Status.PROCESSING, lease_token=lease_token, finalize_stage=Run.FinalizeStage.NONE
    ).update(lease_expires_at=now + timedelta(seconds=settings.DPP_LEASE_SECONDS)) == 1


def result_key_for(run: Run) -> str:
    return f"runs/{run.tenant_id}/{run.pk}/pack_envelope.json"


def run_finalize_claim(*, run: Run, now: datetime | None = None) -> uuid.UUID | None:
    """Phase 1: PROCESSING/NONE -> CLAIMED with a finalize token and the result's pointers, so a
    reconciler can find the object whatever happens next. None when another actor won."""
    now = now or timezone.now()
    token = uuid.uuid4()
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
            return None
        _event(run, kind="FINALIZE_CLAIMED", actor="worker", data={"finalize_token": str(token), "key": key})
    run.version += 1
    run.finalize_stage, run.finalize_token, run.finalize_claimed_at = Run.FinalizeStage.CLAIMED, token, now
    run.result_bucket, run.result_key = bucket, key
    return token


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
            return False
        reservation_settle(tenant_id=run.tenant_id, run_id=run.pk, charge_micros=charge_micros,
                           memo=f"run {run.pk} completed")
        _event(run, kind="COMPLETED", actor=actor, from_status=Run.Status.PROCESSING,
               to_status=Run.Status.COMPLETED, money_state=Run.MoneyState.SETTLED, amount_micros=charge_micros)
    logger.info("run settled", extra={"run_id": str(run.pk), "charge_micros": charge_micros})
    return True


def _run_fail(*, run: Run, guard: Q, reason: str, detail: str, refund: bool, actor: str, now: datetime) -> bool:
    """FAILED with the minimum fee charged (or everything released when ``refund``), guarded."""
    charge = 0 if refund else run.minimum_fee_micros
    money_state = Run.MoneyState.REFUNDED if refund else Run.MoneyState.SETTLED
    with transaction.atomic():
        won = Run.objects.filter(guard, pk=run.pk, money_state=Run.MoneyState.RESERVED).update(
            status=Run.Status.FAILED, money_state=money_state, actual_cost_micros=charge,
            error_reason=reason, error_detail=detail[:1000], finished_at=now, lease_expires_at=None,
            version=F("version") + 1, updated_at=now,
        )
        if won != 1:
            return False
        reservation_settle(tenant_id=run.tenant_id, run_id=run.pk, charge_micros=charge, memo=f"run {run.pk} {reason}")
        _event(run, kind="FAILED", actor=actor, from_status=run.status, to_status=Run.Status.FAILED,
               money_state=money_state, amount_micros=charge, reason=f"{reason}: {detail}")
    logger.info("run failed", extra={"run_id": str(run.pk), "reason": reason, "charge_micros": charge})
    return True


def run_fail_by_worker(*, run: Run, reason: str, detail: str, now: datetime | None = None) -> bool:
    """The worker's own failure (pack error, timebox): guarded by its lease, before any claim."""
    guard = Q(version=run.version, status=Run.Status.PROCESSING, lease_token=run.lease_token,
              finalize_stage=Run.FinalizeStage.NONE)
    return _run_fail(run=run, guard=guard, reason=reason, detail=detail, refund=False, actor="worker",
                     now=now or timezone.now())


# --- reaper transitions (each guarded; the caller reads the clock once per pass) --------------


def run_reap_zombie(*, run: Run, now: datetime) -> bool:
    """PROCESSING, not claimed, lease expired (re-checked in the UPDATE) -> FAILED LEASE_EXPIRED."""
    guard = Q(version=run.version, status=Run.Status.PROCESSING, finalize_stage=Run.FinalizeStage.NONE,
              lease_expires_at__lt=now)
    return _run_fail(run=run, guard=guard, reason="LEASE_EXPIRED",
                     detail="the worker stopped renewing its lease", refund=False, actor="reaper", now=now)


def run_roll_back_claim(*, run: Run, now: datetime) -> bool:
    """CLAIMED but no result object: the worker died between claim and upload -> FAILED."""
    guard = Q(version=run.version, status=Run.Status.PROCESSING, finalize_stage=Run.FinalizeStage.CLAIMED,
              finalize_token=run.finalize_token)
    return _run_fail(run=run, guard=guard, reason="WORKER_CRASH_DURING_FINALIZE",
                     detail="no result object was found for the finalize claim", refund=False,
                     actor="reconciler", now=now)


def run_fail_never_started(*, run: Run, now: datetime) -> bool:
    """QUEUED past its deadline -> FAILED NEVER_STARTED, everything released."""
    guard = Q(version=run.version, status=Run.Status.QUEUED, deadline_at__lte=now)
    return _run_fail(run=run, guard=guard, reason="NEVER_STARTED",
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
        _event(run, kind="AUDIT_REQUIRED", actor="reconciler", money_state=Run.MoneyState.AUDIT_REQUIRED,
               reason=why, data=data)
    logger.error("run needs an operator decision", extra={"run_id": str(run.pk), "severity": "CRITICAL",
                                                            "why": why})
    return True


def run_mark_resent(*, run: Run, now: datetime) -> bool:
    """Claim the resend of a QUEUED run (compare-and-set on ``enqueued_at``) so that two outbox
    passes do not both send it; the caller sends only when this returns True."""
    return Run.objects.filter(pk=run.pk, status=Run.Status.QUEUED, enqueued_at=run.enqueued_at).update(
        enqueued_at=now
    ) == 1


def run_mark_result_deleted(*, run: Run, now: datetime) -> bool:
    return Run.objects.filter(pk=run.pk, result_deleted_at__isnull=True).update(result_deleted_at=now) == 1


# --- operator decisions on AUDIT_REQUIRED runs (Django admin) -----------------------------------


class AuditResolutionRefused(DomainError):
    status = 409
    slug = "bad-request"
    title = "This resolution is not possible"


def run_resolve_audit(*, run_id, action: str, actor: str, reason: str, amount_micros: int | None = None,
                      receipt=None, now: datetime | None = None) -> Run:
    """Resolve an AUDIT_REQUIRED run: ``settle_receipt`` (COMPLETED at the receipt's cost),
    ``settle_amount`` (FAILED, charged ``amount_micros``), or ``release`` (FAILED, refunded).
    Atomic, once (guarded on AUDIT_REQUIRED), with an audit row naming actor and reason."""
    now = now or timezone.now()
    reason = (reason or "").strip()
    if not reason:
        raise AuditResolutionRefused("A reason is required.")
    run = Run.objects.get(pk=run_id)
    if action == "settle_receipt":
        if receipt is None or receipt.actual_cost_micros is None:
            raise AuditResolutionRefused("There is no readable S3 receipt to settle at.")
        charge, status = receipt.actual_cost_micros, Run.Status.COMPLETED
    elif action == "settle_amount":
        charge, status = amount_micros, Run.Status.FAILED
    elif action == "release":
        charge, status = 0, Run.Status.FAILED
    else:
        raise AuditResolutionRefused(f"Unknown action {action!r}.")
    if charge is None or not 0 <= charge <= run.reserved_micros:
        raise AuditResolutionRefused(f"The amount must be between 0 and the reservation ({run.reserved_micros} micros).")
    money_state = Run.MoneyState.SETTLED if charge > 0 else Run.MoneyState.REFUNDED
    fields = dict(status=status, money_state=money_state, actual_cost_micros=charge, finished_at=now,
                  lease_expires_at=None, version=F("version") + 1, updated_at=now)
    if status == Run.Status.COMPLETED:
        fields.update(finalize_stage=Run.FinalizeStage.COMMITTED, result_sha256=receipt.sha256 or "",
                      error_reason="", error_detail="")
    else:
        fields.update(error_reason="OPERATOR_RESOLVED", error_detail=reason[:1000])
    with transaction.atomic():
        won = Run.objects.filter(pk=run.pk, version=run.version, money_state=Run.MoneyState.AUDIT_REQUIRED).update(
            **fields
        )
        if won != 1:
            raise AuditResolutionRefused("The run is no longer waiting for a decision (resolved by someone else?).")
        reservation_settle(tenant_id=run.tenant_id, run_id=run.pk, charge_micros=charge,
                           memo=f"operator {actor}: {action}")
        _event(run, kind=f"OPERATOR_{action.upper()}", actor=actor, from_status=run.status, to_status=status,
               money_state=money_state, amount_micros=charge, reason=reason)
    logger.warning("operator resolved an AUDIT_REQUIRED run",
                   extra={"run_id": str(run.pk), "action": action, "charge_micros": charge, "actor": actor})
    return Run.objects.get(pk=run.pk)
