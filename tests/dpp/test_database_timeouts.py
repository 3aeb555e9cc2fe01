"""API processes bound statements, lock waits and idle transactions on their PostgreSQL
connections; workers and commands keep the server's defaults. Read back from PostgreSQL itself."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.workers import database_url

REPO = Path(__file__).resolve().parent.parent.parent
SHOW = """
import django
django.setup()
from django.db import connection
values = []
with connection.cursor() as cursor:
    for name in ("statement_timeout", "lock_timeout", "idle_in_transaction_session_timeout"):
        cursor.execute(f"SHOW {name}")
        values.append(cursor.fetchone()[0])
print(*values)
"""


def shown(**env) -> list[str]:
    base = {k: v for k, v in os.environ.items() if k != "DPP_API_PROCESS"}
    result = subprocess.run([sys.executable, "-c", SHOW], cwd=REPO, capture_output=True, text=True, timeout=60,
                            env={**base, "DJANGO_SETTINGS_MODULE": "dpp.settings", "DATABASE_URL": database_url(),
                                 **env})
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout.split()


@pytest.mark.django_db
class TestApiConnectionTimeouts:
    def test_an_api_process_sets_the_three_timeouts(self):
        assert shown(DPP_API_PROCESS="true") == ["5s", "2s", "10s"]

    def test_they_are_settings(self):
        assert shown(DPP_API_PROCESS="true", DPP_API_STATEMENT_TIMEOUT_MS="1500", DPP_API_LOCK_TIMEOUT_MS="700",
                     DPP_API_IDLE_IN_TRANSACTION_TIMEOUT_MS="30000") == ["1500ms", "700ms", "30s"]

    def test_a_worker_or_command_keeps_the_server_defaults(self):
        assert shown() == ["0", "0", "0"]

    def test_the_wsgi_entry_point_marks_its_process_as_the_api(self):
        script = "import dpp.wsgi, os; print(os.environ['DPP_API_PROCESS'])"
        base = {k: v for k, v in os.environ.items() if k != "DPP_API_PROCESS"}
        result = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True,
                                timeout=60, env=base)
        assert result.returncode == 0, result.stderr[-2000:]
        assert result.stdout.strip() == "true"


@pytest.mark.django_db
def test_every_connection_has_tcp_keepalives_and_a_user_timeout():
    """A database host that vanishes without closing its sockets is noticed in seconds (the
    worker's retry budget then applies), not after minutes of TCP retransmission."""
    from django.db import connection

    connection.ensure_connection()
    parameters = connection.connection.info.get_parameters()
    assert {name: parameters.get(name) for name in ("keepalives", "keepalives_idle", "keepalives_interval",
                                                    "keepalives_count", "tcp_user_timeout")} == {
        "keepalives": "1", "keepalives_idle": "10", "keepalives_interval": "5", "keepalives_count": "3",
        "tcp_user_timeout": "15000"}
