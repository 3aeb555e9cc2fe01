"""The Celery application. Tasks travel on SQS; there is no result backend."""

from __future__ import annotations

import logging
import os

from celery import Celery, signals
from django.conf import settings

from dpp import metrics
from dpp.context import bound_context

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "dpp.settings")
logger = logging.getLogger(__name__)

app = Celery("dpp")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


# Every log line written while a task runs (Celery's own trace lines included) carries the
# request id and trace id that travelled in the task's headers.
_task_contexts: dict[str, object] = {}


@signals.task_prerun.connect
def _bind_task_context(task_id=None, task=None, kwargs=None, **_):
    request = task.request
    headers = request.headers if isinstance(getattr(request, "headers", None), dict) else {}
    context = bound_context(
        request_id=getattr(request, "dpp_request_id", None) or headers.get("dpp_request_id"),
        trace_id=getattr(request, "dpp_trace_id", None) or headers.get("dpp_trace_id"),
        run_id=(kwargs or {}).get("run_id"),
    )
    context.__enter__()
    _task_contexts[task_id] = context


@signals.task_postrun.connect
def _unbind_task_context(task_id=None, **_):
    context = _task_contexts.pop(task_id, None)
    if context is not None:
        context.__exit__(None, None, None)


# Metrics (dpp/metrics.py). The worker parent wipes the metrics directory before it forks its
# pool, then serves every child's metrics on DPP_WORKER_METRICS_PORT; a child that ends is marked
# dead. The run and task metrics themselves are observed in runs/metrics.py.
_metrics_server = None


@signals.worker_init.connect
def _metrics_worker_start(**_):
    global _metrics_server
    metrics.metrics_dir_wipe()
    if settings.DPP_WORKER_METRICS_PORT:
        try:
            _metrics_server = metrics.worker_metrics_server_start(
                addr=settings.DPP_WORKER_METRICS_ADDR, port=settings.DPP_WORKER_METRICS_PORT,
                token=settings.DPP_METRICS_TOKEN,
            )
        except OSError:
            # Runs matter more than their metrics: the worker goes on; the scrape's `up` is 0.
            logger.exception("worker metrics server could not start",
                             extra={"port": settings.DPP_WORKER_METRICS_PORT})


@signals.worker_process_init.connect
def _metrics_child_start(**_):
    # A forked child inherits the parent's listening socket; holding it would keep the port bound
    # after the parent died, and a restarted worker could not serve its metrics.
    if _metrics_server is not None:
        _metrics_server.socket.close()


@signals.worker_process_shutdown.connect
def _metrics_child_end(pid=None, **_):
    metrics.metrics_process_dead(pid=pid or os.getpid())
