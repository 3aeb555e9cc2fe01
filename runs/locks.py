"""Row locks on runs. Lock order of the platform (see billing/locks.py): one Run row per
transaction, then the tenant's Wallet. Batch jobs pick candidates without locks, then handle
each run in its own transaction, skipping a row another actor holds."""

from __future__ import annotations

from django.db import transaction

from runs.models import Run


def run_lock_or_skip(queryset) -> Run | None:
    """Lock the one run of ``queryset`` unless another actor holds it (then None)."""
    if not transaction.get_connection().in_atomic_block:
        raise RuntimeError("run_lock_or_skip must run inside a transaction")
    return queryset.select_for_update(of=("self",), skip_locked=True).first()

