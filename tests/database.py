"""Test helpers for the database connection."""

from __future__ import annotations

import contextlib

from django.db import connection


@contextlib.contextmanager
def postgres_unreachable():
    """This thread's connection points at a port where nothing listens, then is restored."""
    saved = {"HOST": connection.settings_dict["HOST"], "PORT": connection.settings_dict["PORT"]}
    connection.close()
    connection.settings_dict.update(HOST="127.0.0.1", PORT="1")  # nothing listens on port 1
    try:
        yield
    finally:
        connection.close()
        connection.settings_dict.update(saved)
