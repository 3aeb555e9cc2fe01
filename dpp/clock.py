"""The database's clock. Lease times are written and compared with it (``Now()`` in SQL, or
``db_now()`` read once by a periodic pass), so the clocks of the worker and reaper hosts never
decide whether a lease expired."""

from __future__ import annotations

from datetime import datetime

from django.db import connection


def db_now() -> datetime:
    """The database's current time (timezone-aware, UTC)."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT statement_timestamp()")
        return cursor.fetchone()[0]
