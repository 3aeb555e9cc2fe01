"""The periodic passes of celery-beat: zombie reaping, reconciliation of finalize claims, the
outbox, and result retention.

Every pass reads the clock once, picks a bounded batch of candidates without locks, then handles
each run in its own short transaction that locks that one row with ``skip_locked`` and re-checks
its guard in a conditional UPDATE. Two passes running at once therefore handle each run once;
one run's failure is logged and never stops the batch. S3 and SQS calls happen outside
transactions. Each pass returns its counts and logs them in one structured line.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from datetime import datetime, timedelta

from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings
from django.db import transaction
from django.db.models import DateTimeField, DurationField, ExpressionWrapper, F, Q, Value
from django.db.models.functions import Greatest, Least, Power

from billing.services import reservation_amount
from dpp.context import bound_context
from runs import storage
from runs.locks import run_lock_or_skip
from runs.models import Run
from runs.ops import queue_depth
from runs.services import (
    run_fail_never_started,
    run_finalize_commit,
    run_mark_audit_required,
    run_reap_zombie,
    run_resend,
    run_roll_back_claim,
    runs_mark_results_deleted,
)

logger = logging.getLogger(__name__)

OUTBOX_GRACE_SECONDS = 5  # the relay normally sends and confirms within milliseconds of the commit
MAX_BACKOFF_DOUBLINGS = 6  # resends of a waiting run at most every 64 leases
RETENTION_BATCH_SIZE = 1000  # S3 DeleteObjects takes at most 1,000 keys per request
MAX_RETENTION_BATCHES = 10_000  # a hard bound on one pass besides its time budget


# --- The candidates of each pass: each query reads a partial index (see Run.Meta.indexes), so a
# pass costs the same with 10^4 or 10^6 runs in the table (`make bench` times them).

def _zombies(now: datetime):
    return Run.objects.filter(status=Run.Status.PROCESSING, finalize_stage=Run.FinalizeStage.NONE,
                              lease_expires_at__lt=now)


def _claims(now: datetime):
    threshold = now - timedelta(seconds=settings.DPP_RECONCILE_AFTER_SECONDS)
    return Run.objects.filter(status=Run.Status.PROCESSING, finalize_stage=Run.FinalizeStage.CLAIMED,
                              money_state=Run.MoneyState.RESERVED, finalize_claimed_at__lt=threshold)


def _outbox_expired(now: datetime):
    return Run.objects.filter(status=Run.Status.QUEUED, deadline_at__lte=now)


def _outbox_unconfirmed(now: datetime):
    # Never confirmed: never sent (the relay is down or behind), or claimed by a send that did not
    # confirm within the grace (a relay died between its claim and its mark, or the broker hangs).
    grace_ago = now - timedelta(seconds=OUTBOX_GRACE_SECONDS)
    return Run.objects.filter(Q(enqueued_at__isnull=True) | Q(enqueue_attempts=0, enqueued_at__lt=grace_ago),
                              status=Run.Status.QUEUED, deadline_at__gt=now, created_at__lt=grace_ago)


def _outbox_stale(now: datetime):
    # A run still QUEUED a lease after its last send is sent again, with exponential backoff
    # (lease x 2^(confirmed sends - 1), capped; failed sends do not count): behind a long backlog,
    # resending every waiting run every pass would flood the queue with duplicates faster than
    # workers can ignore them.
    backoff = ExpressionWrapper(
        Value(timedelta(seconds=settings.DPP_LEASE_SECONDS))
        * Power(2, Least(Greatest(F("enqueue_attempts") - 1, 0), MAX_BACKOFF_DOUBLINGS)),
        output_field=DurationField(),
    )
    return (Run.objects.filter(status=Run.Status.QUEUED, deadline_at__gt=now, enqueued_at__isnull=False,
                               enqueue_attempts__gt=0)
            .alias(resend_at=ExpressionWrapper(F("enqueued_at") + backoff, output_field=DateTimeField()))
            .filter(resend_at__lt=now))


def _retention(now: datetime):
    # Only finished runs whose money is settled or refunded: a run awaiting an audit keeps its evidence.
    return Run.objects.filter(
        retention_until__lte=now, result_deleted_at__isnull=True, status__in=Run.TERMINAL_STATUSES,
        money_state__in=(Run.MoneyState.SETTLED, Run.MoneyState.REFUNDED),
    ).exclude(result_key="")


def reaper_candidate_queries(*, now: datetime, limit: int | None = None) -> dict:
    """Each pass's candidate query as it runs (for EXPLAIN in the benchmark)."""
    limit = limit or settings.DPP_REAPER_BATCH_SIZE
    return {
        "zombies": _zombies(now).order_by("pk").values_list("pk", flat=True)[:limit],
        "reconcile": _claims(now).order_by("pk")[:limit],
        "outbox expired": _outbox_expired(now).order_by("pk").values_list("pk", flat=True)[:limit],
        "outbox unconfirmed": _outbox_unconfirmed(now).order_by("created_at")[:limit],
        "outbox stale": _outbox_stale(now).order_by("created_at")[:limit],
        "retention": _retention(now).order_by("retention_until")[:limit],
    }


