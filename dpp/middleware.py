"""Cross-cutting HTTP middleware: request metrics, request/trace ids, access log, body size limit."""

from __future__ import annotations

import logging
import time

from django.conf import settings

from dpp.context import bound_context, new_id, sane_or_none
from dpp.metrics import http_request_observe
from dpp.problems import DATABASE_UNAVAILABLE, database_unavailable_response, problem_response

access_logger = logging.getLogger("dpp.access")


class RequestMetricsMiddleware:
    """Time every request into ``http_server_request_duration_seconds``, labelled by method, the
    URL pattern's route template (``v1/runs/<str:run_id>``, never the raw path, so no id becomes
    a label) and the status code. Outermost, so refusals by later middleware are counted too."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        started = time.perf_counter()
        response = self.get_response(request)
        match = getattr(request, "resolver_match", None)
        http_request_observe(method=request.method, route=match.route if match is not None else None,
                             status_code=response.status_code, seconds=time.perf_counter() - started)
        return response


class RequestContextMiddleware:
    """Bind a request id (the client's X-Request-ID when sane, else a new one) and a trace id
    for the request, echo X-Request-ID on every response, and write one access log line."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        request_id = sane_or_none(request.headers.get("X-Request-ID")) or new_id()
        trace_id = sane_or_none(request.headers.get("X-Trace-ID")) or request_id
        request.request_id = request_id
        request.trace_id = trace_id
        started = time.perf_counter()
        with bound_context(request_id=request_id, trace_id=trace_id):
            response = self.get_response(request)
            response["X-Request-ID"] = request_id
            access_logger.info(
                "request",
                extra={
                    "method": request.method,
                    "path": request.path,
                    "status": response.status_code,
                    "duration_ms": round((time.perf_counter() - started) * 1000, 2),
                },
            )
        return response

    def process_exception(self, request, exception):
        """A view outside DRF (the admin, plain Django views) whose database is down: 503, as
        the API answers it (DRF views map it in dpp.problems.problem_exception_handler)."""
        if isinstance(exception, DATABASE_UNAVAILABLE):
            return database_unavailable_response(request=request, error=exception)
        return None


class BodySizeLimitMiddleware:
    """Refuse bodies over DPP_MAX_BODY_BYTES with a 413 problem before anything reads them.

    A declared Content-Length is checked here; a body without one (chunked) is bounded by
    DATA_UPLOAD_MAX_MEMORY_SIZE when read, which the exception handler maps to 413 too.
    """

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        raw = request.META.get("CONTENT_LENGTH") or "0"
        try:
            length = int(raw)
        except ValueError:
            return problem_response(slug="malformed-request", detail="Content-Length is not a number.",
                                    request=request)
        if length > settings.DPP_MAX_BODY_BYTES:
            return problem_response(
                slug="payload-too-large", request=request,
                detail=f"The body is {length} bytes; the limit is {settings.DPP_MAX_BODY_BYTES}.",
            )
        return self.get_response(request)
