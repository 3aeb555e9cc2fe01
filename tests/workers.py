"""Real Celery worker processes for tests: started against the test database and a queue of
their own on the emulator, controlled with signals (SIGTERM, SIGKILL) like an operator would."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

from django.conf import settings
from django.db import connection

from dpp.aws import sqs_client

REPO = Path(__file__).resolve().parent.parent
LOG_DIR = REPO / ".run" / "test-workers"
TEST_PACKS = "runs.packs.decision.DecisionPack,tests.packs.SlowPack,tests.packs.EchoPack"


def database_url() -> str:
    db = connection.settings_dict
    auth = db["USER"] + (f":{db['PASSWORD']}" if db["PASSWORD"] else "")
    return f"postgres://{auth}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"


def queue_url_for(queue_name: str) -> str:
    prefix = settings.CELERY_BROKER_TRANSPORT_OPTIONS["queue_name_prefix"]
    return sqs_client().create_queue(QueueName=f"{prefix}{queue_name}")["QueueUrl"]


class WorkerProcess:
    """``celery -A dpp worker`` in its own process group. ``env`` overrides the environment."""

    def __init__(self, *, queue_name: str, env: dict[str, str] | None = None, concurrency: int = 2,
                 name: str | None = None, queues: list[str] | None = None, consume: str | None = None,
                 relay: bool | None = None):
        self.queue_name = queue_name
        # -Q: the queues it consumes (the webhook worker's, the periodic worker's); default: the
        # default queue. ``consume`` names a single one.
        self.queues = queues or ([consume] if consume else None)
        self.name = name or f"w{uuid.uuid4().hex[:6]}"
        self.concurrency = concurrency
        # A worker of the run queue comes with a relay (manage.py run_relay), as in the Procfile:
        # submitted runs reach the queue only through one (the request does no broker I/O).
        # Several relays at once are safe (SKIP LOCKED). ``relay=False`` when the test runs its own.
        self.with_relay = (self.queues is None) if relay is None else relay
        self.relay: RelayProcess | None = None
        self._env_overrides = dict(env or {})
        self.env = {
            **os.environ,
            "DPP_ENV": "test",
            "DATABASE_URL": database_url(),
            "DPP_QUEUE_NAME": queue_name,
            "DPP_PACKS": TEST_PACKS,
            "DPP_SQS_WAIT_SECONDS": "1",
            "DPP_SQS_POLLING_INTERVAL_MS": "100",
            "DPP_JSON_LOGS": "true",
            "LOG_LEVEL": "INFO",
            **(env or {}),
        }
        LOG_DIR.mkdir(parents=True, exist_ok=True)
        self.log_path = LOG_DIR / f"{self.name}.log"
        self.process: subprocess.Popen | None = None

    def start(self, *, timeout: float = 40.0) -> WorkerProcess:
        lease = self.env.get("DPP_LEASE_SECONDS", str(settings.DPP_LEASE_SECONDS))
        # The visibility timeout is set when a queue is created; set it explicitly to the lease.
        for name in self.queues or [self.queue_name]:
            sqs_client().set_queue_attributes(QueueUrl=queue_url_for(name), Attributes={"VisibilityTimeout": lease})
        if self.with_relay and self.relay is None:
            self.relay = RelayProcess(queue_name=self.queue_name, env=self._env_overrides, name=f"{self.name}-relay",
                                      relay=False).start()
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen(
            [str(Path(sys.executable).parent / "celery"), "-A", "dpp", "worker", "-l", "INFO",
             "--concurrency", str(self.concurrency), "-n", f"{self.name}@%h",
             "--without-heartbeat", "--without-gossip", "--without-mingle",
             *(["-Q", ",".join(self.queues)] if self.queues else [])],
            cwd=REPO, env=self.env, stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"worker exited at start:\n{self.log_tail()}")
            if b"ready." in self.log_path.read_bytes():
                return self
            time.sleep(0.2)
        self.kill()
        raise RuntimeError(f"worker not ready within {timeout} s:\n{self.log_tail()}")

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:])

    def kill(self) -> None:
        """kill -9 of the whole worker (parent and pool children), and of its relay."""
        if self.process and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)
        self._close_log()
        if self.relay is not None:
            self.relay.kill()
            self.relay = None

    def stop(self, *, timeout: float = 20.0) -> None:
        if self.process and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=10)
        self._close_log()
        if self.relay is not None:
            self.relay.stop(timeout=timeout)
            self.relay = None

    def _close_log(self) -> None:
        log = getattr(self, "_log", None)
        if log and not log.closed:
            log.close()


class RelayProcess(WorkerProcess):
    """``manage.py run_relay`` (runs/relay.py) with the same environment as the workers: it sends
    the runs the tests submit to the workers' queue."""

    def start(self, *, timeout: float = 40.0) -> RelayProcess:
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen(
            [sys.executable, "manage.py", "run_relay", "--poll-seconds", "0.2"],
            cwd=REPO, env=self.env, stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"relay exited at start:\n{self.log_tail()}")
            if b"relay started" in self.log_path.read_bytes():
                return self
            time.sleep(0.2)
        self.kill()
        raise RuntimeError(f"relay not ready within {timeout} s:\n{self.log_tail()}")


def wait_until(predicate, *, timeout: float, interval: float = 0.25, message: str = "condition"):
    """Poll ``predicate`` until it returns a truthy value, bounded by ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {message}")
        time.sleep(interval)
