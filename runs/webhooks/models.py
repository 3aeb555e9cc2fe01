"""Webhook endpoints, secrets, events, deliveries and attempts.

Invariants kept here (with runs/webhooks/services.py):
- an event row is inserted in the same transaction as the transition it reports, with its
  delivery rows; its ``body`` is serialised once and sent as the same bytes on every attempt;
- signing secrets are stored encrypted (``*_encrypted``, see crypto.py), never in clear;
- a delivery is PENDING until it SUCCEEDED, FAILED (ended without exhausting its attempts: 410,
  endpoint disabled or deleted) or is DEAD (the last scheduled attempt failed); a PENDING
  delivery is due at ``next_attempt_at``; an attempt in progress holds ``claim_token`` until
  ``claimed_until``; every change is a conditional UPDATE guarded by status and claim token;
- every attempt is one WebhookAttempt row (status code, error class, duration);
- admin actions write a WebhookAuditEntry in the same transaction.
"""

from __future__ import annotations

import uuid

from django.db import models
from django.db.models import Q

from tenants.models import Tenant


class EventType(models.TextChoices):
    RUN_COMPLETED = "run.completed"
    RUN_FAILED = "run.failed"
    RUN_CANCELED = "run.canceled"  # recorded by runs.services.cancel
    RUN_STARTED = "run.started"  # opt-in: only where named
    WEBHOOK_TEST = "webhook.test"  # only to the endpoint it tests


# What an endpoint with empty event_types, or a per-run webhook without "events", receives.
DEFAULT_EVENT_TYPES = (EventType.RUN_COMPLETED, EventType.RUN_FAILED, EventType.RUN_CANCELED)
# What a subscriber may name.
SUBSCRIBABLE_EVENT_TYPES = (*DEFAULT_EVENT_TYPES, EventType.RUN_STARTED)


def new_event_id() -> str:
    return f"evt_{uuid.uuid4().hex}"


class TenantWebhookSecret(models.Model):
    """The tenant's default secret, signing per-run webhooks (created on first use)."""

    tenant = models.OneToOneField(Tenant, on_delete=models.PROTECT, related_name="webhook_secret")
    secret_encrypted = models.TextField()
    previous_secret_encrypted = models.TextField(blank=True)
    previous_secret_expires_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    rotated_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"default webhook secret of {self.tenant_id}"


class WebhookEndpoint(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    tenant = models.ForeignKey(Tenant, on_delete=models.PROTECT, related_name="webhook_endpoints")
    url = models.URLField(max_length=2048)
    description = models.CharField(max_length=500, blank=True)
    # Empty: every event but run.started.
    event_types = models.JSONField(default=list, blank=True)
    enabled = models.BooleanField(default=True)
    disabled_reason = models.CharField(max_length=200, blank=True)
    secret_encrypted = models.TextField()
    previous_secret_encrypted = models.TextField(blank=True)
    previous_secret_expires_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    # DELETE is soft: deliveries and attempts keep their endpoint for the record.
    deleted_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            models.Index(fields=["tenant", "-created_at"], name="webhook_endpoint_tenant",
                         condition=Q(deleted_at__isnull=True)),
        ]

    def __str__(self) -> str:
        return f"{self.url} ({'enabled' if self.enabled else 'disabled'})"

    def subscribes_to(self, event_type: str) -> bool:
        if event_type == EventType.WEBHOOK_TEST:
            return False  # only the endpoint under test gets it, added explicitly
        if not self.event_types:
            return event_type in DEFAULT_EVENT_TYPES
        return event_type in self.event_types


class WebhookEvent(models.Model):
    id = models.CharField(primary_key=True, max_length=40, default=new_event_id, editable=False)
    tenant = models.ForeignKey(Tenant, on_delete=models.PROTECT, related_name="webhook_events")
    type = models.CharField(max_length=32, choices=EventType.choices)
    run_id = models.UUIDField(null=True, blank=True, help_text="The run it reports (no FK: runs owns runs).")
    # The exact bytes (UTF-8) sent on every attempt.
    body = models.TextField()
    created_at = models.DateTimeField()

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["run_id"], name="webhook_event_run"),
                   models.Index(fields=["tenant", "-created_at"], name="webhook_event_tenant")]

    def __str__(self) -> str:
        return f"{self.type} {self.id}"


