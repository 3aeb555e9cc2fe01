"""Per-tenant rate limiting in real Redis: exact under concurrency, IETF draft headers, and a
quick, explicit failure when Redis is down."""

import math
import socket
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest
import redis
from django.conf import settings
from django.test import override_settings

from tenants.ratelimit import RateLimitDecision, RateLimiterUnavailable, rate_limit_hit


def wait_unless_clear_of_a_window_end(window_seconds: int, margin: float) -> None:
    """Hits meant for one window must not straddle two."""
    left = window_seconds - time.time() % window_seconds
    if left < margin:
        time.sleep(left + 0.01)


@pytest.fixture
def tenant_id() -> str:
    wait_unless_clear_of_a_window_end(60, margin=1.0)
    return str(uuid.uuid4())  # a fresh tenant per test: no counter is shared between tests


@pytest.fixture
def silent_redis():
    """A port that accepts connections and never answers: a hung Redis."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(64)
    yield f"redis://127.0.0.1:{server.getsockname()[1]}/0"
    server.close()


class TestRateLimitDecisionHeaders:
    def test_an_allowed_request_gets_the_policy_and_the_remaining_quota(self):
        decision = RateLimitDecision(policy="post_runs", quota=10, window_seconds=60, remaining=9,
                                     reset_seconds=42, allowed=True)

        assert decision.headers() == {
            "RateLimit-Policy": '"post_runs";q=10;w=60',
            "RateLimit": '"post_runs";r=9;t=42',
        }

    def test_a_refused_request_also_gets_retry_after(self):
        decision = RateLimitDecision(policy="get_requests", quota=100, window_seconds=60, remaining=0,
                                     reset_seconds=17, allowed=False)

        assert decision.headers() == {
            "RateLimit-Policy": '"get_requests";q=100;w=60',
            "RateLimit": '"get_requests";r=0;t=17',
            "Retry-After": "17",
        }


class TestRateLimitHit:
    def test_allows_the_quota_then_refuses_with_retry_after(self, tenant_id):
        decisions = [rate_limit_hit(tenant_id=tenant_id, policy="post_runs", quota=3) for _ in range(5)]

        assert [d.allowed for d in decisions] == [True, True, True, False, False]
        assert [d.remaining for d in decisions] == [2, 1, 0, 0, 0]  # never negative
        refused = decisions[-1]
        headers = refused.headers()
        assert headers["RateLimit-Policy"] == '"post_runs";q=3;w=60'
        assert headers["RateLimit"] == f'"post_runs";r=0;t={refused.reset_seconds}'
        assert headers["Retry-After"] == str(refused.reset_seconds)
        assert "Retry-After" not in decisions[0].headers()

    def test_reset_is_the_end_of_the_aligned_window(self, tenant_id):
        before = time.time()
        decision = rate_limit_hit(tenant_id=tenant_id, policy="post_runs", quota=3)

        until_window_end = math.ceil((int(before // 60) + 1) * 60 - before)
        assert 1 <= decision.reset_seconds <= until_window_end

    def test_counts_in_one_expiring_key_per_policy_tenant_and_window(self, tenant_id):
        window = int(time.time() // 60)
        rate_limit_hit(tenant_id=tenant_id, policy="post_runs", quota=3)
        rate_limit_hit(tenant_id=tenant_id, policy="post_runs", quota=3)

        client = redis.Redis.from_url(settings.REDIS_URL)
        keys = sorted(k.decode() for k in client.scan_iter(match=f"dpp:rl:*:{tenant_id}:*"))
        assert keys == [f"dpp:rl:post_runs:{tenant_id}:{window}"]
        assert client.get(keys[0]) == b"2"
        assert 0 < client.ttl(keys[0]) <= 60
        client.close()

    def test_is_exact_under_concurrency(self, tenant_id):
        barrier = threading.Barrier(20)

        def hit(_):
            barrier.wait(timeout=10)
            return rate_limit_hit(tenant_id=tenant_id, policy="post_runs", quota=10, window_seconds=3600)

        with ThreadPoolExecutor(max_workers=20) as pool:
            decisions = list(pool.map(hit, range(20)))

        assert sum(d.allowed for d in decisions) == 10
        assert sorted(d.remaining for d in decisions if d.allowed) == list(range(10))

    def test_policies_and_tenants_are_counted_apart(self, tenant_id):
        assert rate_limit_hit(tenant_id=tenant_id, policy="post_runs", quota=1).allowed
        assert rate_limit_hit(tenant_id=tenant_id, policy="get_requests", quota=1).allowed
        assert rate_limit_hit(tenant_id=str(uuid.uuid4()), policy="post_runs", quota=1).allowed
        assert not rate_limit_hit(tenant_id=tenant_id, policy="post_runs", quota=1).allowed

    def test_a_new_window_starts_afresh(self, tenant_id):
        wait_unless_clear_of_a_window_end(1, margin=0.5)
        rate_limit_hit(tenant_id=tenant_id, policy="post_runs", quota=1, window_seconds=1)
        assert not rate_limit_hit(tenant_id=tenant_id, policy="post_runs", quota=1, window_seconds=1).allowed

        time.sleep(1.1)

        decision = rate_limit_hit(tenant_id=tenant_id, policy="post_runs", quota=1, window_seconds=1)
        assert decision.allowed and decision.remaining == 0 and decision.reset_seconds == 1


class TestRedisDown:
    def test_a_closed_port_is_reported_quickly(self, tenant_id):
        started = time.monotonic()

        with override_settings(REDIS_URL="redis://127.0.0.1:1/0"), pytest.raises(RateLimiterUnavailable):
            rate_limit_hit(tenant_id=tenant_id, policy="post_runs", quota=1)

        assert time.monotonic() - started < 2

    def test_a_hung_redis_is_reported_within_the_socket_timeouts(self, tenant_id, silent_redis):
        started = time.monotonic()

        with override_settings(REDIS_URL=silent_redis), pytest.raises(RateLimiterUnavailable):
            rate_limit_hit(tenant_id=tenant_id, policy="post_runs", quota=1)

        assert time.monotonic() - started < 2

    def test_the_limiter_works_again_once_the_setting_is_restored(self, tenant_id):
        with override_settings(REDIS_URL="redis://127.0.0.1:1/0"), pytest.raises(RateLimiterUnavailable):
            rate_limit_hit(tenant_id=tenant_id, policy="post_runs", quota=1)

        assert rate_limit_hit(tenant_id=tenant_id, policy="post_runs", quota=1).allowed
