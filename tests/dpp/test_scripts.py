"""The scripts `make run` starts with: scripts/preflight.py (the database created when missing,
PostgreSQL and Redis named when they do not answer) and scripts/supervise.sh (a process that dies
is restarted; a stop signal stops it and ends the supervisor). Real processes, real PostgreSQL."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import psycopg

from tests.workers import wait_until

REPO = Path(__file__).resolve().parents[2]
SUPERVISE = str(REPO / "scripts" / "supervise.sh")


def preflight(*args: str, **env: str) -> subprocess.CompletedProcess:
    environment = {**os.environ, **env}
    return subprocess.run([sys.executable, "scripts/preflight.py", *args], cwd=REPO, env=environment,
                          capture_output=True, text=True, timeout=60)


def database_exists(name: str) -> bool:
    with psycopg.connect("postgresql://postgres@127.0.0.1:5432/postgres", connect_timeout=3) as connection:
        return connection.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone() is not None


class TestPreflight:
    def test_creates_the_database_named_by_database_url_once_then_drops_it(self):
        name = f"dpp_preflight_{uuid.uuid4().hex[:8]}"
        url = f"postgres://postgres@127.0.0.1:5432/{name}"
        assert not database_exists(name)
        try:
            first = preflight(DATABASE_URL=url)
            second = preflight(DATABASE_URL=url)

            assert first.returncode == 0, first.stderr
            assert f"database '{name}' created" in first.stdout
            assert second.returncode == 0 and f"database '{name}' exists" in second.stdout
            assert database_exists(name)
        finally:
            dropped = preflight("--drop", DATABASE_URL=url)
        assert dropped.returncode == 0 and not database_exists(name)

    def test_a_postgresql_that_does_not_answer_is_one_line_naming_database_url(self):
        result = preflight(DATABASE_URL="postgres://postgres@127.0.0.1:1/dpp")

        assert result.returncode == 1
        assert "PostgreSQL does not answer at DATABASE_URL=postgres://postgres@127.0.0.1:1/dpp" in result.stderr
        assert "Traceback" not in result.stderr

    def test_a_redis_that_does_not_answer_is_one_line_naming_redis_url(self):
        result = preflight(REDIS_URL="redis://127.0.0.1:1/0")

        assert result.returncode == 1
        assert "Redis does not answer at REDIS_URL=redis://127.0.0.1:1/0" in result.stderr
        assert "Traceback" not in result.stderr

    def test_a_password_is_not_printed(self):
        result = preflight(DATABASE_URL="postgres://postgres:hunter2secret@127.0.0.1:1/dpp")

        assert result.returncode == 1 and "hunter2secret" not in result.stderr + result.stdout


class TestSupervise:
    def test_a_command_that_dies_is_restarted_and_sigterm_stops_both(self, tmp_path):
        marker = tmp_path / "starts"
        command = f"echo $$ >> {marker}; sleep 0.3; exit 3"
        process = subprocess.Popen([SUPERVISE, "demo", "bash", "-c", command], stderr=subprocess.PIPE, text=True,
                                   start_new_session=True)
        try:
            wait_until(lambda: marker.exists() and len(marker.read_text().split()) >= 2, timeout=10,
                       message="a restart")
        finally:
            os.killpg(process.pid, signal.SIGTERM)
            _, stderr = process.communicate(timeout=10)

        assert process.returncode == 0
        pids = marker.read_text().split()
        assert len(set(pids)) == len(pids) >= 2  # a new process each time
        assert "supervise[demo]: exited with status 3" in stderr and "restarting in 1 s" in stderr
        assert "supervise[demo]: stopped" in stderr

    def test_a_stop_signal_to_the_supervisor_alone_stops_its_command_too(self, tmp_path):
        pidfile = tmp_path / "pid"
        process = subprocess.Popen([SUPERVISE, "demo", "bash", "-c", f"echo $$ > {pidfile}; exec sleep 60"],
                                   stderr=subprocess.DEVNULL, start_new_session=True)
        wait_until(lambda: pidfile.exists() and pidfile.read_text().strip(), timeout=10, message="the command")
        child = int(pidfile.read_text())

        process.send_signal(signal.SIGINT)  # Ctrl-C reaching the supervisor only
        process.wait(timeout=10)

        assert process.returncode == 0
        wait_until(lambda: not _alive(child), timeout=5, message="the command to stop")

    def test_a_command_failing_at_start_every_time_is_given_up_with_its_status(self):
        started = time.monotonic()
        result = subprocess.run([SUPERVISE, "demo", "bash", "-c", "exit 7"], capture_output=True, text=True,
                                timeout=30, env={**os.environ, "DPP_SUPERVISE_MAX_QUICK_FAILURES": "2"})

        assert result.returncode == 7
        assert "2 times in a row within 10 s of its start: giving up" in result.stderr
        assert time.monotonic() - started < 10


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False
