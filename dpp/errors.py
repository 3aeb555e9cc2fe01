"""The one base class of every anticipated (domain) error.

Services raise subclasses beside themselves; the DRF exception handler (dpp/problems.py) maps
each to an RFC 9457 problem once. Anticipated errors are answered, not logged as ERROR.
"""

from __future__ import annotations


class DomainError(Exception):
    status: int = 400
    slug: str = "bad-request"
    title: str = "Bad request"

    def __init__(self, detail: str | None = None, *, headers: dict[str, str] | None = None, **extra):
        self.detail = detail or self.title
        self.headers = headers or {}
        self.extra = extra
        super().__init__(self.detail)


class ValidationProblem(DomainError):
    """Input that is well-formed but invalid (422), naming the offending field(s)."""

    status = 422
    slug = "validation-error"
    title = "Invalid input"

    def __init__(self, detail: str, *, errors: dict | list | None = None, **kwargs):
        super().__init__(detail, **kwargs)
        if errors is not None:
            self.extra["errors"] = errors


class ServiceUnavailable(DomainError):
    status = 503
    slug = "service-unavailable"
    title = "A dependency is unavailable"
