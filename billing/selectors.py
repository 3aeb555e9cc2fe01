"""Reads of balances."""

from __future__ import annotations

from billing.models import Wallet


def wallet_get(*, tenant_id) -> Wallet:
    return Wallet.objects.get(tenant_id=tenant_id)
