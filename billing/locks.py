"""Row locks on money rows, in the one lock order of the platform.

Lock order: the tenant's Wallet first, then Run rows (runs/locks.py). Every path that touches
both takes the wallet first, so two transactions never wait on each other in a cycle.
"""

from __future__ import annotations

from django.db import transaction

from billing.models import Wallet


def wallet_lock(*, tenant_id) -> Wallet:
    if not transaction.get_connection().in_atomic_block:
        raise RuntimeError("wallet_lock must run inside a transaction")
    return Wallet.objects.select_for_update(of=("self",)).get(tenant_id=tenant_id)
