"""Cancellation (POST /v1/runs/{id}/cancel): a client stops a run it no longer wants and learns at
once what it cost.

Invariants kept here:
- a cancel is one conditional UPDATE per row of the cancel table (DESIGN.md section 3), guarded
  on (id, version, status, finalize stage, money RESERVED), and its settle or release is in the
  same transaction, so the answer is final (and so is the run.canceled webhook event, written in
  that transaction too):
  QUEUED -> CANCELED / REFUNDED (everything released);
  PROCESSING and not yet CLAIMED -> CANCELED / SETTLED at the minimum fee, the rest released;
  finalizing (CLAIMED), COMPLETED, FAILED, or money not RESERVED (an operator decides) -> refused;
  already CANCELED -> the run as it is, nothing moves;
- zero rows updated means another actor won (the lease claim, the finalize claim, the zombie
  reaper, the outbox, an operator): the run is read again and the table applied to its new
  state, a bounded number of times; nothing moves twice (journal_one_per_run_phase);
- the worker is not told: its heartbeat, guarded on PROCESSING and its lease token, updates no
  row from now on, and the worker stops the pack and skips finalizing (runs/worker.py);
- a canceled run is no longer active: its concurrency slot is free once this commits.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from django.db.models import Q
from django.utils import timezone

from dpp.errors import DomainError
from runs.metrics import run_canceled_observe
from runs.models import Run
from runs.selectors import run_get_for_tenant
from runs.services.finalize import run_end
from tenants.models import Tenant

REASON_CODE = "CANCELED"
DEFAULT_DETAIL = "canceled by the client"
# Each lost race means the run moved forward (QUEUED -> PROCESSING -> CLAIMED -> terminal), so a
# few rounds always reach an answer; the bound only keeps the loop visibly finite.
MAX_ROUNDS = 5


class RunNotCancelable(DomainError):
    slug = "run-not-cancelable"


@dataclass(frozen=True)
class RunCancelResult:
    run: Run
    canceled_now: bool  # False: the run was already CANCELED (a repeat moves nothing)


def run_cancel(*, tenant: Tenant, run_id, reason: str = "", actor: str = "api",
               now: datetime | None = None) -> RunCancelResult | None:
    """Cancel the tenant's run ``run_id`` with the money decided in the same transaction.
    None when the tenant has no such run (a foreign run and a missing run alike); raises
    ``RunNotCancelable`` when the run is finalizing or finished. The run returned carries
    ``budget_remaining_micros`` (read with it, as the detail view does)."""
    now = now or timezone.now()
    detail = (reason or "").strip() or DEFAULT_DETAIL
    for _ in range(MAX_ROUNDS):
        run = run_get_for_tenant(tenant=tenant, run_id=run_id, with_budget=True)
        if run is None:
            return None
        if run.status == Run.Status.CANCELED:
            return RunCancelResult(run=run, canceled_now=False)
        _refuse_unless_cancelable(run)
        if _run_cancel_transition(run=run, detail=detail, actor=actor, now=now):
            return RunCancelResult(run=run_get_for_tenant(tenant=tenant, run_id=run_id, with_budget=True),
                                   canceled_now=True)
        # Another actor moved the run between our read and our UPDATE: apply the table again.
    raise RunNotCancelable("The run kept changing state; retry the cancel.", run_status=run.status)


def _refuse_unless_cancelable(run: Run) -> None:
    if run.status in (Run.Status.COMPLETED, Run.Status.FAILED):
        raise RunNotCancelable(f"The run is already {run.status}; its money is settled.", run_status=run.status)
    if run.finalize_stage != Run.FinalizeStage.NONE:
        raise RunNotCancelable("The run is finalizing: its result is being stored and settled.",
                               run_status=run.status, finalize_stage=run.finalize_stage)
    if run.money_state != Run.MoneyState.RESERVED:
        raise RunNotCancelable("The run's money awaits an operator's decision.", run_status=run.status,
                               money_state=run.money_state)


def _run_cancel_transition(*, run: Run, detail: str, actor: str, now: datetime) -> bool:
    """One row of the cancel table: the guarded UPDATE and its settle or release, atomically
    (``finalize.run_end``, as every failure). False when another actor won."""
    won = run_end(
        run=run, guard=Q(version=run.version, status=run.status, finalize_stage=Run.FinalizeStage.NONE),
        status=Run.Status.CANCELED, reason=REASON_CODE, detail=detail, actor=actor, now=now,
        refund=run.status == Run.Status.QUEUED,  # PROCESSING, not yet CLAIMED: the minimum fee
    )
    if won:
        run_canceled_observe(pack_type=run.pack_type)  # after the commit, once per canceled run
    return won
