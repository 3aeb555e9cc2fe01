"""Fault injection for drills. A point fires only when DPP_ENV=test and DPP_FAULT names it; the
process then exits at once (like kill -9: no cleanup, no acknowledgement, no finally blocks)."""

from __future__ import annotations

import logging
import os

from django.conf import settings

logger = logging.getLogger(__name__)

POINTS = ("mid_execution", "after_claim", "after_upload", "after_commit")


def fault_point(name: str) -> None:
    if settings.DPP_FAULT and settings.DPP_FAULT == name:
        logger.warning("fault injected: exiting hard", extra={"fault": name})
        for handler in logging.getLogger().handlers:
            handler.flush()
        os._exit(137)
