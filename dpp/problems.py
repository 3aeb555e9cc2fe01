"""RFC 9457 problem details for every error the API can produce.

``type`` is ``/problems/<slug>``; each slug is declared once in the catalogue
(dpp/errors.py PROBLEM_TYPES), which gives its status, title and page (``problem_type_page``). The DRF exception handler, Django's 400/403/404/500 handlers and
the middlewares all answer through ``problem_response`` so there is one shape on the wire.
"""

from __future__ import annotations

import logging

from django.core.exceptions import PermissionDenied, RequestDataTooBig
from django.db import InterfaceError, OperationalError
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.utils.html import escape
from rest_framework import exceptions as drf_exceptions
from rest_framework.views import set_rollback

from dpp.context import current_request_id
from dpp.errors import PROBLEM_TYPES, DomainError, generic_slug, problem_type
from dpp.metrics import rate_limited_observe

logger = logging.getLogger(__name__)

PROBLEM_CONTENT_TYPE = "application/problem+json"
# PostgreSQL unreachable, restarting, or a statement/lock timeout: the client should retry.
DATABASE_RETRY_AFTER_SECONDS = 5
DATABASE_UNAVAILABLE = (OperationalError, InterfaceError)


__all__ = ["PROBLEM_CONTENT_TYPE", "PROBLEM_TYPES", "database_unavailable_response", "problem_exception_handler",
           "problem_response", "problem_type_page"]


def problem_response(
    *,
    slug: str,
    detail: str | None = None,
    request: HttpRequest | None = None,
    headers: dict[str, str] | None = None,
    extra: dict | None = None,
    status: int | None = None,
) -> JsonResponse:
    """The problem+json answer for a catalogued ``slug``. ``status`` is the catalogue's, unless
    the caller must keep a status the catalogue has no slug of its own for (DRF's rarer ones)."""
    known = problem_type(slug)
    status = status or known.status
    body = {
        "type": f"/problems/{slug}",
        "title": known.title,
        "status": status,
        "detail": detail or known.description,
        "instance": request.path if request is not None else None,
        "request_id": current_request_id(),
    }
    if extra:
        body.update({k: v for k, v in extra.items() if k not in body})
    response = JsonResponse(body, status=status, content_type=PROBLEM_CONTENT_TYPE)
    for name, value in (headers or {}).items():
        response[name] = value
    if status == 401:
        response["WWW-Authenticate"] = 'Bearer realm="dpp"'
    return response


def database_unavailable_response(*, request: HttpRequest | None, error: Exception) -> JsonResponse:
    """503 with Retry-After for a database that cannot answer now; a WARNING (an outage of a
    dependency, not a bug), without the driver's message (it may name hosts)."""
    logger.warning("database unavailable: answered 503", extra={"error_class": type(error).__name__})
    response = problem_response(slug="service-unavailable", request=request,
                                detail="The database is unavailable; retry later.",
                                headers={"Retry-After": str(DATABASE_RETRY_AFTER_SECONDS)})
    response._has_been_logged = True  # logged above at WARNING: django.request must not log it at ERROR
    return response


def _flatten_drf_errors(data) -> dict | list | str:
    if isinstance(data, dict):
        return {key: _flatten_drf_errors(value) for key, value in data.items()}
    if isinstance(data, list):
        flat = [_flatten_drf_errors(item) for item in data]
        return flat[0] if len(flat) == 1 and isinstance(flat[0], str) else flat
    return str(data)


def _first_error(errors, prefix: str = "") -> tuple[str | None, str | None]:
    """The dotted path and message of the first error in a nested DRF error structure."""
    if isinstance(errors, dict):
        for key, value in errors.items():
            path = f"{prefix}.{key}" if prefix else str(key)
            return _first_error(value, path)
    if isinstance(errors, list) and errors:
        return _first_error(errors[0], prefix)
    if isinstance(errors, str):
        return prefix or None, errors
    return prefix or None, None


