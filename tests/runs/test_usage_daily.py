"""The daily usage aggregate is kept by PostgreSQL in the runs' own transactions and equals, to
the micro, what the ledger says (the per-request aggregation it replaced is the oracle here)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest
from django.db import connection, transaction
from django.utils import timezone

from runs.models import Run, UsageDaily
from runs.selectors import usage_daily_for_tenant
from runs.services import (
    RunSubmission,
    run_claim_lease,
    run_create,
    run_fail_by_worker,
    run_finalize_claim,
    run_finalize_commit,
)
from tests.factories import TenantFactory
from tests.runs.helpers import decision_inputs

pytestmark = pytest.mark.django_db(transaction=True)  # the aggregate is written at each commit

# The per-request aggregation over runs and ledger legs the aggregate replaced: the oracle.
LEDGER_USAGE_SQL = """
SELECT (r.created_at AT TIME ZONE 'UTC')::date, COUNT(*), COUNT(*) FILTER (WHERE r.status = 'COMPLETED'),
       COUNT(*) FILTER (WHERE r.status = 'FAILED'),
       COALESCE(SUM((SELECT SUM(l.amount_micros) FROM billing_journal j
                       JOIN billing_journalleg l ON l.journal_id = j.id JOIN billing_account a ON a.id = l.account_id
                      WHERE j.run_id = r.id AND j.phase = 'FINALIZE' AND a.kind = 'REVENUE')), 0),
       COALESCE(SUM((SELECT SUM(l.amount_micros) FROM billing_journal j
                       JOIN billing_journalleg l ON l.journal_id = j.id JOIN billing_account a ON a.id = l.account_id
                      WHERE j.run_id = r.id AND j.phase = 'RESERVE' AND a.kind = 'HELD')), 0)
  FROM runs_run r WHERE r.tenant_id = %s GROUP BY 1 ORDER BY 1
"""


@pytest.fixture(autouse=True)
def _no_broker(no_broker):
    pass


def ledger_usage(tenant) -> list[tuple]:
    with connection.cursor() as cursor:
        cursor.execute(LEDGER_USAGE_SQL, [tenant.pk])
        return [tuple(int(v) if not hasattr(v, "isoformat") else v for v in row) for row in cursor.fetchall()]


def aggregate_usage(tenant) -> list[tuple]:
    rows = usage_daily_for_tenant(tenant=tenant, from_date=datetime(2000, 1, 1, tzinfo=UTC).date(),
                                  to_date=timezone.now().date() + timedelta(days=1))
    return [(r.usage_date, r.runs_count, r.success_count, r.fail_count, r.cost_usd_micros_sum,
             r.reserved_usd_micros_sum) for r in rows]


def make_run(tenant, cap: int = 500_000) -> Run:
    return run_create(tenant=tenant, submission=RunSubmission(
        idempotency_key=uuid.uuid4().hex, payload_hash="0" * 64, pack_type="decision", inputs=decision_inputs(),
        max_cost_micros=cap, timebox_sec=30, min_reliability_score=None, trace_id="trace-usage")).run


def complete(run: Run, charge: int) -> None:
    run = run_claim_lease(run_id=run.pk)
    token = run_finalize_claim(run=run)
    assert run_finalize_commit(run=run, finalize_token=token, charge_micros=charge, sha256="ab" * 32)


class TestUsageDaily:
    def test_equals_the_ledger_after_every_kind_of_outcome(self):
        tenant = TenantFactory(balance_micros=10_000_000)
        complete(make_run(tenant), charge=10_400)
        complete(make_run(tenant, 200_000), charge=123_456)
        run_fail_by_worker(run=run_claim_lease(run_id=make_run(tenant).pk), reason="PACK_FAILED", detail="x")
        run_claim_lease(run_id=make_run(tenant).pk)  # processing: reserved, not charged
        make_run(tenant, 70_000)  # queued
        yesterday = make_run(tenant, 90_000)
        Run.objects.filter(pk=yesterday.pk).update(created_at=timezone.now() - timedelta(days=1))
        complete(Run.objects.get(pk=yesterday.pk), charge=1_000)

        assert aggregate_usage(tenant) == ledger_usage(tenant)
        today = aggregate_usage(tenant)[-1]
        assert today[1:] == (5, 2, 1, 10_400 + 123_456 + 10_000, 500_000 * 3 + 200_000 + 70_000)

    def test_another_tenants_runs_never_count(self):
        tenant, other = TenantFactory(balance_micros=10_000_000), TenantFactory(balance_micros=10_000_000)
        complete(make_run(other), charge=10_400)
        make_run(tenant)
        assert aggregate_usage(tenant)[0][1:] == (1, 0, 0, 0, 500_000)

    def test_it_moves_with_the_settlement_transaction_and_only_when_it_commits(self):
        tenant = TenantFactory(balance_micros=10_000_000)
        run = run_claim_lease(run_id=make_run(tenant).pk)
        token = run_finalize_claim(run=run)
        before = aggregate_usage(tenant)
        with pytest.raises(RuntimeError), transaction.atomic():
            run_finalize_commit(run=run, finalize_token=token, charge_micros=10_400, sha256="ab" * 32)
            raise RuntimeError("the settlement rolls back")
        assert aggregate_usage(tenant) == before  # rolled back with it
        assert run_finalize_commit(run=run, finalize_token=token, charge_micros=10_400, sha256="ab" * 32)
        assert aggregate_usage(tenant)[0][1:] == (1, 1, 0, 10_400, 500_000)

    def test_the_usage_endpoint_reads_one_row_per_day_whatever_the_number_of_runs(
            self, django_assert_max_num_queries):
        tenant = TenantFactory(balance_micros=10_000_000)
        for _ in range(30):
            make_run(tenant, 50_000)
        assert UsageDaily.objects.filter(tenant=tenant).count() == 1
        from rest_framework.test import APIClient

        from tenants.services import api_key_issue

        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {api_key_issue(tenant=tenant).plaintext}")
        with django_assert_max_num_queries(8):
            response = client.get(f"/v1/tenants/{tenant.pk}/usage")
        assert response.status_code == 200
        assert response.json()["daily_usage"][0]["runs_count"] == 30
        assert response.json()["daily_usage"][0]["reserved_usd_micros_sum"] == 30 * 50_000
