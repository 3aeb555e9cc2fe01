"""Per-tenant fixed-window rate limiting in Redis: one atomic round trip per request.

A window is ``window_seconds`` long and aligned to the epoch: its index is ``now // window``
and its counter lives under ``dpp:rl:<policy>:<tenant_id>:<window index>``. A Lua script
increments the counter, sets its expiry to the end of the window when the counter is new, and
returns the count and the TTL in the same call: there is no INCR-then-EXPIRE gap and no
read-then-write, so the limit is exact under any concurrency, and every process reports the
same reset time for a window. Headers follow draft-ietf-httpapi-ratelimit-headers.

Redis holds no money: when it is unreachable this module raises ``RateLimiterUnavailable``
within about a second (0.5 s socket timeouts, one immediate retry) and the caller decides
whether to refuse or to let the request through (see ``tenants.api.TenantAPIView``).
"""

from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass

import redis
from django.conf import settings
from django.core.signals import setting_changed
from redis.backoff import NoBackoff
from redis.retry import Retry

SOCKET_TIMEOUT_SECONDS = 0.5
KEY_PREFIX = "dpp:rl"

# KEYS[1] the window's counter; ARGV[1] seconds until the window ends (>= 1).
# A counter without an expiry (TTL -1: written by hand, or a lost EXPIRE in a Redis older than
# this script) is given one instead of blocking the tenant forever.
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
    """Redis could not be reached, timed out, or answered an error."""


@dataclass(frozen=True)
class RateLimitDecision:
    policy: str
    quota: int
    window_seconds: int
    remaining: int
    reset_seconds: int
    allowed: bool

    def headers(self) -> dict[str, str]:
        """The IETF draft headers for this decision, plus ``Retry-After`` on a refusal."""
        headers = {
            "RateLimit-Policy": f'"{self.policy}";q={self.quota};w={self.window_seconds}',
            "RateLimit": f'"{self.policy}";r={self.remaining};t={self.reset_seconds}',
        }
        if not self.allowed:
            headers["Retry-After"] = str(self.reset_seconds)
        return headers


_lock = threading.Lock()
_client: redis.Redis | None = None
_script = None


def _get_script():
    """The registered script on the process's client, created once (lazily, thread-safe)."""
    global _client, _script
    script = _script
    if script is not None:
        return script
    with _lock:
        if _script is None:
            # One immediate retry covers a pooled connection that Redis closed (a restart);
            # redis-py's default of ten retries with backoff would hold a request for seconds.
            _client = redis.Redis.from_url(
                settings.REDIS_URL,
                socket_timeout=SOCKET_TIMEOUT_SECONDS,
                socket_connect_timeout=SOCKET_TIMEOUT_SECONDS,
                retry=Retry(NoBackoff(), 1),
            )
            _script = _client.register_script(_SCRIPT)
        return _script


def rate_limiter_reset() -> None:
    """Drop the process's client; the next hit builds a new one from settings.REDIS_URL."""
    global _client, _script
    with _lock:
        client, _client, _script = _client, None, None
    if client is not None:
        client.close()


def _on_setting_changed(*, setting, **kwargs) -> None:
    if setting == "REDIS_URL":
        rate_limiter_reset()


setting_changed.connect(_on_setting_changed, dispatch_uid="tenants.ratelimit.reset")


def rate_limit_hit(*, tenant_id, policy: str, quota: int, window_seconds: int = 60) -> RateLimitDecision:
    """Count one request of ``tenant_id`` against ``quota`` per ``window_seconds`` and decide.

    Every call counts, refused ones included, so a client hammering past its limit stays refused
    until the window ends.
    """
    if window_seconds < 1:
        raise ValueError("window_seconds must be at least 1")
    now = time.time()
    window = int(now // window_seconds)
    until_window_end = max(1, math.ceil((window + 1) * window_seconds - now))
    key = f"{KEY_PREFIX}:{policy}:{tenant_id}:{window}"
    try:
        count, ttl = _get_script()(keys=[key], args=[until_window_end])
    except redis.RedisError as error:
        raise RateLimiterUnavailable(f"rate limiter unavailable: {type(error).__name__}: {error}") from error
    count = int(count)
    return RateLimitDecision(
        policy=policy,
        quota=quota,
        window_seconds=window_seconds,
        remaining=max(0, quota - count),
        # TTL rounds to whole seconds and reads 0 in a window's last half second; a client told
        # to retry after 0 s would only be refused again.
        reset_seconds=max(1, int(ttl)),
        allowed=count <= quota,
    )
