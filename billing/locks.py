"""Row locks on money rows, in the one lock order of the platform.

Lock order: at most ONE Run row per transaction (runs/locks.py, or the conditional UPDATE of a
transition), then the tenant's Wallet row (this module, or the conditional UPDATE of a ledger
service). Submission locks only the wallet, with the conditional UPDATE that is its last
statement (billing.services.reservation_create; the run row it inserts is new). With one run per
transaction and the wallet always last, no two transactions can wait on each other in a cycle.
"""

from __future__ import annotations

from django.db import transaction

from billing.models import Wallet


def wallet_lock(*, tenant_id) -> Wallet:
    if not transaction.get_connection().in_atomic_block:
        raise RuntimeError("wallet_lock must run inside a transaction")
    return Wallet.objects.select_for_update(of=("self",)).get(tenant_id=tenant_id)