class WebhookDelivery(models.Model):
    class Status(models.TextChoices):
        PENDING = "PENDING"
        SUCCEEDED = "SUCCEEDED"
        FAILED = "FAILED"
        DEAD = "DEAD"

    class Target(models.TextChoices):
        ENDPOINT = "ENDPOINT"  # a registered endpoint, signed with its own secret(s)
        RUN = "RUN"  # the webhook object of POST /v1/runs, signed with the tenant's default secret

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    tenant = models.ForeignKey(Tenant, on_delete=models.PROTECT, related_name="webhook_deliveries")
    event = models.ForeignKey(WebhookEvent, on_delete=models.PROTECT, related_name="deliveries")
    target = models.CharField(max_length=16, choices=Target.choices)
    endpoint = models.ForeignKey(WebhookEndpoint, on_delete=models.PROTECT, null=True, blank=True,
                                 related_name="deliveries")
    url = models.URLField(max_length=2048)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    attempts_count = models.PositiveIntegerField(default=0)
    # The schedule's length + 1 at creation; an operator's retry of a finished delivery adds one.
    max_attempts = models.PositiveIntegerField()
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    claim_token = models.UUIDField(null=True, blank=True)
    claimed_until = models.DateTimeField(null=True, blank=True)
    enqueued_at = models.DateTimeField(null=True, blank=True, help_text="When its task was last sent.")
    last_status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    last_error = models.CharField(max_length=300, blank=True)
    created_at = models.DateTimeField()
    updated_at = models.DateTimeField()
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        verbose_name_plural = "webhook deliveries"
        constraints = [
            models.CheckConstraint(
                condition=(Q(target="ENDPOINT", endpoint__isnull=False) | Q(target="RUN", endpoint__isnull=True)),
                name="webhook_delivery_target_matches_endpoint",
            ),
            models.CheckConstraint(condition=~Q(status="PENDING") | Q(next_attempt_at__isnull=False),
                                   name="webhook_delivery_pending_is_scheduled"),
            # One delivery per event and endpoint; one per-run delivery per event.
            models.UniqueConstraint(fields=["event", "endpoint"], name="webhook_delivery_once_per_endpoint"),
            models.UniqueConstraint(fields=["event"], condition=Q(target="RUN"), name="webhook_delivery_once_per_run"),
        ]
        indexes = [
            # The sweep: due PENDING deliveries by due time.
            models.Index(fields=["next_attempt_at"], name="webhook_delivery_due", condition=Q(status="PENDING")),
            models.Index(fields=["endpoint", "-created_at"], name="webhook_delivery_endpoint"),
        ]

    def __str__(self) -> str:
        return f"delivery {self.id} ({self.status})"


class WebhookAttempt(models.Model):
    delivery = models.ForeignKey(WebhookDelivery, on_delete=models.PROTECT, related_name="attempts")
    number = models.PositiveIntegerField()
    started_at = models.DateTimeField()
    duration_ms = models.PositiveIntegerField()
    status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    # Empty on success; else http_status, redirect, timeout, connect, tls, dns, address_refused,
    # url_refused, response or internal.
    error_class = models.CharField(max_length=32, blank=True)
    error_detail = models.CharField(max_length=300, blank=True)
    response_excerpt = models.CharField(max_length=512, blank=True)

    class Meta:
        ordering = ["delivery", "number"]
        constraints = [models.UniqueConstraint(fields=["delivery", "number"], name="webhook_attempt_once")]

    def __str__(self) -> str:
        return f"attempt {self.number} of {self.delivery_id}: {self.status_code or self.error_class}"


class WebhookAuditEntry(models.Model):
    """What an operator did to an endpoint or a delivery (admin retry/disable), and why."""

    created_at = models.DateTimeField(auto_now_add=True)
    actor = models.CharField(max_length=150)
    action = models.CharField(max_length=32)
    tenant = models.ForeignKey(Tenant, on_delete=models.PROTECT, related_name="+")
    endpoint = models.ForeignKey(WebhookEndpoint, on_delete=models.PROTECT, null=True, blank=True, related_name="+")
    delivery = models.ForeignKey(WebhookDelivery, on_delete=models.PROTECT, null=True, blank=True, related_name="+")
    reason = models.CharField(max_length=500, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        verbose_name_plural = "webhook audit entries"

    def __str__(self) -> str:
        return f"{self.action} by {self.actor}"