def problem_exception_handler(exc, context):
    """DRF's EXCEPTION_HANDLER: every exception raised in an API view becomes a problem."""
    request = context.get("request")
    django_request = getattr(request, "_request", request)
    if isinstance(exc, DomainError):
        set_rollback()
        if exc.status == 429:  # every 429 is counted here, by the limit that refused it
            rate_limited_observe(policy=getattr(exc, "policy", "other"))
        if exc.status >= 500 and exc.status != 503:  # a broken invariant (LedgerError) or a bug
            logger.error("domain error answered as %s", exc.status, exc_info=exc, extra={"slug": exc.slug})
        return problem_response(slug=exc.slug, detail=exc.detail, request=django_request, headers=exc.headers,
                                extra=exc.extra)
    if isinstance(exc, DATABASE_UNAVAILABLE):
        set_rollback()
        return database_unavailable_response(request=django_request, error=exc)
    if isinstance(exc, Http404):
        exc = drf_exceptions.NotFound()
    elif isinstance(exc, PermissionDenied):  # Django's, as DRF's own handler maps it
        exc = drf_exceptions.PermissionDenied()
    if isinstance(exc, RequestDataTooBig):
        return problem_response(slug="payload-too-large", request=django_request)
    if isinstance(exc, drf_exceptions.ValidationError):
        errors = _flatten_drf_errors(exc.detail)
        field, message = _first_error(errors)
        if field and field != "non_field_errors":
            detail = f"{field}: {message}" if message else f"Invalid field '{field}'."
        else:
            detail = message or "Invalid input."
        return problem_response(slug="validation-error", detail=detail, request=django_request,
                                extra={"errors": errors})
    if isinstance(exc, drf_exceptions.ParseError):
        return problem_response(slug="malformed-request", detail=str(exc.detail), request=django_request)
    if isinstance(exc, (drf_exceptions.NotAuthenticated, drf_exceptions.AuthenticationFailed)):
        return problem_response(slug="unauthorized", detail=str(exc.detail), request=django_request)
    if isinstance(exc, drf_exceptions.Throttled):
        rate_limited_observe(policy="other")
        headers = {"Retry-After": str(int(exc.wait or 1))}
        return problem_response(slug="rate-limit-exceeded", request=django_request, headers=headers)
    if isinstance(exc, drf_exceptions.APIException):
        detail = exc.detail if isinstance(exc.detail, str) else str(_flatten_drf_errors(exc.detail))
        return problem_response(slug=generic_slug(exc.status_code), status=exc.status_code, detail=str(detail),
                                request=django_request)
    # Unexpected: DRF would re-raise and Django would answer 500 through handler500; answer the
    # problem here so the request id is in the body, and log the traceback once.
    logger.exception("unhandled exception in API view")
    set_rollback()
    return problem_response(slug="internal-error", request=django_request)


# Django-level handlers (URLs outside DRF views, and anything Django itself refuses).
def handler400(request, exception=None):
    return problem_response(slug="bad-request", request=request)


def handler403(request, exception=None):
    return problem_response(slug="forbidden", request=request)


def handler404(request, exception=None):
    return problem_response(slug="not-found", request=request)


def handler500(request):
    return problem_response(slug="internal-error", request=request)


def problem_type_page(request: HttpRequest, slug: str) -> HttpResponse:
    """A short human page documenting one problem type (the target of ``type`` URIs)."""
    if request.method not in ("GET", "HEAD"):
        response = problem_response(slug="method-not-allowed", request=request)
        response["Allow"] = "GET, HEAD"
        return response
    known = PROBLEM_TYPES.get(slug)
    if known is None:
        raise Http404
    html = (
        "<!doctype html><html><head><meta charset='utf-8'>"
        f"<title>{escape(known.title)}</title></head><body>"
        f"<h1>{escape(known.title)}</h1><p>HTTP status {known.status}.</p>"
        f"<p>{escape(known.description)}</p>"
        "<p>Errors of the DPP API are RFC 9457 problem details "
        "(<code>application/problem+json</code>) carrying <code>type</code>, <code>title</code>, "
        "<code>status</code>, <code>detail</code>, <code>instance</code> and <code>request_id</code>.</p>"
        "</body></html>"
    )
    return HttpResponse(html, content_type="text/html; charset=utf-8")