def _batch(queryset, limit: int | None) -> list:
    return list(queryset.order_by("pk").values_list("pk", flat=True)[: limit or settings.DPP_REAPER_BATCH_SIZE])


def _each(run_ids, candidates, handle, counts: Counter, job: str) -> None:
    """Lock each candidate (skipping rows another actor holds) and handle it; isolate failures."""
    for run_id in run_ids:
        try:
            with transaction.atomic():
                run = run_lock_or_skip(candidates.filter(pk=run_id))
                if run is None:
                    counts["skipped"] += 1
                    continue
                with bound_context(run_id=run.pk, trace_id=run.trace_id, request_id=run.request_id,
                                   tenant_id=run.tenant_id):
                    counts[handle(run)] += 1
        except SoftTimeLimitExceeded:
            raise  # the task's time is up: the pass ends here (this run's transaction rolled back)
        except Exception:
            counts["errors"] += 1
            logger.exception("reaper job failed on one run", extra={"job": job, "run_id": str(run_id)})


def _report(job: str, counts: Counter) -> dict:
    result = dict(counts)
    logger.info("reaper pass", extra={"job": job, "counts": result})
    return result


def zombies_reap(*, now: datetime, limit: int | None = None) -> dict:
    """PROCESSING runs, not CLAIMED, whose lease expired -> FAILED LEASE_EXPIRED, minimum fee."""
    candidates = _zombies(now)
    counts: Counter = Counter()
    _each(_batch(candidates, limit), candidates,
          lambda run: "reaped" if run_reap_zombie(run=run, now=now) else "lost", counts, "zombies")
    return _report("zombies", counts)


def claims_reconcile(*, now: datetime, limit: int | None = None) -> dict:
    """Runs CLAIMED for longer than DPP_RECONCILE_AFTER_SECONDS: roll forward from the S3 receipt,
    roll back when there is no object, AUDIT_REQUIRED when anything disagrees."""
    counts: Counter = Counter()
    for run in _claims(now).order_by("pk")[: limit or settings.DPP_REAPER_BATCH_SIZE]:
        with bound_context(run_id=run.pk, trace_id=run.trace_id, request_id=run.request_id, tenant_id=run.tenant_id):
            try:
                counts[_reconcile_one(run=run, now=now)] += 1
            except SoftTimeLimitExceeded:
                raise
            except Exception:
                counts["errors"] += 1
                logger.exception("reconciliation failed on one run", extra={"job": "reconcile"})
    return _report("reconcile", counts)


def _reconcile_one(*, run: Run, now: datetime) -> str:
    try:
        receipt = storage.receipt_get(bucket=run.result_bucket, key=run.result_key)  # outside any transaction
    except SoftTimeLimitExceeded:
        raise  # the pass's time is up, not an answer from S3
    except Exception as error:
        # Any answer but a 404 (a 403 from a role without s3:ListBucket, a timeout, ...) leaves the
        # run undecided; past DPP_RECONCILE_GIVE_UP_SECONDS since the claim an operator decides, so
        # the customer's money is never held forever.
        waited = (now - run.finalize_claimed_at).total_seconds()
        if waited < settings.DPP_RECONCILE_GIVE_UP_SECONDS:
            logger.warning("S3 unavailable; the run stays CLAIMED until the next pass", exc_info=True)
            return "undecided"
        why = f"the receipt could not be read for {int(waited)} s: {type(error).__name__}: {error}"
        return "audit_required" if run_mark_audit_required(run=run, why=why[:1000], now=now,
                                                           data={"receipt_error": str(error)[:500]}) else "lost"
    if receipt is None:
        return "rolled_back" if run_roll_back_claim(run=run, now=now) else "lost"
    problems = []
    if receipt.finalize_token != str(run.finalize_token):
        problems.append(f"receipt token {receipt.finalize_token} is not the claim's {run.finalize_token}")
    if receipt.actual_cost_micros is None:
        problems.append("receipt has no readable cost")
    elif not 0 <= receipt.actual_cost_micros <= run.reserved_micros:
        problems.append(f"receipt cost {receipt.actual_cost_micros} is outside 0..{run.reserved_micros}")
    if reservation_amount(run_id=run.pk) != run.reserved_micros:
        problems.append("the ledger holds no matching reservation for the run")
    if problems:
        data = {"receipt_cost_micros": receipt.actual_cost_micros, "receipt_token": receipt.finalize_token}
        return "audit_required" if run_mark_audit_required(run=run, why="; ".join(problems), now=now, data=data) \
            else "lost"
    committed = run_finalize_commit(run=run, finalize_token=run.finalize_token,
                                    charge_micros=receipt.actual_cost_micros, sha256=receipt.sha256 or "",
                                    actor="reconciler", now=now)
    return "rolled_forward" if committed else "lost"


