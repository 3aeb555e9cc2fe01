"""Run and task metrics, observed in the Celery worker through Celery's task signals (they fire in
the prefork child that runs the task, and work on SQS, where worker events do not).

- every task: ``dpp_tasks_total`` (task, state);
- the execution task: when it claimed its run, the queue wait (creation to claim) and the task's
  duration; when its outcome is terminal, ``dpp_runs_finished_total`` with the pack type, status
  and reason code read from the run row (the truth after the task's last transition);
- the periodic jobs: ``dpp_reaper_actions_total`` from the counts each pass returns.

A run the client cancels is counted in ``dpp_runs_finished_total`` by the API process that
canceled it (``run_canceled_observe``); a scraper adds the API's and the workers' series.
Runs that a periodic job finishes (zombies, roll-backs, runs never started) are counted in
``dpp_reaper_actions_total``, not in ``dpp_runs_finished_total``.
"""

from __future__ import annotations

import logging
import time

from celery import signals

from dpp import metrics
from runs.models import Run
from runs.packs import packs_all

logger = logging.getLogger(__name__)

EXECUTE_TASK = "runs.tasks.run_execute_task"
# The execution task's return values (runs/worker.py) after which the run is terminal: the worker
# itself completed or failed it. "ignored", "claim_lost", "commit_lost" and "upload_failed" leave
# the run to another actor.
FINISHING_OUTCOMES = frozenset({"completed", "timebox_exceeded", "pack_failed", "pack_error"})
CLAIMED_OUTCOMES = FINISHING_OUTCOMES | {"claim_lost", "commit_lost", "upload_failed"}
REAPER_TASKS = {
    "runs.tasks.zombies_reap_task": "zombies",
    "runs.tasks.claims_reconcile_task": "reconcile",
    "runs.tasks.outbox_sweep_task": "outbox",
    "runs.tasks.results_expire_task": "retention",
}
KNOWN_TASKS = (EXECUTE_TASK, *REAPER_TASKS)
TERMINAL_STATUSES = frozenset(metrics.RUN_FINISH_STATUSES)

# task id -> perf_counter at prerun. A child runs one task at a time; postrun pops the entry, and
# the bound keeps a stream of tasks whose postrun never came (a killed task) from growing it.
_started: dict[str, float] = {}
_STARTED_BOUND = 1000


def run_labels_precreate() -> None:
    metrics.run_labels_precreate(pack_types=[pack.pack_type for pack in packs_all()], task_names=KNOWN_TASKS)


def _pack_label(pack_type: str) -> str:
    return pack_type if any(pack.pack_type == pack_type for pack in packs_all()) else "other"


def run_task_observe(*, run_id, outcome, seconds: float) -> None:
    """Observe the execution task of one run, reading its row once."""
    if outcome not in CLAIMED_OUTCOMES:
        return
    row = (Run.objects.filter(pk=run_id)
           .values("pack_type", "status", "error_reason", "created_at", "started_at").first())
    if row is None:
        return
    pack_type = _pack_label(row["pack_type"])
    metrics.run_execution.labels(pack_type=pack_type).observe(seconds)
    if row["started_at"] is not None:
        wait = max(0.0, (row["started_at"] - row["created_at"]).total_seconds())
        metrics.run_queue_wait.labels(pack_type=pack_type).observe(wait)
    if outcome in FINISHING_OUTCOMES and row["status"] in TERMINAL_STATUSES:
        metrics.runs_finished.labels(pack_type=pack_type, status=row["status"],
                                     reason_code=metrics.run_reason_label(row["error_reason"])).inc()


def run_canceled_observe(*, pack_type: str) -> None:
    """A run the client canceled is finished by the API (no task brings it there)."""
    metrics.runs_finished.labels(pack_type=_pack_label(pack_type), status=Run.Status.CANCELED,
                                 reason_code="CANCELED").inc()


@signals.task_prerun.connect(dispatch_uid="runs.metrics.task_started")
def _task_started(task_id=None, **_):
    if len(_started) >= _STARTED_BOUND:
        _started.clear()
    _started[task_id] = time.perf_counter()


@signals.task_postrun.connect(dispatch_uid="runs.metrics.task_ended")
def _task_ended(task_id=None, task=None, kwargs=None, retval=None, state=None, **_):
    started = _started.pop(task_id, None)
    seconds = time.perf_counter() - started if started is not None else 0.0
    name = getattr(task, "name", "")
    try:
        metrics.tasks_finished.labels(task=name if name in KNOWN_TASKS else "other",
                                      state=state if state in metrics.TASK_STATES else "OTHER").inc()
        if name == EXECUTE_TASK and state == "SUCCESS":
            run_task_observe(run_id=(kwargs or {}).get("run_id"), outcome=retval, seconds=seconds)
        elif name in REAPER_TASKS and state == "SUCCESS" and isinstance(retval, dict):
            metrics.reaper_pass_observe(job=REAPER_TASKS[name], counts=retval)
    except Exception:
        # Metrics never fail a task; the run's own state is already committed.
        logger.warning("task metrics not recorded", exc_info=True, extra={"task": name})
