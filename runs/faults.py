"""Fault injection for drills. A point fires only when DPP_ENV=test and DPP_FAULT names it; the
process then exits at once (like kill -9: no cleanup, no acknowledgement, no finally blocks).

Tests in one process can also run an action at a point (``fault_hook``), to inject a race there:
another actor (a cancel, a reaper) moves the run exactly when the worker reaches that point."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from django.conf import settings

logger = logging.getLogger(__name__)

POINTS = ("before_lease_claim", "mid_execution", "before_finalize_claim", "after_claim", "after_upload",
          "after_commit")

_hooks: dict[str, Callable[[], None]] = {}


def fault_point(name: str) -> None:
    hook = _hooks.get(name)
    if hook is not None:
        hook()
    if settings.DPP_FAULT and settings.DPP_FAULT == name:
        logger.warning("fault injected: exiting hard", extra={"fault": name})
        for handler in logging.getLogger().handlers:
            handler.flush()
        os._exit(137)


@contextmanager
def fault_hook(name: str, action: Callable[[], None]) -> Iterator[None]:
    """Tests only: run ``action`` when this process reaches the point ``name``."""
    if name not in POINTS:
        raise ValueError(f"unknown fault point {name!r}; known: {POINTS}")
    _hooks[name] = action
    try:
        yield
    finally:
        _hooks.pop(name, None)
