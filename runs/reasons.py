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
    "AUDIT_REQUIRED": ("This run awaits an operator's review of its charge; its reservation stays held until then. "
                       "It no longer counts against your concurrent-runs limit."),
    "CANCELED": "The run was canceled by the client.",
    "OPERATOR_RESOLVED": "An operator settled the run after a review.",
}
PACK_FAILURE_TEXT = "The pack could not produce a result; the minimum fee was charged."
# Codes whose detail is the client's own words (the reason it gave when it canceled).
CLIENT_WORDED_CODES = frozenset({"CANCELED"})


def reason_text(reason_code: str, detail: str = "") -> str:
    """The text the owner reads for ``reason_code``: the client's own words for a cancel, else the
    fixed text; a code a pack defines itself gets the pack's text."""
    if reason_code in CLIENT_WORDED_CODES and detail:
        return detail
    return REASON_TEXTS.get(reason_code, PACK_FAILURE_TEXT)
