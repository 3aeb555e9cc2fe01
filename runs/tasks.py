"""Celery tasks of runs: interfaces that take ids and call one service."""

from __future__ import annotations

import logging

from celery import shared_task
from django.conf import settings

from dpp.clock import db_now
from runs.reaper import claims_reconcile, outbox_sweep, results_expire, zombies_reap
from runs.worker import SqsMessage, run_execute

logger = logging.getLogger(__name__)


def _header(request, name: str) -> str | None:
    value = getattr(request, name, None)
    if value is None and isinstance(getattr(request, "headers", None), dict):
        value = request.headers.get(name)
    return value


def _sqs_message(request) -> SqsMessage | None:
    """The SQS receipt handle and queue URL of the message being processed, for the heartbeat."""
    properties = getattr(request, "properties", None) or {}
    delivery_info = properties.get("delivery_info") or getattr(request, "delivery_info", None) or {}
    receipt = properties.get("delivery_tag") or (delivery_info or {}).get("delivery_tag")
    queue_url = (delivery_info or {}).get("sqs_queue")
    if receipt and queue_url:
        return SqsMessage(queue_url=queue_url, receipt_handle=receipt)
    return None


# The hard time limit is a backstop for a pack blocked where the timebox's signal cannot reach
# (native code): the pool kills the child, the lease (capped at start + timebox + grace) expires
# and the reaper settles the run.
@shared_task(bind=True, name="runs.tasks.run_execute_task", acks_late=True, reject_on_worker_lost=True,
             ignore_result=True, time_limit=settings.DPP_RUN_TASK_TIME_LIMIT_SECONDS)
def run_execute_task(self, *, run_id: str) -> str:
    # The log context (request id, trace id, run id) is bound from the headers by dpp/celery.py;
    # the heartbeat thread gets it passed explicitly.
    context = {
        "request_id": _header(self.request, "dpp_request_id"),
        "trace_id": _header(self.request, "dpp_trace_id"),
        "run_id": run_id,
    }
    outcome = run_execute(run_id=run_id, message=_sqs_message(self.request), log_context=context)
    logger.info("run task done", extra={"outcome": outcome})
    return outcome


# --- periodic jobs (declared in runs/schedule.py; their own queue, see there) ---------------------


@shared_task(name="runs.tasks.zombies_reap_task", ignore_result=True, queue=settings.DPP_PERIODIC_QUEUE_NAME,
             soft_time_limit=max(60, 3 * settings.DPP_REAPER_INTERVAL_SECONDS),  # a few intervals
             time_limit=max(60, 3 * settings.DPP_REAPER_INTERVAL_SECONDS) + 30)
def zombies_reap_task() -> dict:
    return zombies_reap(now=db_now())  # one clock for lease times: the database's


@shared_task(name="runs.tasks.claims_reconcile_task", ignore_result=True, queue=settings.DPP_PERIODIC_QUEUE_NAME,
             soft_time_limit=max(60, 3 * settings.DPP_RECONCILE_INTERVAL_SECONDS),  # a few intervals
             time_limit=max(60, 3 * settings.DPP_RECONCILE_INTERVAL_SECONDS) + 30)
def claims_reconcile_task() -> dict:
    return claims_reconcile(now=db_now())  # one clock for lease times: the database's


@shared_task(name="runs.tasks.outbox_sweep_task", ignore_result=True, queue=settings.DPP_PERIODIC_QUEUE_NAME,
             soft_time_limit=max(60, 3 * settings.DPP_OUTBOX_INTERVAL_SECONDS),  # a few intervals
             time_limit=max(60, 3 * settings.DPP_OUTBOX_INTERVAL_SECONDS) + 30)
def outbox_sweep_task() -> dict:
    return outbox_sweep(now=db_now())  # one clock for lease times: the database's


@shared_task(name="runs.tasks.results_expire_task", ignore_result=True, queue=settings.DPP_PERIODIC_QUEUE_NAME,
             soft_time_limit=settings.DPP_RETENTION_BUDGET_SECONDS + 300,  # budget + last batch
             time_limit=settings.DPP_RETENTION_BUDGET_SECONDS + 300 + 30)
def results_expire_task() -> dict:
    return results_expire(now=db_now())  # one clock for lease times: the database's
