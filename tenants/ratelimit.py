"""Per-tenant fixed-window rate limiting in Redis: one atomic round trip per request.

A Lua script increments the window's counter and sets its expiry when the counter is new, then
returns the count and the TTL; there is no INCR-then-EXPIRE gap and no read-then-write, so the
limit is exact under any concurrency. Headers follow draft-ietf-httpapi-ratelimit-headers.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

import redis
from django.conf import settings
from django.core.signals import setting_changed

_SCRIPT = """
local count = redis.call('INCR', KEYS[1])
if count == 1 then
    redis.call('EXPIRE', KEYS[1], ARGV[1])
end
local ttl = redis.call('TTL', KEYS[1])
if ttl < 0 then
    redis.call('EXPIRE', KEYS[1], ARGV[1])
    ttl = tonumber(ARGV[1])
end
return {count, ttl}
"""


class RateLimiterUnavailable(Exception):
    """Redis could not be reached or answered an error."""


@dataclass(frozen=True)
class RateLimitDecision:
    policy: str
    quota: int
    window_seconds: int
    remaining: int
    reset_seconds: int
    allowed: bool

    def headers(self) -> dict[str, str]:
        headers = {
            "RateLimit-Policy": f'"{self.policy}";q={self.quota};w={self.window_seconds}',
            "RateLimit": f'"{self.policy}";r={self.remaining};t={self.reset_seconds}',
        }
        if not self.allowed:
            headers["Retry-After"] = str(max(1, self.reset_seconds))
        return headers


_lock = threading.Lock()
_client: redis.Redis | None = None
_script = None


def _get_script():
    global _client, _script
    with _lock:
        if _script is None:
            _client = redis.Redis.from_url(settings.REDIS_URL, socket_timeout=0.5, socket_connect_timeout=0.5)
            _script = _client.register_script(_SCRIPT)
        return _script


def _reset(*, setting, **kwargs):
    global _client, _script
    if setting == "REDIS_URL":
        with _lock:
            if _client is not None:
                _client.close()
            _client, _script = None, None


setting_changed.connect(_reset)


def rate_limit_hit(*, tenant_id, policy: str, quota: int, window_seconds: int = 60) -> RateLimitDecision:
    """Count one request against ``quota`` per ``window_seconds`` and decide."""
    window = int(time.time()) // window_seconds
    key = f"dpp:rl:{policy}:{tenant_id}:{window}"
    try:
        count, ttl = _get_script()(keys=[key], args=[window_seconds])
    except redis.RedisError as error:
        raise RateLimiterUnavailable(str(error)) from error
    count, ttl = int(count), int(ttl)
    return RateLimitDecision(
        policy=policy, quota=quota, window_seconds=window_seconds, remaining=max(0, quota - count),
        reset_seconds=max(0, ttl), allowed=count <= quota,
    )
