"""Reads for runs. Every selector takes ``tenant`` and filters by it: a foreign run and a
missing run are the same None (the API answers the same 404)."""

from __future__ import annotations

import functools
import uuid
from dataclasses import dataclass
from datetime import date, datetime

from django.db import connections
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


def run_get_for_tenant(*, tenant: Tenant | uuid.UUID, run_id, with_budget: bool = False) -> Run | None:
    """The tenant's run, or None. ``with_budget``: the run carries ``budget_remaining_micros``
    (its wallet's available balance), read in the same query (one round trip for the detail view).

    The hottest read of the API (clients poll it): the ORM compiles the statement once per
    process (``_RunById``) and each call binds the two ids, sends it and builds the model from
    the row; compiling it anew cost more CPU than the round trip it sends."""
    parsed = _as_uuid(run_id)
    if parsed is None:
        return None
    tenant_id = tenant.pk if isinstance(tenant, Tenant) else tenant
    return _RunById.compiled(with_budget).fetch(run_id=parsed, tenant_id=tenant_id)


class _RunById:
    """"This tenant's run by id", compiled once by the ORM from the model (so it follows the
    model's fields and migrations) with stand-in ids where the real ones are bound."""

    _RUN = uuid.UUID(int=0xD99_0001)
    _TENANT = uuid.UUID(int=0xD99_0002)

    def __init__(self, with_budget: bool):
        queryset = Run.objects.filter(tenant_id=self._TENANT, pk=self._RUN).order_by()
        if with_budget:
            queryset = queryset.annotate(budget_remaining_micros=Subquery(
                Wallet.objects.filter(tenant_id=OuterRef("tenant_id")).values("available_micros")[:1]))
        compiler = queryset.query.get_compiler(using=queryset.db)
        self.sql, self.params = compiler.as_sql()
        columns = [expression for expression, _, _ in compiler.select]
        self.converters = sorted(compiler.get_converters(columns).items())
        self.model_width = len(Run._meta.concrete_fields)
        self.attnames = [column.target.attname for column in columns[:self.model_width]]
        self.annotations = [alias for _, _, alias in compiler.select[self.model_width:]]
        self.db = queryset.db

    @classmethod
    @functools.cache
    def compiled(cls, with_budget: bool) -> _RunById:
        return cls(with_budget)

    def fetch(self, *, run_id: uuid.UUID, tenant_id) -> Run | None:
        bound = [{self._RUN: run_id, self._TENANT: tenant_id}.get(param, param) for param in self.params]
        connection = connections[self.db]
        with connection.cursor() as cursor:
            cursor.execute(self.sql, bound)
            row = cursor.fetchone()
        if row is None:
            return None
        row = list(row)
        for position, (converters, expression) in self.converters:
            for converter in converters:
                row[position] = converter(row[position], expression, connection)
        run = Run.from_db(self.db, self.attnames, row[:self.model_width])
        for alias, value in zip(self.annotations, row[self.model_width:], strict=True):
            setattr(run, alias, value)
        return run


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
