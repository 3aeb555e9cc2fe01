"""Reads for runs. Every selector takes ``tenant`` and filters by it: a foreign run and a
missing run are the same None (the API answers the same 404)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

from django.db import connection
from django.db.models import OuterRef, Subquery
from django.utils import timezone

from billing.models import Wallet
from runs.models import Run
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


_USAGE_SQL = """
SELECT (r.created_at AT TIME ZONE 'UTC')::date AS usage_date,
       COUNT(*) AS runs_count,
       COUNT(*) FILTER (WHERE r.status = 'COMPLETED') AS success_count,
       COUNT(*) FILTER (WHERE r.status = 'FAILED') AS fail_count,
       COUNT(*) FILTER (WHERE r.status = 'CANCELED') AS canceled_count,
       COALESCE(SUM(charged.amount_micros), 0) AS cost_usd_micros_sum,
       COALESCE(SUM(reserved.amount_micros), 0) AS reserved_usd_micros_sum
  FROM runs_run r
  LEFT JOIN LATERAL (
        SELECT SUM(l.amount_micros) AS amount_micros
          FROM billing_journal j
          JOIN billing_journalleg l ON l.journal_id = j.id
          JOIN billing_account a ON a.id = l.account_id
         WHERE j.run_id = r.id AND j.phase = 'FINALIZE' AND a.kind = 'REVENUE') charged ON TRUE
  LEFT JOIN LATERAL (
        SELECT SUM(l.amount_micros) AS amount_micros
          FROM billing_journal j
          JOIN billing_journalleg l ON l.journal_id = j.id
          JOIN billing_account a ON a.id = l.account_id
         WHERE j.run_id = r.id AND j.phase = 'RESERVE' AND a.kind = 'HELD') reserved ON TRUE
 WHERE r.tenant_id = %s AND r.created_at >= %s AND r.created_at < %s
 GROUP BY 1
 ORDER BY 1
"""


def usage_daily_for_tenant(*, tenant: Tenant, from_date: date, to_date: date) -> list[DailyUsage]:
    """Per UTC day of submission: run counts by outcome, and the micros the ledger reserved and
    charged for those runs (exact sums of ledger legs, not of run fields)."""
    start = datetime(from_date.year, from_date.month, from_date.day, tzinfo=UTC)
    end = datetime(to_date.year, to_date.month, to_date.day, tzinfo=UTC) + timedelta(days=1)
    with connection.cursor() as cursor:
        cursor.execute(_USAGE_SQL, [tenant.pk, start, end])
        rows = cursor.fetchall()
    return [DailyUsage(*row[:5], int(row[5]), int(row[6])) for row in rows]
