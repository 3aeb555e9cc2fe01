"""The base class of tenant-facing API views: per-tenant rate limiting with the IETF draft
``RateLimit-Policy`` / ``RateLimit`` headers on every response of a limited endpoint."""

from __future__ import annotations

import logging

from rest_framework.views import APIView

from dpp.errors import DomainError, ServiceUnavailable
from dpp.openapi import ProblemAutoSchema
from tenants.ratelimit import RateLimiterUnavailable, rate_limit_hit

logger = logging.getLogger(__name__)


class RateLimitExceeded(DomainError):
    slug = "rate-limit-exceeded"

    def __init__(self, detail: str, *, policy: str, headers: dict[str, str]):
        super().__init__(detail, headers=headers)
        self.policy = policy  # the metrics label (dpp_rate_limited_total)


class TenantAPIView(APIView):
    """Authenticated by API key (request.user is the Tenant). POSTs count against the plan's
    ``post_runs`` quota and other methods against ``get_requests``. If Redis is down a POST is
    refused with 503 (no money moves without its limit checked); reads are let through.

    Its OpenAPI operations list the problems every tenant endpoint can answer, and those the
    view names in ``problem_slugs`` (method -> slugs)."""

    schema = ProblemAutoSchema()

    def rate_limit_policy(self, request) -> tuple[str, int]:
        plan = request.user.plan
        if request.method == "POST":
            return "post_runs", plan.post_runs_per_minute
        return "get_requests", plan.get_requests_per_minute

    def initial(self, request, *args, **kwargs):
        super().initial(request, *args, **kwargs)  # authentication and permissions first
        policy, quota = self.rate_limit_policy(request)
        try:
            decision = rate_limit_hit(tenant_id=request.user.pk, policy=policy, quota=quota)
        except RateLimiterUnavailable:
            if request.method == "POST":
                raise ServiceUnavailable("The rate limiter (Redis) is unavailable; nothing was charged.",
                                         headers={"Retry-After": "5"}) from None
            logger.warning("rate limiter unavailable; read allowed without limit")
            return
        request.rate_limit = decision
        if not decision.allowed:
            raise RateLimitExceeded(
                f"The plan allows {decision.quota} requests per {decision.window_seconds} s ({policy}).",
                policy=policy, headers=decision.headers(),
            )

    def finalize_response(self, request, response, *args, **kwargs):
        response = super().finalize_response(request, response, *args, **kwargs)
        decision = getattr(request, "rate_limit", None)
        if decision is not None:
            for name, value in decision.headers().items():
                response[name] = value
        return response
