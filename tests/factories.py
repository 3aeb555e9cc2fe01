"""factory-boy factories. Money goes through the ledger services, never by writing wallet rows."""

from __future__ import annotations

from importlib import import_module

import factory
from django.apps import apps

from billing.services import wallet_open, wallet_top_up
from tenants.models import Plan, Tenant


def plans_seed_defaults() -> None:
    """Create any missing default plan, with the data migration's own code (a transactional
    test's flush removes the rows the migration seeded)."""
    import_module("tenants.migrations.0002_seed_plans").seed(apps, None)
    import_module("tenants.migrations.0003_plan_max_webhook_endpoints_issue13").seed(apps, None)


class TenantFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Tenant
        skip_postgeneration_save = True

    name = factory.Sequence(lambda n: f"tenant-{n}")

    @factory.lazy_attribute
    def plan(self):
        plans_seed_defaults()
        return Plan.objects.get(code="unlimited")

    @factory.post_generation
    def balance_micros(tenant, create, extracted, **kwargs):
        wallet_open(tenant=tenant)
        if extracted:
            wallet_top_up(tenant=tenant, amount_micros=extracted, memo="factory")
