"""Tenants, plans and API keys.

Invariants kept here:
- a tenant has exactly one current plan; every change is recorded in PlanAssignment (history);
- an API key is stored only as an HMAC-SHA256 of the full key (unique, indexed) plus a short
  display prefix; the plaintext exists once, when it is issued;
- plan limits are positive integers; money limits are integer USD micros.
"""

from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models
from django.db.models import F, Func, Q, Value
from django.db.models.lookups import Exact

from tenants.pack_types import allowed_pack_types_allows, allowed_pack_types_validate


class Plan(models.Model):
    code = models.SlugField(max_length=32, unique=True)
    name = models.CharField(max_length=100)
    # Pack types this plan may run: registered names, or ["*"] for every pack; see tenants/pack_types.py.
    allowed_pack_types = models.JSONField(default=list, blank=True, validators=[allowed_pack_types_validate])
    post_runs_per_minute = models.PositiveIntegerField()
    get_requests_per_minute = models.PositiveIntegerField()
    max_concurrent_runs = models.PositiveIntegerField()
    max_cost_per_run_micros = models.BigIntegerField()
    retention_days = models.PositiveIntegerField(default=30)
    max_webhook_endpoints = models.PositiveIntegerField(default=10)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["code"]
        constraints = [
            models.CheckConstraint(condition=Q(max_cost_per_run_micros__gt=0), name="plan_max_cost_positive"),
            models.CheckConstraint(condition=Q(post_runs_per_minute__gt=0), name="plan_post_rate_positive"),
            models.CheckConstraint(condition=Q(get_requests_per_minute__gt=0), name="plan_get_rate_positive"),
            models.CheckConstraint(condition=Q(max_concurrent_runs__gt=0), name="plan_concurrency_positive"),
            models.CheckConstraint(condition=Q(retention_days__gt=0), name="plan_retention_positive"),
            # A string would have been a substring match, an object a key match: only a list.
            models.CheckConstraint(
                condition=Exact(Func(F("allowed_pack_types"), function="jsonb_typeof", output_field=models.CharField()),
                                Value("array")),
                name="plan_allowed_pack_types_array",
            ),
        ]

    def __str__(self) -> str:
        return self.code

    def allows_pack(self, pack_type: str) -> bool:
        return allowed_pack_types_allows(self.allowed_pack_types, pack_type)

    def limits(self) -> dict:
        return {
            "post_runs_per_minute": self.post_runs_per_minute,
            "get_requests_per_minute": self.get_requests_per_minute,
            "max_concurrent_runs": self.max_concurrent_runs,
            "max_cost_per_run_micros": self.max_cost_per_run_micros,
            "allowed_pack_types": list(self.allowed_pack_types) if isinstance(self.allowed_pack_types, list) else [],
            "retention_days": self.retention_days,
            "max_webhook_endpoints": self.max_webhook_endpoints,
        }


class Tenant(models.Model):
    class Status(models.TextChoices):
        ACTIVE = "ACTIVE"
        SUSPENDED = "SUSPENDED"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    name = models.CharField(max_length=200)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.ACTIVE)
    plan = models.ForeignKey(Plan, on_delete=models.PROTECT, related_name="tenants")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["created_at"]

    def __str__(self) -> str:
        return f"{self.name} ({self.id})"

    @property
    def is_active(self) -> bool:
        return self.status == self.Status.ACTIVE

    # DRF treats the authenticated principal as a user; a tenant authenticated by key is one.
    is_authenticated = True
    is_anonymous = False


class PlanAssignment(models.Model):
    """History of a tenant's plans: one row per change, newest last."""

    tenant = models.ForeignKey(Tenant, on_delete=models.PROTECT, related_name="plan_assignments")
    plan = models.ForeignKey(Plan, on_delete=models.PROTECT, related_name="+")
    previous_plan = models.ForeignKey(Plan, on_delete=models.PROTECT, related_name="+", null=True, blank=True)
    assigned_at = models.DateTimeField(auto_now_add=True)
    assigned_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True)
    reason = models.CharField(max_length=500, blank=True)

    class Meta:
        ordering = ["tenant", "assigned_at", "id"]
        indexes = [models.Index(fields=["tenant", "assigned_at"])]

    def __str__(self) -> str:
        return f"{self.tenant_id} -> {self.plan_id} at {self.assigned_at:%Y-%m-%d}"


class ApiKey(models.Model):
    tenant = models.ForeignKey(Tenant, on_delete=models.PROTECT, related_name="api_keys")
    prefix = models.CharField(max_length=16, help_text="First characters of the key, for display only.")
    key_hash = models.CharField(max_length=64, unique=True, help_text="HMAC-SHA256 of the full key (hex).")
    label = models.CharField(max_length=200, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["tenant", "created_at"])]
        verbose_name = "API key"

    def __str__(self) -> str:
        return f"{self.prefix}… ({self.label or 'no label'})"
