#!/usr/bin/env python
"""The local SQS + S3 emulator (moto in server mode) for development, tests and CI.

    python scripts/emulator.py start    # start moto unless one answers already; then ensure
    python scripts/emulator.py ensure   # create the queue (visibility = lease) and the bucket
    python scripts/emulator.py status   # "up" and exit 0, or "down" and exit 1
    python scripts/emulator.py stop     # stop it, only if this helper started it

Endpoints, queue, bucket and lease come from Django settings (dpp/settings.py), so the emulator
always matches what the API and the workers use. With real AWS endpoints (not loopback) start,
stop and status do nothing. Every wait is bounded and every call has a timeout.

Ownership: a server this helper starts is recorded in ``.run/moto-PORT.pid`` (``DPP_RUN_DIR``
overrides the directory) with its pid and its owner, ``DPP_EMULATOR_OWNER`` (a pid: the wrapper
scripts in scripts/ set it to their own). ``stop`` with an owner set stops only that owner's
server, so `make test` run beside `make run` never stops the server `make run` started; ``stop``
without an owner (an operator's `make emulator-stop`) stops any server this helper started. A
server whose owner process is gone is adopted by the next ``start`` that reuses it. A server
this helper did not start is never stopped.
"""

from __future__ import annotations

import fcntl
import os
import signal
import subprocess
import sys
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlparse

REPO = Path(__file__).resolve().parent.parent
RUN_DIR = Path(os.environ.get("DPP_RUN_DIR") or REPO / ".run")
OWNER = os.environ.get("DPP_EMULATOR_OWNER", "")
START_TIMEOUT_SECONDS = 20
STOP_TIMEOUT_SECONDS = 10
LOCK_TIMEOUT_SECONDS = START_TIMEOUT_SECONDS + STOP_TIMEOUT_SECONDS + 5


def _setup_django():
    sys.path.insert(0, str(REPO))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "dpp.settings")
    import django

    django.setup()
    from django.conf import settings

    return settings


def _emulators(settings) -> list[str] | None:
    """Base URLs (scheme://host:port) of the emulators to manage; None when AWS is real."""
    from dpp.env import is_loopback_url

    urls = {settings.AWS.sqs_endpoint, settings.AWS.s3_endpoint}
    loopback = {url for url in urls if is_loopback_url(url)}
    if not loopback:
        return None
    if loopback != urls:
        raise SystemExit(f"one AWS endpoint is on loopback and the other is not ({sorted(map(str, urls))}): "
                         "point both at the emulator, or unset both for real AWS")
    return sorted({f"{urlparse(url).scheme}://{urlparse(url).netloc}" for url in loopback})


def _host_port(base_url: str) -> tuple[str, int]:
    parsed = urlparse(base_url)
    return parsed.hostname or "127.0.0.1", parsed.port or (443 if parsed.scheme == "https" else 80)


