"""The default plans of DESIGN section 4a (the data migration seeds the same rows)."""

from __future__ import annotations

from tenants.models import Plan

DEFAULT_PLANS = {
    "basic": dict(name="Basic", allowed_pack_types=["decision"], post_runs_per_minute=10,
                  get_requests_per_minute=100, max_concurrent_runs=10, max_cost_per_run_micros=50_000,
                  retention_days=30, max_webhook_endpoints=5),
    "premium": dict(name="Premium", allowed_pack_types=["decision"], post_runs_per_minute=100,
                    get_requests_per_minute=1000, max_concurrent_runs=50, max_cost_per_run_micros=500_000,
                    retention_days=30, max_webhook_endpoints=20),
    "unlimited": dict(name="Unlimited (tests, internal)", allowed_pack_types=[], post_runs_per_minute=100_000,
                      get_requests_per_minute=100_000, max_concurrent_runs=1000,
                      max_cost_per_run_micros=10_000_000, retention_days=30, max_webhook_endpoints=100),
}


def plans_seed_defaults() -> None:
    """Create any missing default plan (existing ones keep their admin edits)."""
    for code, fields in DEFAULT_PLANS.items():
        Plan.objects.get_or_create(code=code, defaults=fields)