def outbox_sweep(*, now: datetime, limit: int | None = None) -> dict:
    """QUEUED runs: fail and refund those past their deadline; resend those whose enqueue was
    never confirmed or that waited longer than a lease without being claimed. This pass picks
    the candidates; every write to the enqueue fields is runs/services/outbox.py's."""
    counts: Counter = Counter()
    expired = _outbox_expired(now)
    _each(_batch(expired, limit), expired,
          lambda run: "never_started" if run_fail_never_started(run=run, now=now) else "lost", counts, "outbox")

    unconfirmed, stale = _outbox_unconfirmed(now), _outbox_stale(now)
    querysets = [unconfirmed]
    # Messages still visible on the queue mean a backlog: the waiting runs' messages are in it,
    # not lost, and resending them would only add duplicates. Resend stale runs only when the
    # queue is known to be drained: an unknown depth (SQS unreachable or refusing) may hide a
    # backlog, so they wait for a pass that can read it. Never-confirmed runs are sent either way.
    depth = queue_depth()
    if "error" in depth:
        counts["depth_unknown"] = 1
        logger.warning("outbox: queue depth unknown; waiting runs are not resent this pass",
                       extra={"error": depth["error"]})
    elif depth.get("visible", 0) > 0:
        counts["backlog"] = depth["visible"]
    else:
        querysets.append(stale)
    # The first failed send ends the resends of this pass: a broker that refuses or hangs costs
    # one send's timeout, not one per candidate; the next pass tries again.
    for queryset in querysets:
        for run in queryset.order_by("created_at")[: limit or settings.DPP_REAPER_BATCH_SIZE]:
            with bound_context(run_id=run.pk, trace_id=run.trace_id, request_id=run.request_id):
                outcome = run_resend(run=run, now=now)
            counts[outcome] += 1
            if outcome == "send_failed":
                return _report("outbox", counts)
    return _report("outbox", counts)


def results_expire(*, now: datetime, limit: int | None = None, budget_seconds: float | None = None) -> dict:
    """Delete results past retention from S3; the row stays and its owner gets 410.

    Only finished runs whose money is settled or refunded lose their result: a run awaiting an
    audit (or still open) keeps its evidence. The pass drains the backlog in batches (one S3
    DeleteObjects request per bucket and batch, up to 1,000 keys) until nothing is left or
    ``budget_seconds`` (DPP_RETENTION_BUDGET_SECONDS) has passed; a key S3 refused stays for the
    next pass and never blocks the rest (the batches walk forward by retention date and id)."""
    counts: Counter = Counter()
    budget = settings.DPP_RETENTION_BUDGET_SECONDS if budget_seconds is None else budget_seconds
    stop_at = time.monotonic() + budget
    batch_size = min(limit or RETENTION_BATCH_SIZE, RETENTION_BATCH_SIZE)
    candidates = _retention(now)
    after = None
    for _ in range(MAX_RETENTION_BATCHES):
        page = candidates
        if after is not None:
            page = page.filter(Q(retention_until__gt=after[0]) | Q(retention_until=after[0], pk__gt=after[1]))
        batch = list(page.order_by("retention_until", "pk").values_list("pk", "retention_until", "result_bucket",
                                                                         "result_key")[:batch_size])
        if not batch:
            break
        after = (batch[-1][1], batch[-1][0])
        by_bucket: dict[str, list[tuple]] = {}
        for run_id, _, bucket, key in batch:
            by_bucket.setdefault(bucket, []).append((run_id, key))
        deleted_ids = []
        for bucket, items in by_bucket.items():
            try:
                refused = storage.envelopes_delete(bucket=bucket, keys=[key for _, key in items])
            except SoftTimeLimitExceeded:
                raise
            except Exception:
                logger.warning("result deletion failed; retried next pass", exc_info=True, extra={"bucket": bucket})
                counts["errors"] += len(items)
                continue
            counts["errors"] += len(refused)
            deleted_ids += [run_id for run_id, key in items if key not in refused]
        marked = runs_mark_results_deleted(run_ids=deleted_ids, now=now)
        counts["deleted"] += marked
        counts["lost"] += len(deleted_ids) - marked
        if len(batch) < batch_size or time.monotonic() >= stop_at:
            break
    return _report("retention", +counts)  # + drops the zero counts
