"""The problem catalogue and the one base class of every anticipated (domain) error.

Every problem type the platform can answer is declared once, in ``PROBLEM_TYPES``: its slug, HTTP
status, title and explanation. From it come the ``DomainError`` subclasses (a subclass names
its slug; status and title are read here), the ``/problems/<slug>`` pages and the bodies
(dpp/problems.py), and the problem responses of the OpenAPI schema (dpp/openapi.py).

Services raise subclasses beside themselves; the DRF exception handler maps each to an RFC 9457
problem once. Anticipated errors (4xx, 503) are answered, not logged as ERROR; a 500 is a broken
invariant or a bug and is logged at ERROR with its traceback.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ProblemType:
    status: int
    title: str
    description: str
    generic: bool = False  # the slug answered for this status when nothing more precise is known
    api: bool = True  # answered by the /v1 API (False: the admin only; it still has its page)


PROBLEM_TYPES: dict[str, ProblemType] = {
    "bad-request": ProblemType(400, "Bad request", "The request could not be understood.", generic=True),
    "malformed-request": ProblemType(400, "Malformed request", "The body is not valid JSON or a header is malformed."),
    "invalid-idempotency-key": ProblemType(
        400, "Invalid Idempotency-Key", "POST /v1/runs needs an Idempotency-Key header of 8 to 64 visible ASCII characters."
    ),
    "unauthorized": ProblemType(401, "Unauthorized", "The API key is missing, malformed, unknown, revoked, or its tenant is suspended.", generic=True),
    "insufficient-balance": ProblemType(402, "Insufficient balance", "The tenant's available balance is below the run's spend cap. Top up, or lower max_cost_usd."),
    "max-cost-exceeded": ProblemType(402, "Spend cap above plan limit", "max_cost_usd is above the plan's cap per run for this pack type."),
    "forbidden": ProblemType(403, "Forbidden", "The request is not allowed.", generic=True),
    "not-found": ProblemType(404, "Not found", "No such resource exists for you.", generic=True),
    "method-not-allowed": ProblemType(405, "Method not allowed", "The resource does not support this HTTP method.", generic=True),
    "not-acceptable": ProblemType(406, "Not acceptable", "The API answers JSON only.", generic=True),
    "conflict": ProblemType(409, "Conflict", "The request conflicts with the current state of the resource.", generic=True),
    "idempotency-key-reused": ProblemType(409, "Idempotency-Key reused", "This Idempotency-Key was already used with a different request body."),
    "run-not-cancelable": ProblemType(
        409, "Run not cancelable",
        "The run is finalizing (its result is being stored and settled) or already finished, or its money awaits an "
        "operator's decision: it can no longer be canceled. Nothing moved; GET the run for its outcome.",
    ),
    "audit-resolution-refused": ProblemType(
        409, "This resolution is not possible",
        "An operator's decision on an AUDIT_REQUIRED run was refused (no reason given, amount outside the "
        "reservation, no readable receipt, or the run was already resolved). Admin only; no money moved.",
        api=False,
    ),
    "gone": ProblemType(410, "Gone", "The run's retention has passed; its result was deleted.", generic=True),
    "payload-too-large": ProblemType(413, "Payload too large", "The request body is over the size limit.", generic=True),
    "unsupported-media-type": ProblemType(415, "Unsupported media type", "Send the body as application/json.", generic=True),
    "validation-error": ProblemType(422, "Invalid input", "The body is well-formed JSON but a field is invalid; see errors.", generic=True),
    "rate-limit-exceeded": ProblemType(429, "Rate limit exceeded", "The plan's request rate is used up; retry after Retry-After seconds.", generic=True),
    "concurrent-runs-exceeded": ProblemType(429, "Too many concurrent runs", "The plan's limit of concurrent runs is reached; retry when a run finishes."),
    "webhook-endpoint-limit-exceeded": ProblemType(409, "Webhook endpoint limit reached", "The plan's number of webhook endpoints is reached; delete one first."),
    "webhook-endpoint-disabled": ProblemType(409, "Webhook endpoint disabled", "The webhook endpoint is disabled (by its owner, an operator, or a 410 from the receiver); enable it first."),
    "internal-error": ProblemType(500, "Internal server error", "An unexpected error; it has been logged with the request id.", generic=True),
    "service-unavailable": ProblemType(503, "A dependency is unavailable", "A dependency (database, Redis, queue or storage) is down; retry later.", generic=True),
}

GENERIC_SLUGS: dict[int, str] = {problem.status: slug for slug, problem in PROBLEM_TYPES.items() if problem.generic}


def problem_type(slug: str) -> ProblemType:
    """The catalogue entry of ``slug``; a KeyError names a slug that is not declared."""
    try:
        return PROBLEM_TYPES[slug]
    except KeyError:
        raise KeyError(f"problem slug {slug!r} is not in dpp.errors.PROBLEM_TYPES") from None


def generic_slug(status: int) -> str:
    return GENERIC_SLUGS.get(status, "bad-request" if status < 500 else "internal-error")


class DomainError(Exception):
    """Subclasses set ``slug`` only; ``status`` and ``title`` come from the catalogue."""

    slug: str = "bad-request"
    status: int = PROBLEM_TYPES["bad-request"].status
    title: str = PROBLEM_TYPES["bad-request"].title

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        known = problem_type(cls.slug)  # an undeclared slug fails at import time
        cls.status, cls.title = known.status, known.title

    def __init__(self, detail: str | None = None, *, headers: dict[str, str] | None = None, **extra):
        self.detail = detail or self.title
        self.headers = headers or {}
        self.extra = extra
        super().__init__(self.detail)


class ValidationProblem(DomainError):
    """Input that is well-formed but invalid (422), naming the offending field(s)."""

    slug = "validation-error"

    def __init__(self, detail: str, *, errors: dict | list | None = None, **kwargs):
        super().__init__(detail, **kwargs)
        if errors is not None:
            self.extra["errors"] = errors


class ServiceUnavailable(DomainError):
    slug = "service-unavailable"
