"""The run and its state machine.

Invariants kept here (with runs/services/, one module per actor):
- status: QUEUED -> PROCESSING -> COMPLETED | FAILED | CANCELED; QUEUED -> FAILED (never started);
  QUEUED -> CANCELED (runs/services/cancel.py); a CLAIMED (finalizing) run is never canceled;
- finalize_stage inside PROCESSING: NONE -> CLAIMED -> COMMITTED;
- money_state: RESERVED -> SETTLED | REFUNDED | AUDIT_REQUIRED (AUDIT_REQUIRED -> SETTLED | REFUNDED
  by an operator);
- every transition is one conditional UPDATE on (id, version[, status][, tokens]) that bumps
  ``version``; the heartbeat moves only ``lease_expires_at`` and never bumps it;
- (tenant, idempotency_key) is unique: one run per key per tenant;
- amounts are integer USD micros; ``actual_cost_micros`` is what the run was charged.
"""

from __future__ import annotations

import uuid

from django.db import models
from django.db.models import Q

from tenants.models import Tenant


class Run(models.Model):
    class Status(models.TextChoices):
        QUEUED = "QUEUED"
        PROCESSING = "PROCESSING"
        COMPLETED = "COMPLETED"
        FAILED = "FAILED"
        CANCELED = "CANCELED"

    class MoneyState(models.TextChoices):
        RESERVED = "RESERVED"
        SETTLED = "SETTLED"
        REFUNDED = "REFUNDED"
        AUDIT_REQUIRED = "AUDIT_REQUIRED"

    class FinalizeStage(models.TextChoices):
        NONE = "NONE"
        CLAIMED = "CLAIMED"
        COMMITTED = "COMMITTED"

    ACTIVE_STATUSES = (Status.QUEUED, Status.PROCESSING)
    TERMINAL_STATUSES = (Status.COMPLETED, Status.FAILED, Status.CANCELED)

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    tenant = models.ForeignKey(Tenant, on_delete=models.PROTECT, related_name="runs")
    pack_type = models.CharField(max_length=64)
    inputs = models.JSONField()
    idempotency_key = models.CharField(max_length=64)
    payload_hash = models.CharField(max_length=64, help_text="SHA-256 of the canonical request body.")

    status = models.CharField(max_length=16, choices=Status.choices, default=Status.QUEUED)
    money_state = models.CharField(max_length=16, choices=MoneyState.choices, default=MoneyState.RESERVED)
    finalize_stage = models.CharField(max_length=16, choices=FinalizeStage.choices, default=FinalizeStage.NONE)
    version = models.PositiveIntegerField(default=0)

    lease_token = models.UUIDField(null=True, blank=True)
    lease_expires_at = models.DateTimeField(null=True, blank=True)
    attempts = models.PositiveIntegerField(default=0, help_text="How many times a worker claimed the lease.")
    finalize_token = models.UUIDField(null=True, blank=True)
    finalize_claimed_at = models.DateTimeField(null=True, blank=True)

    reserved_micros = models.BigIntegerField()
    minimum_fee_micros = models.BigIntegerField()
    actual_cost_micros = models.BigIntegerField(null=True, blank=True, help_text="What the run was charged.")

    timebox_sec = models.PositiveSmallIntegerField(default=90)
    min_reliability_score = models.DecimalField(max_digits=5, decimal_places=4, null=True, blank=True)
    trace_id = models.CharField(max_length=128)
    request_id = models.CharField(max_length=128, blank=True)

    result_bucket = models.CharField(max_length=255, blank=True)
    result_key = models.CharField(max_length=1024, blank=True)
    result_sha256 = models.CharField(max_length=64, blank=True)
    result_deleted_at = models.DateTimeField(null=True, blank=True)
    retention_until = models.DateTimeField()

    # The webhook object of POST /v1/runs ({"url", "events"}), signed with the tenant's default
    # secret; registered endpoints subscribe separately (runs/webhooks).
    webhook = models.JSONField(null=True, blank=True)

    error_reason = models.CharField(max_length=64, blank=True)
    error_detail = models.CharField(max_length=1000, blank=True)

    # Outbox (written only by runs/services/outbox.py): the time of the last send started -- set
    # when the broker accepted the first send, or claimed by an outbox pass just before a resend
    # (so it is set while that resend is in flight, and put back to NULL if it fails). A QUEUED
    # run with it NULL past a grace period, or set longer ago than its backoff, is sent again.
    enqueued_at = models.DateTimeField(null=True, blank=True)
    enqueue_attempts = models.PositiveIntegerField(default=0)
    deadline_at = models.DateTimeField(help_text="A run not started by then is failed and refunded.")

    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        permissions = [("resolve_audit", "Can resolve AUDIT_REQUIRED runs (moves money)")]
        constraints = [
            models.UniqueConstraint(fields=["tenant", "idempotency_key"], name="run_unique_idempotency_key"),
            models.CheckConstraint(condition=Q(reserved_micros__gt=0), name="run_reserved_positive"),
            models.CheckConstraint(
                condition=Q(actual_cost_micros__isnull=True) | Q(actual_cost_micros__gte=0,
                                                                 actual_cost_micros__lte=models.F("reserved_micros")),
                name="run_charge_within_reservation",
            ),
            models.CheckConstraint(condition=Q(minimum_fee_micros__lte=models.F("reserved_micros")),
                                   name="run_minimum_fee_within_reservation"),
        ]
        indexes = [
            # GET /v1/runs (newest first, cursor) and its status filter.
            models.Index(fields=["tenant", "-created_at", "-id"], name="run_tenant_created"),
            models.Index(fields=["tenant", "status", "-created_at"], name="run_tenant_status_created"),
            # Zombie reaping: PROCESSING by lease expiry.
            models.Index(fields=["lease_expires_at"], name="run_processing_lease",
                         condition=Q(status="PROCESSING")),
            # Reconciliation: CLAIMED by claim time.
            models.Index(fields=["finalize_claimed_at"], name="run_claimed",
                         condition=Q(finalize_stage="CLAIMED")),
            # Outbox: QUEUED runs by enqueue confirmation / age.
            models.Index(fields=["enqueued_at", "created_at"], name="run_queued", condition=Q(status="QUEUED")),
            # Retention: results not yet deleted, by retention date.
            models.Index(fields=["retention_until"], name="run_retention",
                         condition=Q(result_deleted_at__isnull=True) & ~Q(result_key="")),
            # Operators: runs needing a decision.
            models.Index(fields=["updated_at"], name="run_audit_required",
                         condition=Q(money_state="AUDIT_REQUIRED")),
        ]

    def __str__(self) -> str:
        return f"run {self.id} ({self.status}/{self.money_state})"


