"""Writes for runs, one module per actor (each opens with the invariants it keeps):

- ``submit``: the API's POST /v1/runs (run, reservation and history in one transaction);
- ``cancel``: the API's POST /v1/runs/{id}/cancel (the transition and its money in one transaction);
- ``outbox``: the only writer of ``enqueued_at`` / ``enqueue_attempts``; sends the task by name;
- ``lease``: the worker's lease claim, heartbeat and own failure;
- ``finalize``: the two-phase finalize and the guarded failure every actor settles through;
- ``recover``: the reaper's transitions (zombies, stuck claims, never started, AUDIT_REQUIRED);
- ``audit``: operators' decisions on AUDIT_REQUIRED runs;
- ``events``: the append-only history row every transition writes;
- ``webhooks``: the webhook event every terminal transition (and the lease claim) records in its
  own transaction (runs/webhooks; a cancel transition must record run.canceled the same way).

Callers import from ``runs.services``; the names below are the public surface.
"""

from runs.services.audit import AuditResolutionRefused, run_resolve_audit
from runs.services.cancel import RunCancelResult, RunNotCancelable, run_cancel
from runs.services.events import run_event_record
from runs.services.finalize import result_key_for, run_fail, run_finalize_claim, run_finalize_commit
from runs.services.lease import run_claim_lease, run_extend_lease, run_fail_by_worker
from runs.services.outbox import run_resend, run_resend_claim, run_resend_release
from runs.services.recover import (
    run_fail_never_started,
    run_mark_audit_required,
    run_reap_zombie,
    run_roll_back_claim,
    runs_mark_results_deleted,
)
from runs.services.submit import (
    ConcurrentRunsExceeded,
    IdempotencyKeyReused,
    MaxCostExceeded,
    RunCreateResult,
    RunSubmission,
    run_create,
)
from runs.services.webhooks import run_webhook_event_record, run_webhook_payload

__all__ = [
    "AuditResolutionRefused",
    "ConcurrentRunsExceeded",
    "IdempotencyKeyReused",
    "MaxCostExceeded",
    "RunCancelResult",
    "RunCreateResult",
    "RunNotCancelable",
    "RunSubmission",
    "result_key_for",
    "run_cancel",
    "run_claim_lease",
    "run_create",
    "run_event_record",
    "run_extend_lease",
    "run_fail",
    "run_fail_by_worker",
    "run_fail_never_started",
    "run_finalize_claim",
    "run_finalize_commit",
    "run_mark_audit_required",
    "run_reap_zombie",
    "run_resend",
    "run_resend_claim",
    "run_resend_release",
    "run_resolve_audit",
    "run_roll_back_claim",
    "run_webhook_event_record",
    "run_webhook_payload",
    "runs_mark_results_deleted",
]
