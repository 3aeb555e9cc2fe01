"""Django's PostgreSQL backend, with the connection health check skipped while it is redundant.

With ``CONN_HEALTH_CHECKS`` Django sends ``SELECT 1`` before the first query of every request on
a persistent connection. Under load that is one extra round trip per request, as costly as the
detail GET's own query. Here a connection that ended a request without a database error less
than ``HEALTH_CHECK_SKIP_SECONDS`` ago is taken as healthy; an idle connection is still checked
as Django does. The window in which a dead connection goes unnoticed is that second: its query
then fails, the API answers 503 with ``Retry-After`` (``dpp.problems``) and Django, seeing the
error at the end of the request, checks and replaces the connection.
"""

from __future__ import annotations

import time

from django.core.signals import request_finished
from django.db import connections
from django.db.backends.postgresql import base

HEALTH_CHECK_SKIP_SECONDS = 1.0


class DatabaseWrapper(base.DatabaseWrapper):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.healthy_at = float("-inf")  # monotonic time a request last ended on it without error

    def close_if_health_check_failed(self):
        if (self.connection is not None and not self.health_check_done
                and time.monotonic() - self.healthy_at < HEALTH_CHECK_SKIP_SECONDS):
            self.health_check_done = True
            return
        super().close_if_health_check_failed()

    def close(self):
        super().close()
        self.healthy_at = float("-inf")


def _stamp_healthy(**kwargs) -> None:
    """At the end of a request: its open connections that saw no error are known good now (one
    that did is checked by Django's own receiver, and reset or closed)."""
    now = time.monotonic()
    for connection in connections.all(initialized_only=True):
        if isinstance(connection, DatabaseWrapper) and connection.connection is not None \
                and not connection.errors_occurred:
            connection.healthy_at = now


request_finished.connect(_stamp_healthy, dispatch_uid="dpp.db.stamp_healthy")
