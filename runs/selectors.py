"""Reads for runs. Every selector takes ``tenant`` and filters by it: a foreign run and a
missing run are the same None (the API answers the same 404)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import date, datetime

from django.db.models import OuterRef, Subquery
from django.utils import timezone

from billing.models import Wallet
from runs.models import Run, UsageDaily
from tenants.models import Tenant


def _as_uuid(value) -> uuid.UUID | None:
    try:
        return value if isinstance(value, uuid.UUID) else uuid.UUID(str(value))
    except (ValueError, TypeError, AttributeError):
        return None


def run_get_for_tenant(*, tenant: Tenant, run_id, with_budget: bool = False) -> Run | None:
    """The tenant's run, or None. ``with_budget``: the run carries ``budget_remaining_micros``
    (its wallet's available balance), read in the same query (one round trip for the detail view)."""
    parsed = _as_uuid(run_id)
    if parsed is None:
        return None
    queryset = Run.objects.filter(tenant=tenant, pk=parsed).order_by()
    if with_budget:
        queryset = queryset.annotate(budget_remaining_micros=Subquery(
            Wallet.objects.filter(tenant_id=OuterRef("tenant_id")).values("available_micros")[:1]))
    return queryset.first()


def run_is_expired(*, run: Run, now: datetime | None = None) -> bool:
    """Past retention: the owner is answered 410 Gone."""
    return run.retention_until <= (now or timezone.now())


def runs_list_for_tenant(*, tenant: Tenant, status: str | None = None):
    queryset = Run.objects.filter(tenant=tenant)
    if status:
        queryset = queryset.filter(status=status)
    return queryset.order_by("-created_at", "-id")


@dataclass(frozen=True)
class DailyUsage:
    usage_date: date
    runs_count: int
    success_count: int
    fail_count: int
    canceled_count: int
    cost_usd_micros_sum: int
    reserved_usd_micros_sum: int


def usage_daily_for_tenant(*, tenant: Tenant, from_date: date, to_date: date) -> list[DailyUsage]:
    """Per UTC day of submission: run counts by outcome, and the micros reserved and charged for
    those runs, read from the daily aggregate PostgreSQL keeps in the runs' own transactions
    (runs.models.UsageDaily): at most 367 rows, whatever the number of runs. Days without runs
    are left out."""
    rows = (UsageDaily.objects.filter(tenant=tenant, usage_date__gte=from_date, usage_date__lte=to_date)
            .exclude(runs_count=0).order_by("usage_date")
            .values_list("usage_date", "runs_count", "success_count", "fail_count", "canceled_count",
                         "cost_micros", "reserved_micros"))
    return [DailyUsage(*row) for row in rows]
