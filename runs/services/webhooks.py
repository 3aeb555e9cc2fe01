"""Webhook events of run transitions (DESIGN section 7).

Invariants kept here:
- every caller records its event INSIDE the transaction of the transition it reports, after its
  guarded UPDATE won (runs.webhooks.services.webhook_events_record asserts the transaction), so
  an event exists if and only if its transition committed; deliveries are sent on commit;
- the event's data is the run as GET /v1/runs/{id} shows it (the one run document,
  runs.serializers.RunOutput), without the presigned URL, and the run's version; it is built
  only when someone subscribes.

Callers: ``lease.run_claim_lease`` (run.started, sent only where named), ``finalize``
(run.completed, run.failed for every actor's failure), ``audit`` (the operator's terminal
decision), ``cancel`` (run.canceled).
"""

from __future__ import annotations

from functools import partial

from runs.models import Run
from runs.selectors import run_get_for_tenant
from runs.serializers import RunOutput
from runs.webhooks.models import EventType
from runs.webhooks.services import webhook_events_record

__all__ = ["EventType", "run_webhook_event_record", "run_webhook_payload"]


def run_webhook_payload(*, tenant_id, run_id) -> dict:
    """The ``data`` of a run event, read inside the transition's transaction: the run and its
    wallet's balance in one statement, as the detail view reads them."""
    run = run_get_for_tenant(tenant=tenant_id, run_id=run_id, with_budget=True)
    results = {}
    if run.status == Run.Status.COMPLETED and run.result_sha256:
        results[run.pk] = {"sha256": run.result_sha256}  # no presigned URL: the receiver GETs a fresh one
    context = {"results": results, "budget_remaining_micros": run.budget_remaining_micros}
    return {"run": RunOutput(run, context=context).data, "version": run.version}


def run_webhook_event_record(run: Run, *, event_type: str) -> None:
    """Record ``event_type`` for ``run`` (its webhook object and the tenant's endpoints)."""
    webhook_events_record(tenant_id=run.tenant_id, event_type=event_type, run_id=run.pk, run_webhook=run.webhook,
                          payload=partial(run_webhook_payload, tenant_id=run.tenant_id, run_id=run.pk))
