"""Submission (POST /v1/runs): create a run with its reservation, or replay it.

Invariants kept here:
- a run is created in ONE transaction with its reservation (ledger) and its history row; the
  request does no broker I/O: the run row is the outbox, sent by the relay (``outbox``) once
  committed; the commit only wakes the relay (a Redis publish, best effort);
- the balance check and the concurrency limit are one conditional UPDATE of the wallet
  (``available >= cap AND active_runs < limit``), the transaction's last statement, so the hot
  wallet row is locked for that statement and the commit only; both stay exact under concurrency;
- (tenant, idempotency_key) is unique in the database: two submissions with one key race on
  that index, the loser waits for the winner's commit and replays its run;
- a replay with the same key and the same body returns the first run and moves no money; the
  same key with another body is refused;
- plan limits (packs, cap per run, concurrency) and the pack's quote are checked before money moves;
- the run's webhook URL is checked (DNS, public addresses only) before the transaction, never
  under the wallet lock; a refused URL creates nothing and does not consume the key.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from billing.money import MIN_RESERVATION_MICROS, micros_to_usd, minimum_fee_micros
from billing.services import ConcurrentRunsExceeded, reservation_create
from dpp.context import current_request_id
from dpp.db.inserts import model_insert
from dpp.errors import DomainError, ValidationProblem
from dpp.metrics import run_created_observe
from runs.models import Run
from runs.packs import pack_get
from runs.services.events import run_event_record
from runs.services.outbox import relay_wake
from runs.webhooks.services import webhook_url_check
from tenants.models import Plan, Tenant

__all__ = ["ConcurrentRunsExceeded", "IdempotencyKeyReused", "MaxCostExceeded", "RunCreateResult", "RunSubmission",
           "run_create"]

logger = logging.getLogger(__name__)


class IdempotencyKeyReused(DomainError):
    slug = "idempotency-key-reused"


class MaxCostExceeded(DomainError):
    slug = "max-cost-exceeded"


@dataclass(frozen=True)
class RunSubmission:
    """A validated POST /v1/runs (the view builds it from the serializer's data)."""

    idempotency_key: str
    payload_hash: str
    pack_type: str
    inputs: dict[str, Any]
    max_cost_micros: int
    timebox_sec: int
    min_reliability_score: Decimal | None
    trace_id: str
    webhook: dict[str, Any] | None = None  # {"url", "events"}: part of the body, so of its hash


@dataclass(frozen=True)
class RunCreateResult:
    run: Run
    replayed: bool


def run_create(*, tenant: Tenant, submission: RunSubmission, now: datetime | None = None) -> RunCreateResult:
    """Create a run and reserve its cap, or replay the run already created with this key.

    ``tenant.plan`` is the plan loaded with the tenant (by authentication): its limits apply.
    One durable transaction, in this order: INSERT the run (the idempotency key's unique index
    decides a race between two submissions with one key) -> history row -> the reservation: its
    journal, legs and the wallet's conditional UPDATE (balance and concurrency slot) as ONE
    statement, LAST, then commit: the tenant's hot wallet row is locked for one statement and
    the commit, not the whole
    transaction. No broker I/O: the relay sends the task (the run row is the outbox); after the
    commit it is only woken.
    """
    now = now or timezone.now()
    plan = tenant.plan
    try:
        _check_plan(plan=plan, submission=submission)
    except DomainError:
        # A replay answers what the first submission got, whatever the plan says today.
        existing = Run.objects.filter(tenant=tenant, idempotency_key=submission.idempotency_key).first()
        if existing is None:
            raise
        return _replay(existing, submission)
    if submission.webhook and not Run.objects.filter(
            tenant=tenant, idempotency_key=submission.idempotency_key).exists():
        # A replay keeps the run it has; a new run's receiver is checked outside the transaction.
        webhook_url_check(url=submission.webhook["url"], field="webhook.url")
    try:
        with transaction.atomic(durable=True):
            run = model_insert(Run(
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
                webhook=submission.webhook,
                request_id=current_request_id() or "",
                retention_until=now + timedelta(days=plan.retention_days),
                deadline_at=now + timedelta(seconds=settings.DPP_RUN_QUEUE_DEADLINE_SECONDS),
            ))
            run_event_record(run, kind="CREATED", actor="api", to_status=Run.Status.QUEUED,
                             money_state=Run.MoneyState.RESERVED, amount_micros=submission.max_cost_micros)
            # Last statement before the commit (see billing.services.reservation_create).
            reservation_create(tenant_id=tenant.pk, run_id=run.pk, amount_micros=submission.max_cost_micros,
                               max_active_runs=plan.max_concurrent_runs)
            transaction.on_commit(relay_wake)
    except IntegrityError:
        # Another submission with this key committed first (the unique index made this INSERT
        # wait for it): answer with its run.
        existing = Run.objects.filter(tenant=tenant, idempotency_key=submission.idempotency_key).first()
        if existing is None:
            raise
        return _replay(existing, submission)
    logger.info("run created", extra={"run_id": str(run.pk), "reserved_micros": run.reserved_micros})
    run_created_observe()  # after the commit, once per created run (a replay returned above)
    return RunCreateResult(run=run, replayed=False)


def _replay(existing: Run, submission: RunSubmission) -> RunCreateResult:
    if existing.payload_hash != submission.payload_hash:
        raise IdempotencyKeyReused("This Idempotency-Key was already used with a different request body.")
    return RunCreateResult(run=existing, replayed=True)


def _check_plan(*, plan: Plan, submission: RunSubmission) -> None:
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
    quote = pack_get(submission.pack_type).quote_micros(submission.inputs)
    if cap < quote:
        raise ValidationProblem(
            f"reservation.max_cost_usd: this run costs {micros_to_usd(quote)}; reserve at least that",
            errors={"reservation": {"max_cost_usd": f"below the quote {micros_to_usd(quote)}"}},
            quote_usd=micros_to_usd(quote),
        )
