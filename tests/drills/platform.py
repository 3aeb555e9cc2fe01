"""A whole DPP platform in real processes for fault drills: its own moto emulator and Redis (so a
drill can stop and restart them), the API under gunicorn, Celery workers and beats, all on the
test database with short timings. Every wait is bounded; everything is stopped at the end."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

from tests.workers import REPO, TEST_PACKS, database_url, wait_until

BIN = Path(sys.executable).parent
LOG_DIR = REPO / ".run" / "drills"

# Short timings so every reaper path runs within seconds.
TIMINGS = {
    "DPP_LEASE_SECONDS": "4",
    "DPP_HEARTBEAT_SECONDS": "1",
    "DPP_REAPER_INTERVAL_SECONDS": "2",
    "DPP_RECONCILE_AFTER_SECONDS": "3",
    "DPP_RECONCILE_INTERVAL_SECONDS": "2",
    "DPP_OUTBOX_INTERVAL_SECONDS": "2",
}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Process:
    def __init__(self, name: str, argv: list[str], env: dict[str, str]):
        LOG_DIR.mkdir(parents=True, exist_ok=True)
        self.name, self.argv, self.env = name, argv, env
        self.log_path = LOG_DIR / f"{name}-{uuid.uuid4().hex[:6]}.log"
        self.process: subprocess.Popen | None = None
        self.stopped_on_purpose = False

    def start(self) -> Process:
        self.started_at = time.monotonic()
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen(self.argv, cwd=REPO, env=self.env, stdout=self._log,
                                        stderr=subprocess.STDOUT, start_new_session=True)
        return self

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def signal(self, signum: int) -> None:
        if self.alive:
            os.killpg(self.process.pid, signum)

    def kill(self) -> None:
        self.stopped_on_purpose = True
        self.signal(signal.SIGKILL)
        if self.process:
            self.process.wait(timeout=10)

    def stop(self, timeout: float = 15) -> None:
        self.stopped_on_purpose = True
        if self.alive:
            self.signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.kill()
        if getattr(self, "_log", None) and not self._log.closed:
            self._log.close()


class Platform:
    def __init__(self, *, worker_env: dict[str, str] | None = None):
        self.tag = uuid.uuid4().hex[:6]
        self.moto_port, self.redis_port, self.api_port = free_port(), free_port(), free_port()
        endpoint = f"http://127.0.0.1:{self.moto_port}"
        self.env = {
            **{k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "DPP_FAULT"))},
            "DPP_ENV": "test",
            "DATABASE_URL": database_url(),
            "REDIS_URL": f"redis://127.0.0.1:{self.redis_port}/0",
            "AWS_ENDPOINT_URL_SQS": endpoint,
            "AWS_ENDPOINT_URL_S3": endpoint,
            "DPP_QUEUE_NAME": f"drill-{self.tag}",
            "DPP_PERIODIC_QUEUE_NAME": f"drill-{self.tag}-periodic",
            "DPP_QUEUE_PREFIX": "",
            "DPP_PACKS": TEST_PACKS,
            "DPP_SQS_WAIT_SECONDS": "1",
            "DPP_SQS_POLLING_INTERVAL_MS": "100",
            "DPP_JSON_LOGS": "true",
            "LOG_LEVEL": "INFO",
            **TIMINGS,
        }
        self.worker_env = worker_env or {}
        self.processes: list[Process] = []
        self.restarts = 0  # workers and beats the supervisor restarted after they died on their own
        self.beat_restarts = 0
        self.moto: Process | None = None
        self.redis: Process | None = None

    # --- lifecycle -------------------------------------------------------------------------------

    def start(self, *, workers: int = 1, beats: int = 1) -> Platform:
        self.start_moto()
        self.start_redis()
        self.manage("sync_periodic_tasks")  # the beat schedule with this platform's short intervals
        self.api = self.spawn("api", [str(BIN / "gunicorn"), "dpp.wsgi:application", "-b",
                                      f"127.0.0.1:{self.api_port}", "--workers", "1", "--threads", "4",
                                      "--timeout", "30"])
        self.relay = self.spawn("relay", [sys.executable, "manage.py", "run_relay"])
        self.workers = [self.start_worker() for _ in range(workers)]
        self.periodic_worker = self.start_periodic_worker()
        self.beats = [self.start_beat() for _ in range(beats)]
        wait_until(lambda: self.http("GET", "/health")[0] == 200, timeout=30, message="the API")
        self._supervising = threading.Event()
        self._supervisor = threading.Thread(target=self._supervise, daemon=True)
        self._supervisor.start()
        return self

    def _supervise(self) -> None:
        """Restart a worker or beat that died on its own, as systemd or compose's restart policy would.

        (kombu's SQS consumer stops the whole worker when the endpoint vanishes mid-poll; see
        docs/RELIABILITY.md.) Workers killed or stopped by a drill stay down."""
        while not self._supervising.wait(0.5):
            # A beat that died is restarted too (as compose's restart policy would), and counted in
            # ``beat_restarts`` so that a drill can tell a beat that survived from one brought back.
            for index, beat in enumerate(list(self.beats)):
                if not beat.alive and not beat.stopped_on_purpose and time.monotonic() - beat.started_at > 3:
                    beat.stopped_on_purpose = True
                    self.restarts += 1
                    self.beat_restarts += 1
                    self.beats[index] = self.start_beat()
            for index, worker in enumerate(list(self.workers)):
                if not worker.alive and not worker.stopped_on_purpose:
                    worker.stopped_on_purpose = True
                    self.restarts += 1
                    try:
                        self.workers[index] = self.start_worker()
                    except AssertionError:
                        pass  # tried again on the next turn
            periodic = self.periodic_worker
            if not periodic.alive and not periodic.stopped_on_purpose:  # the same kombu exit (see above)
                periodic.stopped_on_purpose = True
                self.restarts += 1
                try:
                    self.periodic_worker = self.start_periodic_worker()
                except AssertionError:
                    periodic.stopped_on_purpose = False  # tried again on the next turn

    def stop(self) -> None:
        if hasattr(self, "_supervising"):
            self._supervising.set()
            self._supervisor.join(timeout=10)
        for process in reversed(self.processes):
            process.stop()

    def spawn(self, name: str, argv: list[str], env: dict[str, str] | None = None) -> Process:
        process = Process(name, argv, {**self.env, **(env or {})}).start()
        self.processes.append(process)
        return process

    def manage(self, *args: str) -> str:
        result = subprocess.run([sys.executable, "manage.py", *args], cwd=REPO, env=self.env, capture_output=True,
                                text=True, timeout=60)
        assert result.returncode == 0, result.stderr
        return result.stdout

    def start_moto(self) -> None:
        self.moto = self.spawn("moto", [str(BIN / "moto_server"), "-H", "127.0.0.1", "-p", str(self.moto_port)])
        wait_until(self._moto_answers, timeout=20, message="the emulator")
        subprocess.run([sys.executable, "scripts/emulator.py", "ensure"], cwd=REPO, env=self.env, check=True,
                       capture_output=True, timeout=60)

    def stop_moto(self) -> None:
        self.moto.stop()

    def start_redis(self) -> None:
        self.redis = self.spawn("redis", ["redis-server", "--bind", "127.0.0.1", "--port", str(self.redis_port),
                                          "--save", "", "--appendonly", "no"])
        wait_until(self._redis_answers, timeout=20, message="redis")

    def stop_redis(self) -> None:
        self.redis.stop()

    def start_worker(self, **env) -> Process:
        worker_env = {**self.worker_env, **{k: str(v) for k, v in env.items()}}
        name = f"worker-{len([p for p in self.processes if p.name.startswith('worker')])}"
        worker = self.spawn(name, [str(BIN / "celery"), "-A", "dpp", "worker", "-l", "INFO", "--concurrency", "2",
                                   "-n", f"{name}-{self.tag}@%h", "--without-gossip", "--without-mingle"],
                            env=worker_env)
        wait_until(lambda: b"ready." in worker.log_path.read_bytes() or not worker.alive, timeout=40,
                   message=f"{name} to be ready")
        assert worker.alive, worker.log_text()[-3000:]
        return worker

    def start_periodic_worker(self) -> Process:
        """The worker of the periodic jobs (reaper, reconciler, outbox, retention): its own queue."""
        worker = self.spawn("periodic", [str(BIN / "celery"), "-A", "dpp", "worker", "-l", "INFO", "--concurrency",
                                         "1", "-Q", self.env["DPP_PERIODIC_QUEUE_NAME"], "-n",
                                         f"periodic-{self.tag}@%h", "--without-gossip", "--without-mingle"])
        wait_until(lambda: b"ready." in worker.log_path.read_bytes() or not worker.alive, timeout=40,
                   message="the periodic worker to be ready")
        assert worker.alive, worker.log_text()[-3000:]
        return worker

    def start_beat(self) -> Process:
        index = len([p for p in self.processes if p.name.startswith("beat")])
        return self.spawn(f"beat-{index}", [str(BIN / "celery"), "-A", "dpp", "beat", "-l", "INFO", "-S",
                                             "dpp.beat:DatabaseScheduler",
                                             "--pidfile", str(LOG_DIR / f"beat-{self.tag}-{index}.pid"),
                                             "-s", str(LOG_DIR / f"beat-{self.tag}-{index}.schedule")])

    # --- probes ------------------------------------------------------------------------------------

    def _moto_answers(self) -> bool:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.moto_port}/moto-api/", timeout=1) as response:
                return response.status == 200
        except OSError:
            return False

    def _redis_answers(self) -> bool:
        result = subprocess.run(["redis-cli", "-p", str(self.redis_port), "ping"], capture_output=True, text=True,
                                timeout=5)
        return result.stdout.strip() == "PONG"

    def http(self, method: str, path: str, *, key: str | None = None, body: dict | None = None,
             headers: dict | None = None) -> tuple[int, dict, dict]:
        request = urllib.request.Request(f"http://127.0.0.1:{self.api_port}{path}", method=method,
                                         data=json.dumps(body).encode() if body is not None else None)
        request.add_header("Content-Type", "application/json")
        if key:
            request.add_header("Authorization", f"Bearer {key}")
        for name, value in (headers or {}).items():
            request.add_header(name, value)
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return response.status, json.loads(response.read() or b"{}"), dict(response.headers)
        except urllib.error.HTTPError as error:
            return error.code, json.loads(error.read() or b"{}"), dict(error.headers)

    def submit(self, key: str, body: dict) -> tuple[int, dict, dict]:
        return self.http("POST", "/v1/runs", key=key, body=body, headers={"Idempotency-Key": uuid.uuid4().hex})
