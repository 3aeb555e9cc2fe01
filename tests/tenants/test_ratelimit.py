"""Per-tenant rate limiting in real Redis: exact under concurrency, draft IETF headers."""

import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest
from django.test import override_settings

from tenants.ratelimit import RateLimiterUnavailable, rate_limit_hit


def tenant_id() -> str:
    return str(uuid.uuid4())


class TestRateLimit:
    def test_allows_the_quota_then_refuses_with_retry_after(self):
        tenant = tenant_id()
        decisions = [rate_limit_hit(tenant_id=tenant, policy="post_runs", quota=3) for _ in range(4)]
        assert [d.allowed for d in decisions] == [True, True, True, False]
        assert [d.remaining for d in decisions] == [2, 1, 0, 0]
        refused = decisions[-1].headers()
        assert refused["RateLimit-Policy"] == '"post_runs";q=3;w=60'
        assert refused["RateLimit"].startswith('"post_runs";r=0;t=')
        assert 1 <= int(refused["Retry-After"]) <= 60
        assert "Retry-After" not in decisions[0].headers()

    def test_is_exact_under_concurrency(self):
        tenant = tenant_id()
        barrier = threading.Barrier(20)

        def hit(_):
            barrier.wait(timeout=10)
            return rate_limit_hit(tenant_id=tenant, policy="post_runs", quota=10).allowed

        with ThreadPoolExecutor(20) as pool:
            allowed = list(pool.map(hit, range(20)))
        assert allowed.count(True) == 10

    def test_policies_and_tenants_are_counted_apart(self):
        tenant = tenant_id()
        assert rate_limit_hit(tenant_id=tenant, policy="post_runs", quota=1).allowed
        assert rate_limit_hit(tenant_id=tenant, policy="get_requests", quota=1).allowed
        assert rate_limit_hit(tenant_id=tenant_id(), policy="post_runs", quota=1).allowed

    @pytest.mark.slow
    def test_a_new_window_starts_afresh(self):
        tenant = tenant_id()
        assert rate_limit_hit(tenant_id=tenant, policy="p", quota=1, window_seconds=1).allowed
        time.sleep(1.1)
        assert rate_limit_hit(tenant_id=tenant, policy="p", quota=1, window_seconds=1).allowed

    def test_redis_down_is_reported_quickly(self):
        started = time.monotonic()
        with override_settings(REDIS_URL="redis://127.0.0.1:1/0"), pytest.raises(RateLimiterUnavailable):
            rate_limit_hit(tenant_id=tenant_id(), policy="post_runs", quota=1)
        assert time.monotonic() - started < 2
