"""The Celery application. Tasks travel on SQS; there is no result backend."""

from __future__ import annotations

import os

from celery import Celery, signals

from dpp.context import bound_context

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "dpp.settings")

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