def _answers(base_url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{base_url}/moto-api/", timeout=1) as response:
            return response.status == 200
    except OSError:
        return False


def _pidfile(port: int) -> Path:
    return RUN_DIR / f"moto-{port}.pid"


def _read_pidfile(port: int) -> tuple[int, str] | None:
    """(pid, owner) of the server this helper started on ``port``, or None."""
    try:
        lines = _pidfile(port).read_text().splitlines()
        return int(lines[0]), (lines[1] if len(lines) > 1 else "")
    except (OSError, ValueError, IndexError):
        return None


def _write_pidfile(port: int, pid: int, owner: str) -> None:
    _pidfile(port).write_text(f"{pid}\n{owner}\n")


def _command_line(pid: int) -> list[str]:
    if Path("/proc/self").exists():
        try:
            return Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
        except OSError:
            return []
    try:  # no /proc (macOS): ask ps
        out = subprocess.run(["ps", "-o", "command=", "-p", str(pid)], capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.TimeoutExpired):
        return []
    return out.stdout.split()


def _is_our_moto(pid: int, port: int) -> bool:
    """Whether ``pid`` is still a moto_server on ``port`` (and not a recycled pid)."""
    args = _command_line(pid)
    return (any(arg.endswith("moto_server") for arg in args) and "-p" in args[:-1]
            and args[args.index("-p") + 1] == str(port))


def _process_alive(pid_text: str) -> bool:
    try:
        os.kill(int(pid_text), 0)
    except (ValueError, ProcessLookupError):
        return False
    except PermissionError:
        return True
    return True


@contextmanager
def _locked(port: int):
    """One start or stop per port at a time, so two concurrent starts never race for the port."""
    RUN_DIR.mkdir(parents=True, exist_ok=True)
    with open(RUN_DIR / f"moto-{port}.lock", "w") as handle:
        deadline = time.monotonic() + LOCK_TIMEOUT_SECONDS
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise SystemExit(f"another emulator helper holds {handle.name}") from None
                time.sleep(0.1)
        yield  # the lock goes with the file (and with this process, if it dies)


def _signal_group(pid: int, signum: int) -> None:
    try:
        if os.getpgid(pid) == pid:  # started in its own session by _start_one
            os.killpg(pid, signum)
        else:
            os.kill(pid, signum)
    except ProcessLookupError:
        pass


def _terminate(pid: int, port: int) -> None:
    _signal_group(pid, signal.SIGTERM)
    deadline = time.monotonic() + STOP_TIMEOUT_SECONDS
    while time.monotonic() < deadline and _is_our_moto(pid, port):
        time.sleep(0.1)
    if _is_our_moto(pid, port):
        _signal_group(pid, signal.SIGKILL)


def _start_one(base_url: str) -> bool:
    host, port = _host_port(base_url)
    with _locked(port):
        record = _read_pidfile(port)
        if _answers(base_url):
            if record and _is_our_moto(record[0], port) and record[1] and not _process_alive(record[1]):
                _write_pidfile(port, record[0], OWNER)  # its owner is gone: adopt it
                print(f"emulator on {base_url} (pid {record[0]}) lost its owner {record[1]}: adopting it")
            else:
                print(f"emulator already answering on {base_url}: reusing it")
            return True
        if record and _is_our_moto(record[0], port):
            _terminate(record[0], port)  # ours but not answering (the lock rules out "still starting"): hung
        log_path = RUN_DIR / f"moto-{port}.log"
        binary = Path(sys.executable).parent / "moto_server"
        with open(log_path, "ab") as log:
            process = subprocess.Popen([str(binary), "-H", host, "-p", str(port)], stdin=subprocess.DEVNULL,
                                       stdout=log, stderr=subprocess.STDOUT, start_new_session=True, cwd=REPO)
        _write_pidfile(port, process.pid, OWNER)  # at once, so a helper killed while waiting leaves no orphan
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        while time.monotonic() < deadline and process.poll() is None:
            if _answers(base_url):
                print(f"emulator started on {base_url} (pid {process.pid}, log {log_path})")
                return True
            time.sleep(0.2)
        if process.poll() is None:
            _terminate(process.pid, port)
        _pidfile(port).unlink(missing_ok=True)
    tail = log_path.read_text(errors="replace")[-2000:]
    print(f"emulator did not answer on {base_url} within {START_TIMEOUT_SECONDS} s; log tail:\n{tail}",
          file=sys.stderr)
    return False


def _stop_one(base_url: str) -> None:
    _, port = _host_port(base_url)
    with _locked(port):
        record = _read_pidfile(port)
        if record is None:
            print(f"no emulator started by this helper on {base_url}: nothing to stop")
            return
        pid, owner = record
        if OWNER and owner != OWNER:
            print(f"emulator on {base_url} (pid {pid}) belongs to another run (owner {owner or 'none'}): leaving it")
            return
        if _is_our_moto(pid, port):
            _terminate(pid, port)
            print(f"emulator on {base_url} (pid {pid}) stopped")
        else:
            print(f"emulator pid {pid} on {base_url} is gone already")
        _pidfile(port).unlink(missing_ok=True)


def ensure(settings) -> int:
    """Create the queues (runs, periodic jobs, webhooks) and the bucket, or bring an existing
    queue's visibility to the lease."""
    from dpp.aws import s3_client, sqs_client

    prefix = settings.CELERY_BROKER_TRANSPORT_OPTIONS.get("queue_name_prefix", "")
    names = [prefix + settings.DPP_QUEUE_NAME, prefix + settings.DPP_PERIODIC_QUEUE_NAME,
             prefix + settings.DPP_WEBHOOK_QUEUE_NAME]
    visibility = str(settings.DPP_LEASE_SECONDS)
    sqs = sqs_client()
    for name in names:
        try:
            url = sqs.get_queue_url(QueueName=name)["QueueUrl"]
            # kombu sets the visibility only when it creates a queue: an existing one keeps its own.
            sqs.set_queue_attributes(QueueUrl=url, Attributes={"VisibilityTimeout": visibility})
        except sqs.exceptions.QueueDoesNotExist:
            sqs.create_queue(QueueName=name, Attributes={"VisibilityTimeout": visibility})
    name = ", ".join(names)
    s3 = s3_client()
    bucket = settings.DPP_RESULT_BUCKET
    location = {} if settings.AWS.region == "us-east-1" else {
        "CreateBucketConfiguration": {"LocationConstraint": settings.AWS.region}}
    try:
        s3.create_bucket(Bucket=bucket, **location)
    except s3.exceptions.BucketAlreadyOwnedByYou:
        pass
    print(f"emulator ready: queues {name} (visibility {visibility} s), bucket {bucket}")
    return 0


def start(settings) -> int:
    emulators = _emulators(settings)
    if emulators is None:
        print("AWS endpoints are not on loopback: real AWS, no emulator to start")
        return 0
    if not all([_start_one(base_url) for base_url in emulators]):
        return 1
    return ensure(settings)


def stop(settings) -> int:
    for base_url in _emulators(settings) or []:
        _stop_one(base_url)
    return 0


def status(settings) -> int:
    emulators = _emulators(settings)
    if emulators is None:
        print("real AWS: no emulator")
        return 0
    up = all([_answers(base_url) for base_url in emulators])
    print(f"emulator on {', '.join(emulators)}: {'up' if up else 'down'}")
    return 0 if up else 1


def main(argv: list[str]) -> int:
    commands = {"start": start, "stop": stop, "status": status, "ensure": ensure}
    if len(argv) != 2 or argv[1] not in commands:
        print(__doc__, file=sys.stderr)
        return 2
    settings = _setup_django()
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        return commands[argv[1]](settings)
    except (BotoCoreError, ClientError) as error:
        print(f"emulator {argv[1]}: {error}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
