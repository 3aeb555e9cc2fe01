"""Operator decisions on AUDIT_REQUIRED runs (the Django admin's only money-moving action).

Invariants kept here:
- a decision is taken once: its UPDATE is guarded on (id, version, AUDIT_REQUIRED); a second
  operator loses and is told so;
- the charge is between 0 and the reservation; a reason is required; settling at the receipt
  needs a readable S3 receipt, and an explicit acknowledgement when its token is not the
  claim's (the accepted token is recorded in the audit row, which check_ledger honours);
- the transition, the settle and the history row naming the operator and the reason are one
  transaction; the decision is logged at WARNING.
"""

from __future__ import annotations

import logging
from datetime import datetime

from django.db import transaction
from django.db.models import F
from django.utils import timezone

from billing.services import reservation_settle
from dpp.errors import DomainError
from runs.models import Run
from runs.services.events import run_event_record
from runs.services.webhooks import EventType, run_webhook_event_record

logger = logging.getLogger(__name__)


class AuditResolutionRefused(DomainError):
    slug = "audit-resolution-refused"


def run_resolve_audit(*, run_id, action: str, actor: str, reason: str, amount_micros: int | None = None,
                      receipt=None, acknowledge_receipt_mismatch: bool = False, now: datetime | None = None) -> Run:
    """Resolve an AUDIT_REQUIRED run: ``settle_receipt`` (COMPLETED at the receipt's cost),
    ``settle_amount`` (FAILED, charged ``amount_micros``), or ``release`` (FAILED, refunded).
    Atomic, once (guarded on AUDIT_REQUIRED), with an audit row naming actor and reason.

    Settling at a receipt whose finalize token is not the claim's needs
    ``acknowledge_receipt_mismatch``; the audit row then records the accepted receipt token, and
    ``check_ledger``'s receipt check honours that decision instead of staying red forever."""
    now = now or timezone.now()
    reason = (reason or "").strip()
    if not reason:
        raise AuditResolutionRefused("A reason is required.")
    run = Run.objects.get(pk=run_id)
    data = {}
    if action == "settle_receipt":
        if receipt is None or receipt.actual_cost_micros is None:
            raise AuditResolutionRefused("There is no readable S3 receipt to settle at.")
        if receipt.finalize_token != str(run.finalize_token):
            if not acknowledge_receipt_mismatch:
                raise AuditResolutionRefused(
                    f"The receipt's finalize token {receipt.finalize_token} is not the claim's {run.finalize_token}: "
                    "acknowledge the mismatch explicitly to settle at this receipt.")
            data = {"accepted_receipt_token": receipt.finalize_token, "claim_token": str(run.finalize_token)}
        charge, status = receipt.actual_cost_micros, Run.Status.COMPLETED
    elif action == "settle_amount":
        charge, status = amount_micros, Run.Status.FAILED
    elif action == "release":
        charge, status = 0, Run.Status.FAILED
    else:
        raise AuditResolutionRefused(f"Unknown action {action!r}.")
    if charge is None or not 0 <= charge <= run.reserved_micros:
        raise AuditResolutionRefused(f"The amount must be between 0 and the reservation ({run.reserved_micros} micros).")
    money_state = Run.MoneyState.SETTLED if charge > 0 else Run.MoneyState.REFUNDED
    fields = dict(status=status, money_state=money_state, actual_cost_micros=charge, finished_at=now,
                  lease_expires_at=None, version=F("version") + 1, updated_at=now)
    if status == Run.Status.COMPLETED:
        fields.update(finalize_stage=Run.FinalizeStage.COMMITTED, result_sha256=receipt.sha256 or "",
                      error_reason="", error_detail="")
    else:
        fields.update(error_reason="OPERATOR_RESOLVED", error_detail=reason[:1000])
    with transaction.atomic():
        won = Run.objects.filter(pk=run.pk, version=run.version, money_state=Run.MoneyState.AUDIT_REQUIRED).update(
            **fields
        )
        if won != 1:
            raise AuditResolutionRefused("The run is no longer waiting for a decision (resolved by someone else?).")
        reservation_settle(tenant_id=run.tenant_id, run_id=run.pk, charge_micros=charge,
                           release_slot=False,  # given back when the run became AUDIT_REQUIRED
                           memo=f"operator {actor}: {action}")
        run_event_record(run, kind=f"OPERATOR_{action.upper()}", actor=actor, from_status=run.status, to_status=status,
                         money_state=money_state, amount_micros=charge, reason=reason, data=data)
        run_webhook_event_record(
            run, event_type=EventType.RUN_COMPLETED if status == Run.Status.COMPLETED else EventType.RUN_FAILED)
    logger.warning("operator resolved an AUDIT_REQUIRED run",
                   extra={"run_id": str(run.pk), "action": action, "charge_micros": charge, "actor": actor})
    return Run.objects.get(pk=run.pk)
