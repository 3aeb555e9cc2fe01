"""Schemathesis against the live API (issue 15, item 18): bounded, run by .ci/run after `make test`.

A database of its own (<DATABASE_URL's name>_schemathesis, recreated), migrations, a tenant on the
unlimited plan with $1,000 and a real API key, then gunicorn on a free port, then
``st run <api>/api/schema/`` with that key: every operation, checks ``not_a_server_error`` and
``response_schema_conformance`` (plus status code, content type and headers conformance), a
time budget (SCHEMATHESIS_MAX_SECONDS, 180) and a bounded number of examples per operation
(SCHEMATHESIS_MAX_EXAMPLES, 40). Exits with schemathesis' code. Needs the emulator
(scripts/with_emulator.sh starts it) for the runs it submits.
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
CHECKS = ("not_a_server_error,response_schema_conformance,status_code_conformance,"
          "content_type_conformance,response_headers_conformance")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def fresh_database(url: str) -> str:
    import psycopg

    parts = urlsplit(url)
    name = f"{parts.path.lstrip('/') or 'dpp'}_schemathesis"
    admin = urlunsplit(parts._replace(path="/postgres", scheme="postgresql"))
    with psycopg.connect(admin, autocommit=True, connect_timeout=5) as connection:
        connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        connection.execute(f'CREATE DATABASE "{name}"')
    return urlunsplit(parts._replace(path=f"/{name}"))


def manage(env: dict[str, str], *args: str) -> str:
    result = subprocess.run([sys.executable, "manage.py", *args], cwd=REPO, env=env, capture_output=True, text=True,
                            timeout=300)
    if result.returncode != 0:
        sys.exit(f"manage.py {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")
    return result.stdout


def main() -> int:
    env = {**os.environ, "DPP_ENV": "test", "DPP_JSON_LOGS": "true", "LOG_LEVEL": "WARNING"}
    env["DPP_QUEUE_PREFIX"] = env.get("DPP_QUEUE_PREFIX") or f"schemathesis-{os.getpid()}-"  # queues of its own
    env["DATABASE_URL"] = fresh_database(env.get("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/dpp"))
    manage(env, "migrate", "--noinput")
    created = manage(env, "create_tenant", "schemathesis", "--plan", "unlimited", "--topup-usd", "1000.0000")
    tenant_id = created.strip().rsplit(" ", 1)[-1]
    issued = manage(env, "issue_api_key", tenant_id, "--label", "schemathesis")
    key = re.search(r"dpp_live_\S+", issued).group(0)

    port = free_port()
    log_path = REPO / ".run" / "schemathesis-api.log"
    log_path.parent.mkdir(exist_ok=True)
    with open(log_path, "wb") as log:
        api = subprocess.Popen([str(BIN / "gunicorn"), "dpp.wsgi:application", "--bind", f"127.0.0.1:{port}",
                                "--workers", "1", "--threads", "4", "--timeout", "30"],
                               cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            base = f"http://127.0.0.1:{port}"
            deadline = time.monotonic() + 30
            while True:
                try:
                    with urllib.request.urlopen(f"{base}/health", timeout=2):
                        break
                except OSError:
                    if time.monotonic() > deadline or api.poll() is not None:
                        sys.exit(f"the API did not start:\n{log_path.read_text()[-3000:]}")
                    time.sleep(0.3)
            command = [
                str(BIN / "st"), "run", f"{base}/api/schema/", "--url", base,
                "--header", f"Authorization: Bearer {key}",
                "--checks", CHECKS,
                "--max-examples", os.environ.get("SCHEMATHESIS_MAX_EXAMPLES", "40"),
                "--max-time", os.environ.get("SCHEMATHESIS_MAX_SECONDS", "180"),
                "--request-timeout", "10", "--workers", "2", "--seed", os.environ.get("SCHEMATHESIS_SEED", "15"),
                "--generation-database", "none", "--warnings", "off", "--output-truncate", "true",
            ]
            print("running:", " ".join(c if "Bearer" not in c else "Authorization: Bearer <key>" for c in command),
                  flush=True)
            return subprocess.run(command, cwd=REPO, env=env, timeout=600).returncode
        finally:
            api.terminate()
            try:
                api.wait(timeout=20)
            except subprocess.TimeoutExpired:
                api.kill()


if __name__ == "__main__":
    sys.exit(main())
