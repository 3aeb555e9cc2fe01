"""The catalogue of why a run failed or waits, as its owner reads it in ``error``: a stable
reason code and a fixed text. Operators' notes and the reconciler's diagnostics stay in the
run's events (and ``error_detail``, which only the admin shows); they never reach the customer."""

from __future__ import annotations

REASON_TEXTS: dict[str, str] = {
    "LEASE_EXPIRED": "The worker executing the run stopped; the minimum fee was charged.",
    "WORKER_CRASH_DURING_FINALIZE": "The worker stopped while saving the result; the minimum fee was charged.",
    "NEVER_STARTED": "No worker started the run before its deadline; nothing was charged.",
    "TIMEBOX_EXCEEDED": "The pack ran over the run's timebox; the minimum fee was charged.",
    "PACK_ERROR": "The pack failed to produce a valid result; the minimum fee was charged.",
    "PACK_UNAVAILABLE": "The pack was not available on the platform; nothing was charged.",
    "AUDIT_REQUIRED": "The run's settlement awaits an operator's review; the reservation stays held until then.",
    "OPERATOR_RESOLVED": "An operator settled the run after a review.",
}
PACK_FAILURE_TEXT = "The pack could not produce a result; the minimum fee was charged."


def reason_text(reason_code: str) -> str:
    """The fixed text for ``reason_code``; a code a pack defines itself gets the pack's text."""
    return REASON_TEXTS.get(reason_code, PACK_FAILURE_TEXT)
