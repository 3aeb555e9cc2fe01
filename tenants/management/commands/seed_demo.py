"""python manage.py seed_demo: a demo tenant with a balance and a fresh API key, for `make run`."""

from __future__ import annotations

import json
import os
import secrets

from django.core.management.base import BaseCommand
from django.db import transaction

from billing.selectors import wallet_get
from billing.services import wallet_top_up
from tenants.models import Tenant
from tenants.services import api_key_issue, tenant_assign_plan, tenant_create

DEMO_NAME = "demo"
DEMO_PLAN = "premium"
MIN_BALANCE_MICROS = 5_000_000
TOP_UP_TO_MICROS = 10_000_000


class Command(BaseCommand):
    help = "Create (or reuse) the demo tenant on the premium plan, top it up to $10 when below $5, and print a new API key."

    def handle(self, *args, **options):
        with transaction.atomic():
            tenant = Tenant.objects.filter(name=DEMO_NAME).order_by("created_at").first()
            if tenant is None:
                tenant = tenant_create(name=DEMO_NAME, plan_code=DEMO_PLAN)
            elif tenant.plan.code != DEMO_PLAN:
                tenant = tenant_assign_plan(tenant=tenant, plan_code=DEMO_PLAN, reason="seed_demo")
            available = wallet_get(tenant_id=tenant.pk).available_micros
            if available < MIN_BALANCE_MICROS:
                wallet_top_up(tenant=tenant, amount_micros=TOP_UP_TO_MICROS - available, memo="demo top-up")
            key = api_key_issue(tenant=tenant, label="demo").plaintext
        port = os.environ.get("PORT", "8000")
        body = {
            "pack_type": "decision",
            "inputs": {
                "question": "Which database for the ledger?",
                "options": [
                    {"id": "pg", "label": "PostgreSQL", "scores": {"cost": 9, "ops": 7}},
                    {"id": "my", "label": "MySQL", "scores": {"cost": 8, "ops": 6}},
                ],
                "criteria": [
                    {"id": "cost", "weight": 0.6, "direction": "benefit"},
                    {"id": "ops", "weight": 0.4, "direction": "benefit"},
                ],
            },
            "reservation": {"max_cost_usd": "0.0500", "timebox_sec": 30},
        }
        base = f"http://127.0.0.1:{port}"
        self.stdout.write(f"demo tenant: {tenant.pk}")
        self.stdout.write(f"API key (shown once): {key}\n")
        self.stdout.write("Submit a decision run:")
        self.stdout.write(
            f"curl -sS -X POST {base}/v1/runs -H 'Authorization: Bearer {key}' "
            f"-H 'Content-Type: application/json' -H 'Idempotency-Key: demo-{secrets.token_hex(6)}' "
            f"-d '{json.dumps(body, separators=(',', ':'))}'\n"
        )
        self.stdout.write("Then poll it (replace RUN_ID with the run_id of the answer):")
        self.stdout.write(f"curl -sS {base}/v1/runs/RUN_ID -H 'Authorization: Bearer {key}'")
        self.stdout.write(f"Balance: curl -sS {base}/v1/balance -H 'Authorization: Bearer {key}'")
