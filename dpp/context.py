"""Per-request / per-task context (request id, trace id, tenant, run) carried in contextvars.

The API sets it in middleware, the worker from task headers, the reaper per run; the logging
filter copies it onto every record, so every log line names the request and trace it serves.
"""

from __future__ import annotations

import contextvars
import re
import uuid
from contextlib import contextmanager

_request_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("dpp_request_id", default=None)
_trace_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("dpp_trace_id", default=None)
_tenant_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("dpp_tenant_id", default=None)
_run_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("dpp_run_id", default=None)

# A client-supplied id is echoed only if it is short and made of safe characters.
SANE_ID = re.compile(r"^[A-Za-z0-9._:\-]{1,128}$")


def new_id() -> str:
    return uuid.uuid4().hex


def sane_or_none(value: str | None) -> str | None:
    if value and SANE_ID.match(value):
        return value
    return None


def current_request_id() -> str | None:
    return _request_id.get()


def current_trace_id() -> str | None:
    return _trace_id.get()


def current_tenant_id() -> str | None:
    return _tenant_id.get()


def current_run_id() -> str | None:
    return _run_id.get()


def set_tenant_id(tenant_id) -> None:
    _tenant_id.set(str(tenant_id) if tenant_id else None)


def set_trace_id(trace_id: str | None) -> None:
    _trace_id.set(trace_id)


@contextmanager
def bound_context(*, request_id=None, trace_id=None, tenant_id=None, run_id=None):
    """Bind the given ids for the duration of a block and restore the previous ones after."""
    tokens = [
        (_request_id, _request_id.set(request_id)),
        (_trace_id, _trace_id.set(trace_id)),
        (_tenant_id, _tenant_id.set(str(tenant_id) if tenant_id else None)),
        (_run_id, _run_id.set(str(run_id) if run_id else None)),
    ]
    try:
        yield
    finally:
        for var, token in reversed(tokens):
            var.reset(token)
