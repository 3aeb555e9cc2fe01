"""Seed the default plans (tests reuse ``seed`` after a flush). Later edits happen in admin; this only creates missing ones."""

from django.db import migrations

PLANS = [
    # code, name, packs, POST/min, GET/min, concurrent, cap per run (micros), retention days
    ("basic", "Basic", ["decision"], 10, 100, 10, 50_000, 30),
    ("premium", "Premium", ["decision"], 100, 1000, 50, 500_000, 30),
    ("unlimited", "Unlimited (tests, internal)", ["*"], 100_000, 100_000, 1000, 10_000_000, 30),
]


def seed(apps, schema_editor):
    Plan = apps.get_model("tenants", "Plan")
    for code, name, packs, post, get, concurrent, cap, retention in PLANS:
        Plan.objects.get_or_create(
            code=code,
            defaults=dict(
                name=name, allowed_pack_types=packs, post_runs_per_minute=post, get_requests_per_minute=get,
                max_concurrent_runs=concurrent, max_cost_per_run_micros=cap, retention_days=retention,
            ),
        )


class Migration(migrations.Migration):
    dependencies = [("tenants", "0001_initial")]
    operations = [migrations.RunPython(seed, migrations.RunPython.noop)]
