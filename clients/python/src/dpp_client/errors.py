"""Typed errors. Every error answer of the DPP API is an RFC 9457 problem document whose ``type``
is ``/problems/<slug>``; :func:`error_from_response` turns it into the subclass of
:class:`DPPError` registered for that slug (or :class:`DPPError` itself for a slug this client
does not know, so a new problem type on the server never breaks an old client)."""

from __future__ import annotations

from typing import Any

import httpx

__all__ = [
    "DPPClientError",
    "DPPError",
    "BadRequest",
    "MalformedRequest",
    "InvalidIdempotencyKey",
    "AuthenticationFailed",
    "PaymentRequired",
    "InsufficientBalance",
    "MaxCostExceeded",
    "Forbidden",
    "NotFound",
    "MethodNotAllowed",
    "NotAcceptable",
    "Conflict",
    "IdempotencyKeyReused",
    "RunNotCancelable",
    "Gone",
    "PayloadTooLarge",
    "UnsupportedMediaType",
    "ValidationFailed",
    "RateLimited",
    "ConcurrentRunsExceeded",
    "InternalError",
    "ServiceUnavailable",
    "APIConnectionError",
    "WaitTimeout",
    "RunNotCompleted",
    "ResultDownloadError",
    "ResultIntegrityError",
    "WebhookVerificationError",
]


class DPPClientError(Exception):
    """Base of every exception this package raises."""


class DPPError(DPPClientError):
    """An error answer of the API (a problem document, or an error status without one)."""

    slug: str | None = None

    def __init__(self, *, type: str, title: str, status: int, detail: str, request_id: str | None = None,
                 instance: str | None = None, body: dict[str, Any] | None = None,
                 headers: httpx.Headers | None = None):
        self.type = type
        self.title = title
        self.status = status
        self.detail = detail
        self.request_id = request_id
        self.instance = instance
        self.body = body or {}
        self.headers = headers or httpx.Headers()
        super().__init__(f"{status} {title}: {detail}" + (f" (request_id {request_id})" if request_id else ""))

    @property
    def errors(self) -> Any:
        """The field errors of a 422 (``{"inputs": {"options": "..."}}``), when the server sent them."""
        return self.body.get("errors")

    @property
    def retry_after(self) -> float | None:
        return parse_retry_after(self.headers.get("Retry-After"))


class BadRequest(DPPError):
    slug = "bad-request"


class MalformedRequest(BadRequest):
    slug = "malformed-request"


class InvalidIdempotencyKey(BadRequest):
    slug = "invalid-idempotency-key"


class AuthenticationFailed(DPPError):
    slug = "unauthorized"


class PaymentRequired(DPPError):
    """402: the run would cost more than the tenant can or may spend."""


class InsufficientBalance(PaymentRequired):
    slug = "insufficient-balance"


class MaxCostExceeded(PaymentRequired):
    slug = "max-cost-exceeded"


class Forbidden(DPPError):
    slug = "forbidden"


class NotFound(DPPError):
    slug = "not-found"


class MethodNotAllowed(DPPError):
    slug = "method-not-allowed"


class NotAcceptable(DPPError):
    slug = "not-acceptable"


class Conflict(DPPError):
    """409."""

    slug = "conflict"


class IdempotencyKeyReused(Conflict):
    slug = "idempotency-key-reused"


class RunNotCancelable(Conflict):
    slug = "run-not-cancelable"


class Gone(DPPError):
    slug = "gone"


class PayloadTooLarge(DPPError):
    slug = "payload-too-large"


class UnsupportedMediaType(DPPError):
    slug = "unsupported-media-type"


class ValidationFailed(DPPError):
    slug = "validation-error"


class RateLimited(DPPError):
    slug = "rate-limit-exceeded"


class ConcurrentRunsExceeded(RateLimited):
    slug = "concurrent-runs-exceeded"


class InternalError(DPPError):
    slug = "internal-error"


class ServiceUnavailable(DPPError):
    slug = "service-unavailable"


class APIConnectionError(DPPClientError):
    """The API could not be reached (or the connection dropped) on every attempt."""


class WaitTimeout(DPPClientError, TimeoutError):
    """``wait()`` reached its deadline while the run was still QUEUED or PROCESSING."""

    def __init__(self, run: dict[str, Any], timeout: float):
        self.run = run
        self.run_id = run.get("run_id")
        super().__init__(f"run {self.run_id} still {run.get('status')} after {timeout:g} s")


class RunNotCompleted(DPPClientError):
    """``result()`` of a run that finished without a result (FAILED, CANCELED, or any other status)."""

    def __init__(self, run: dict[str, Any]):
        self.run = run
        self.run_id = run.get("run_id")
        error = run.get("error") or {}
        reason = f": {error.get('reason_code')} {error.get('detail') or ''}".rstrip() if error else ""
        super().__init__(f"run {self.run_id} is {run.get('status')}{reason}")


class ResultDownloadError(DPPClientError):
    """Storage refused the result download (an expired or deleted link: 403/404, or a server error
    after the retries). The message names the status only: the link itself is a credential."""

    def __init__(self, status_code: int):
        self.status_code = status_code
        super().__init__(f"result download failed with HTTP {status_code}")


class ResultIntegrityError(DPPClientError):
    """The downloaded result envelope does not match the SHA-256 the API reported."""


class WebhookVerificationError(DPPClientError):
    """A webhook delivery whose signature or timestamp does not verify."""


_BY_SLUG: dict[str, type[DPPError]] = {}


def _register(cls: type[DPPError]) -> None:
    if cls.slug:
        _BY_SLUG[cls.slug] = cls
    for sub in cls.__subclasses__():
        _register(sub)


_register(DPPError)

_BY_STATUS: dict[int, type[DPPError]] = {
    400: BadRequest, 401: AuthenticationFailed, 402: PaymentRequired, 403: Forbidden, 404: NotFound,
    405: MethodNotAllowed, 406: NotAcceptable, 409: Conflict, 410: Gone, 413: PayloadTooLarge,
    415: UnsupportedMediaType, 422: ValidationFailed, 429: RateLimited, 500: InternalError,
    503: ServiceUnavailable,
}


def parse_retry_after(value: str | None) -> float | None:
    """Seconds from a ``Retry-After`` header (delta-seconds only; an HTTP date is ignored)."""
    if not value:
        return None
    try:
        seconds = float(value.strip())
    except ValueError:
        return None
    return seconds if seconds >= 0 else None


def error_from_response(response: httpx.Response) -> DPPError:
    body: dict[str, Any] = {}
    try:
        parsed = response.json()
        if isinstance(parsed, dict):
            body = parsed
    except ValueError:
        pass
    type_ = str(body.get("type") or "about:blank")
    slug = type_.rstrip("/").rsplit("/", 1)[-1] if "/problems/" in type_ else None
    cls = _BY_SLUG.get(slug or "") or _BY_STATUS.get(response.status_code, DPPError)
    return cls(
        type=type_,
        title=str(body.get("title") or response.reason_phrase or "Error"),
        status=int(body.get("status") or response.status_code),
        detail=str(body.get("detail") or (response.text[:500] if not body else "")),
        request_id=body.get("request_id") or response.headers.get("X-Request-ID"),
        instance=body.get("instance"),
        body=body,
        headers=response.headers,
    )
