"""Reads of balances."""

from __future__ import annotations

from django.db.models import Sum

from billing.models import Wallet


def wallet_get(*, tenant_id) -> Wallet:
    return Wallet.objects.get(tenant_id=tenant_id)


def wallet_totals() -> dict[str, int]:
    """Sums over every tenant's wallet: ``available_micros`` and ``held_micros`` (metrics, ops page)."""
    totals = Wallet.objects.aggregate(available=Sum("available_micros"), held=Sum("held_micros"))
    return {"available_micros": int(totals["available"] or 0), "held_micros": int(totals["held"] or 0)}
