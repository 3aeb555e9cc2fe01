"""Money invariants of runs, checked against the ledger and S3 (``check_ledger``)."""

from __future__ import annotations

from django.db import connection, transaction

from billing.checks import Violation
from runs import storage
from runs.models import Run, RunEvent

_RUN_LEDGER_SQL = """
WITH per_run AS (
    SELECT j.run_id,
           SUM(CASE WHEN j.phase = 'RESERVE' AND a.kind = 'HELD' THEN l.amount_micros ELSE 0 END) AS reserved,
           SUM(CASE WHEN j.phase = 'FINALIZE' AND a.kind = 'REVENUE' THEN l.amount_micros ELSE 0 END) AS charged,
           SUM(CASE WHEN j.phase = 'FINALIZE' AND a.kind = 'AVAILABLE' THEN l.amount_micros ELSE 0 END) AS released,
           COUNT(DISTINCT j.id) FILTER (WHERE j.phase = 'RESERVE') AS reserves,
           COUNT(DISTINCT j.id) FILTER (WHERE j.phase = 'FINALIZE') AS finals
      FROM billing_journal j
      JOIN billing_journalleg l ON l.journal_id = j.id
      JOIN billing_account a ON a.id = l.account_id
     WHERE j.run_id IS NOT NULL
     GROUP BY j.run_id
)
SELECT r.id, r.status, r.money_state, r.reserved_micros, r.actual_cost_micros,
       COALESCE(p.reserved, 0), COALESCE(p.charged, 0), COALESCE(p.released, 0),
       COALESCE(p.reserves, 0), COALESCE(p.finals, 0)
  FROM runs_run r LEFT JOIN per_run p ON p.run_id = r.id
"""

_ORPHAN_SQL = """
SELECT DISTINCT j.run_id FROM billing_journal j
 WHERE j.run_id IS NOT NULL AND NOT EXISTS (SELECT 1 FROM runs_run r WHERE r.id = j.run_id)
"""

_HELD_SQL = """
SELECT w.tenant_id, w.held_micros, COALESCE(open.total, 0)
  FROM billing_wallet w
  LEFT JOIN (SELECT tenant_id, SUM(reserved_micros) AS total FROM runs_run
              WHERE money_state IN ('RESERVED', 'AUDIT_REQUIRED') GROUP BY tenant_id) open
    ON open.tenant_id = w.tenant_id
 WHERE w.held_micros <> COALESCE(open.total, 0)
"""

_ACTIVE_SQL = """
SELECT w.tenant_id, w.active_runs, COALESCE(active.total, 0)
  FROM billing_wallet w
  LEFT JOIN (SELECT tenant_id, COUNT(*) AS total FROM runs_run
              WHERE money_state = 'RESERVED' GROUP BY tenant_id) active
    ON active.tenant_id = w.tenant_id
 WHERE w.active_runs <> COALESCE(active.total, 0)
"""


FETCH_ROWS = 2000  # runs compared per round trip; memory stays bounded whatever the number of runs
DEFAULT_S3_SAMPLE = 200  # receipts checked by default (``check_ledger --s3-all`` checks every one)


def _run_rows():
    """Every run with its ledger sums, streamed from a server-side cursor in FETCH_ROWS batches."""
    with transaction.atomic(), connection.chunked_cursor() as cursor:
        cursor.execute(_RUN_LEDGER_SQL)
        while rows := cursor.fetchmany(FETCH_ROWS):
            yield from rows


def run_money_violations() -> list[Violation]:
    violations: list[Violation] = []
    with connection.cursor() as cursor:
        cursor.execute(_ORPHAN_SQL)
        orphans = cursor.fetchall()
        cursor.execute(_HELD_SQL)
        held = cursor.fetchall()
        cursor.execute(_ACTIVE_SQL)
        active = cursor.fetchall()
    for run_id, status, money_state, reserved, actual, l_reserved, charged, released, reserves, finals in _run_rows():
        if reserves != 1 or l_reserved != reserved:
            violations.append(Violation("every run has exactly one reservation of its amount",
                                        f"run {run_id}: {reserves} reserve journals holding {l_reserved}, run says {reserved}"))
        finished = money_state in (Run.MoneyState.SETTLED, Run.MoneyState.REFUNDED)
        if finished and (finals != 1 or l_reserved != charged + released):
            violations.append(Violation("every finished run has reserve = charged + released",
                                        f"run {run_id}: reserved {l_reserved}, charged {charged}, released {released}, "
                                        f"{finals} finalize journals"))
        if not finished and finals != 0:
            violations.append(Violation("open runs have no settlement",
                                        f"run {run_id} is {money_state} but has {finals} finalize journals"))
        if charged > l_reserved:
            violations.append(Violation("no run is charged more than its reservation",
                                        f"run {run_id}: charged {charged} > reserved {l_reserved}"))
        if finished and actual != charged:
            violations.append(Violation("a run's charge equals the ledger's",
                                        f"run {run_id}: run says {actual}, ledger charged {charged}"))
        if status in Run.TERMINAL_STATUSES and money_state == Run.MoneyState.RESERVED:
            violations.append(Violation("terminal runs are not left reserved", f"run {run_id} is {status} and RESERVED"))
    for (run_id,) in orphans:
        violations.append(Violation("ledger run ids name real runs", f"journals name a missing run {run_id}"))
    for tenant_id, held_micros, open_total in held:
        violations.append(Violation("held balances equal open reservations",
                                    f"tenant {tenant_id}: held {held_micros}, open reservations {open_total}"))
    for tenant_id, counted, actual in active:
        violations.append(Violation("each wallet counts exactly its runs holding a concurrency slot",
                                    f"tenant {tenant_id}: wallet counts {counted}, RESERVED runs {actual}"))
    return violations


def receipt_violations(*, limit: int | None = DEFAULT_S3_SAMPLE) -> list[Violation]:
    """COMPLETED runs' charges equal their S3 receipts (runs whose result retention deleted the
    object are skipped). One HEAD per run, so by default a random sample of ``limit`` runs;
    ``limit=None`` checks every one, streamed in batches."""
    violations = []
    runs = Run.objects.filter(status=Run.Status.COMPLETED, result_deleted_at__isnull=True)
    runs = runs.order_by("?")[:limit] if limit else runs.order_by("created_at", "id")
    fields = ("id", "result_bucket", "result_key", "actual_cost_micros", "finalize_token", "result_sha256")
    for run in runs.only(*fields).iterator(chunk_size=FETCH_ROWS):
        receipt = storage.receipt_get(bucket=run.result_bucket, key=run.result_key)
        if receipt is None:
            violations.append(Violation("completed runs have their S3 receipt", f"run {run.pk}: no object"))
        elif (receipt.actual_cost_micros != run.actual_cost_micros or receipt.sha256 != run.result_sha256
              or (receipt.finalize_token != str(run.finalize_token)
                  and not _receipt_token_accepted(run_id=run.pk, token=receipt.finalize_token))):
            violations.append(Violation(
                "every COMPLETED run's charge equals its S3 receipt",
                f"run {run.pk}: charged {run.actual_cost_micros}, receipt {receipt.actual_cost_micros} "
                f"(token {receipt.finalize_token} vs {run.finalize_token})",
            ))
    return violations


def _receipt_token_accepted(*, run_id, token) -> bool:
    """An operator settled the run at this very receipt, acknowledging its token mismatch
    (runs.services.audit.run_resolve_audit records that decision in the audit row)."""
    return RunEvent.objects.filter(run_id=run_id, kind="OPERATOR_SETTLE_RECEIPT",
                                   data__accepted_receipt_token=token).exists()
