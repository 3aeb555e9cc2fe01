#!/usr/bin/env python
"""The local SQS + S3 emulator (moto in server mode) for development, tests and CI.

    python scripts/emulator.py start    # start moto unless one answers already; then ensure
    python scripts/emulator.py ensure   # create the queue (visibility = lease) and the bucket
    python scripts/emulator.py status   # exit 0 if it answers
    python scripts/emulator.py stop     # stop it, only if this helper started it

Endpoints, queue, bucket and lease come from Django settings (dpp/settings.py), so the emulator
always matches what the API and the workers use. With real AWS endpoints (not loopback) it does
nothing. Every wait is bounded; every call has a timeout.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from urllib.parse import urlparse

REPO = Path(__file__).resolve().parent.parent
RUN_DIR = REPO / ".run"
START_TIMEOUT_SECONDS = 20
STOP_TIMEOUT_SECONDS = 10


def _setup_django():
    sys.path.insert(0, str(REPO))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "dpp.settings")
    import django

    django.setup()
    from django.conf import settings

    return settings


def _endpoint(settings) -> tuple[str, int] | None:
    from dpp.env import is_loopback_url

    urls = {settings.AWS.sqs_endpoint, settings.AWS.s3_endpoint}
    if len(urls) != 1 or not all(is_loopback_url(url) for url in urls):
        return None  # real AWS (or two different emulators): not ours to manage
    parsed = urlparse(urls.pop())
    return parsed.hostname or "127.0.0.1", parsed.port or 80


def _answers(host: str, port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://{host}:{port}/moto-api/", timeout=1) as response:
            return response.status == 200
    except OSError:
        return False


def _pidfile(port: int) -> Path:
    return RUN_DIR / f"moto-{port}.pid"


def ensure(settings) -> None:
    from dpp.aws import s3_client, sqs_client

    name = settings.CELERY_BROKER_TRANSPORT_OPTIONS.get("queue_name_prefix", "") + settings.DPP_QUEUE_NAME
    visibility = str(settings.DPP_LEASE_SECONDS)
    sqs = sqs_client()
    url = sqs.create_queue(QueueName=name, Attributes={"VisibilityTimeout": visibility})["QueueUrl"]
    sqs.set_queue_attributes(QueueUrl=url, Attributes={"VisibilityTimeout": visibility})
    s3 = s3_client()
    try:
        s3.create_bucket(Bucket=settings.DPP_RESULT_BUCKET)
    except s3.exceptions.BucketAlreadyOwnedByYou:
        pass
    print(f"emulator ready: queue {name} (visibility {visibility} s), bucket {settings.DPP_RESULT_BUCKET}")


def start(settings) -> int:
    endpoint = _endpoint(settings)
    if endpoint is None:
        print("AWS endpoints are not on loopback: using real AWS, no emulator started")
        return 0
    host, port = endpoint
    if _answers(host, port):
        print(f"emulator already answering on {host}:{port}; reusing it")
        ensure(settings)
        return 0
    RUN_DIR.mkdir(exist_ok=True)
    log = open(RUN_DIR / f"moto-{port}.log", "ab")  # noqa: SIM115 - handed to the child process
    binary = Path(sys.executable).parent / "moto_server"
    process = subprocess.Popen([str(binary), "-H", host, "-p", str(port)], stdout=log, stderr=subprocess.STDOUT,
                               start_new_session=True, cwd=REPO)
    _pidfile(port).write_text(str(process.pid))
    deadline = time.monotonic() + START_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        if _answers(host, port):
            print(f"emulator started on {host}:{port} (pid {process.pid})")
            ensure(settings)
            return 0
        if process.poll() is not None:
            break
        time.sleep(0.2)
    tail = (RUN_DIR / f"moto-{port}.log").read_text(errors="replace")[-2000:]
    print(f"emulator did not answer within {START_TIMEOUT_SECONDS} s:\n{tail}", file=sys.stderr)
    return 1


def _is_moto(pid: int) -> bool:
    try:
        return b"moto_server" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False


def stop(settings) -> int:
    endpoint = _endpoint(settings)
    if endpoint is None:
        return 0
    pidfile = _pidfile(endpoint[1])
    if not pidfile.exists():
        print("no emulator started by this helper: nothing to stop")
        return 0
    pid = int(pidfile.read_text().strip() or 0)
    pidfile.unlink()
    if not pid or not _is_moto(pid):
        print(f"pid {pid} is not a moto server any more: nothing to stop")
        return 0
    os.killpg(pid, signal.SIGTERM)
    deadline = time.monotonic() + STOP_TIMEOUT_SECONDS
    while time.monotonic() < deadline and _is_moto(pid):
        time.sleep(0.1)
    if _is_moto(pid):
        os.killpg(pid, signal.SIGKILL)
    print(f"emulator (pid {pid}) stopped")
    return 0


def status(settings) -> int:
    endpoint = _endpoint(settings)
    if endpoint is None:
        print("real AWS")
        return 0
    up = _answers(*endpoint)
    print(f"emulator on {endpoint[0]}:{endpoint[1]} is {'up' if up else 'down'}")
    return 0 if up else 1


def main(argv: list[str]) -> int:
    commands = {"start": start, "stop": stop, "status": status, "ensure": lambda s: ensure(s) or 0}
    if len(argv) != 2 or argv[1] not in commands:
        print(__doc__)
        return 2
    return commands[argv[1]](_setup_django())


if __name__ == "__main__":
    sys.exit(main(sys.argv))
