"""Request bodies and small helpers shared by the run API tests."""

from __future__ import annotations

import copy
import uuid

from billing.models import Journal, JournalLeg, Wallet


def decision_inputs(**overrides) -> dict:
    inputs = {
        "question": "Which database for the ledger?",
        "options": [
            {"id": "pg", "label": "PostgreSQL", "scores": {"cost": 9, "ops": 7}},
            {"id": "my", "label": "MySQL", "scores": {"cost": 8, "ops": 6}},
        ],
        "criteria": [
            {"id": "cost", "weight": 0.6, "direction": "benefit"},
            {"id": "ops", "weight": 0.4, "direction": "benefit"},
        ],
    }
    inputs.update(overrides)
    return inputs


def run_body(max_cost_usd: str = "0.0500", **overrides) -> dict:
    body = {
        "pack_type": "decision",
        "inputs": decision_inputs(),
        "reservation": {"max_cost_usd": max_cost_usd, "timebox_sec": 30},
    }
    body.update(copy.deepcopy(overrides))
    return body


def new_key() -> str:
    return f"test-{uuid.uuid4().hex[:20]}"


def post_run(client, body=None, *, key: str | None = None, **extra):
    return client.post("/v1/runs", body if body is not None else run_body(), format="json",
                        HTTP_IDEMPOTENCY_KEY=key or new_key(), **extra)


def ledger_snapshot(tenant) -> tuple:
    """Everything money-related of a tenant, to assert that nothing moved."""
    wallet = Wallet.objects.get(tenant=tenant)
    return (
        wallet.available_micros,
        wallet.held_micros,
        Journal.objects.filter(tenant=tenant).count(),
        JournalLeg.objects.filter(journal__tenant=tenant).count(),
    )