class AuditRequiredRun(Run):
    """The operators' queue: runs whose money needs a human decision."""

    class Meta:
        proxy = True
        verbose_name = "run needing an audit decision"


class RunEvent(models.Model):
    """Append-only history of a run: one row per transition, operator action or notable event."""

    run = models.ForeignKey(Run, on_delete=models.PROTECT, related_name="events")
    created_at = models.DateTimeField(auto_now_add=True)
    kind = models.CharField(max_length=64)
    actor = models.CharField(max_length=150, help_text="api, worker, reaper, reconciler, outbox or admin:<username>")
    from_status = models.CharField(max_length=16, blank=True)
    to_status = models.CharField(max_length=16, blank=True)
    money_state = models.CharField(max_length=16, blank=True)
    amount_micros = models.BigIntegerField(null=True, blank=True)
    reason = models.CharField(max_length=1000, blank=True)
    data = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ["run", "id"]
        indexes = [models.Index(fields=["run", "id"])]

    def __str__(self) -> str:
        return f"{self.kind} by {self.actor}"


class UsageDaily(models.Model):
    """Per tenant and UTC day of submission: what ``GET /v1/tenants/{id}/usage`` answers, one row
    per day instead of every run and its ledger legs.

    Maintained by PostgreSQL, not Python (``runs/migrations/0006_usage_daily_issue15.py``): a
    deferred constraint trigger on ``runs_run`` adds each run's contribution when it is inserted
    and moves it when it changes (status, money state, charge, day), at the commit of the same
    transaction as the change, so the settle transaction updates it and no path can forget to. A
    run contributes 1 run, its reservation, 1 success if COMPLETED, 1 failure if FAILED, 1 cancel if CANCELED, and its
    charge once SETTLED or REFUNDED (``check_ledger`` proves the run's charge and reservation
    equal the ledger's, so these sums are the ledger's). Deferred to commit, the row is locked
    after the wallet, in the order every money transaction already takes."""

    tenant = models.ForeignKey(Tenant, on_delete=models.PROTECT, related_name="+")
    usage_date = models.DateField()
    runs_count = models.BigIntegerField(default=0)
    success_count = models.BigIntegerField(default=0)
    fail_count = models.BigIntegerField(default=0)
    canceled_count = models.BigIntegerField(default=0)
    cost_micros = models.BigIntegerField(default=0)
    reserved_micros = models.BigIntegerField(default=0)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["tenant", "usage_date"], name="usage_daily_tenant_date")]

    def __str__(self) -> str:
        return f"usage of {self.tenant_id} on {self.usage_date}"
