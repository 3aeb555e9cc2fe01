"""Real concurrency against PostgreSQL: parallel POSTs from threads, each with its own
connection, racing on one tenant. The database decides; the counts must be exact."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
from django.db import connection

from billing.models import Journal, Wallet
from runs.models import Run
from tenants.models import Plan
from tenants.services import api_key_issue
from tests.factories import TenantFactory
from tests.runs.helpers import new_key, post_run, run_body

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]


def parallel_posts(key_plaintext: str, count: int, *, keys: list[str], body: dict) -> list[int]:
    from rest_framework.test import APIClient

    barrier = threading.Barrier(count)

    def one(index: int) -> int:
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {key_plaintext}")
        try:
            barrier.wait(timeout=10)
            return post_run(client, body, key=keys[index]).status_code
        finally:
            connection.close()

    with ThreadPoolExecutor(max_workers=count) as pool:
        return list(pool.map(one, range(count)))


@pytest.fixture(autouse=True)
def _no_broker(monkeypatch):
    """These tests are about the reservation; the relay is tested elsewhere."""
    monkeypatch.setattr("runs.services.submit.relay_wake", lambda: None)


class TestParallelSubmissions:
    def test_thirty_posts_with_one_key_make_one_run_and_one_reservation(self):
        tenant = TenantFactory(balance_micros=10_000_000)
        key = api_key_issue(tenant=tenant).plaintext

        statuses = parallel_posts(key, 30, keys=["one-key-for-all"] * 30, body=run_body("0.0500"))

        assert statuses == [202] * 30
        assert Run.objects.filter(tenant=tenant).count() == 1
        assert Journal.objects.filter(tenant=tenant, kind="RESERVE").count() == 1
        wallet = Wallet.objects.get(tenant=tenant)
        assert (wallet.available_micros, wallet.held_micros) == (9_950_000, 50_000)

    def test_ten_posts_with_a_balance_for_three_make_exactly_three_runs(self):
        tenant = TenantFactory(balance_micros=150_000)  # three caps of 0.0500
        key = api_key_issue(tenant=tenant).plaintext

        statuses = parallel_posts(key, 10, keys=[new_key() for _ in range(10)], body=run_body("0.0500"))

        assert sorted(statuses) == [202] * 3 + [402] * 7
        assert Run.objects.filter(tenant=tenant).count() == 3
        wallet = Wallet.objects.get(tenant=tenant)
        assert (wallet.available_micros, wallet.held_micros) == (0, 150_000)

    def test_twenty_posts_against_a_concurrency_limit_of_ten_make_exactly_ten(self):
        plan = Plan.objects.create(code="ten-at-once", name="Ten", allowed_pack_types=["decision"],
                                   post_runs_per_minute=1000, get_requests_per_minute=1000,
                                   max_concurrent_runs=10, max_cost_per_run_micros=50_000)
        tenant = TenantFactory(plan=plan, balance_micros=10_000_000)
        key = api_key_issue(tenant=tenant).plaintext

        statuses = parallel_posts(key, 20, keys=[new_key() for _ in range(20)], body=run_body("0.0500"))

        assert sorted(statuses) == [202] * 10 + [429] * 10
        assert Run.objects.filter(tenant=tenant, status="QUEUED").count() == 10
        wallet = Wallet.objects.get(tenant=tenant)
        assert wallet.held_micros == 10 * 50_000 and wallet.active_runs == 10

    def test_twenty_posts_against_a_rate_of_ten_per_minute_make_exactly_ten(self):
        plan = Plan.objects.create(code="ten-per-minute", name="Rate", allowed_pack_types=["decision"],
                                   post_runs_per_minute=10, get_requests_per_minute=1000,
                                   max_concurrent_runs=100, max_cost_per_run_micros=50_000)
        tenant = TenantFactory(plan=plan, balance_micros=10_000_000)
        key = api_key_issue(tenant=tenant).plaintext

        statuses = parallel_posts(key, 20, keys=[new_key() for _ in range(20)], body=run_body("0.0500"))

        assert sorted(statuses) == [202] * 10 + [429] * 10
        assert Run.objects.filter(tenant=tenant).count() == 10
