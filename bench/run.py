"""DPP benchmarks (`make bench`). Prints figures and ratios measured in one run, on one machine.

1. Submission: POST /v1/runs against gunicorn at concurrency 16 for a fixed count (req/s, p50,
   p99), next to PostgreSQL's throughput for one transaction doing the same writes (run row +
   journal + legs + wallet update) at the same concurrency, and the ratio of the two.
2. Execution: end-to-end completed runs per second with one worker (2 processes) on the
   emulator, next to a bare Celery no-op task on the same broker, and the ratio; worker RSS
   per process.

It uses its own database (dpp_bench), its own queues and ports, and cleans up after itself.
Counts are fixed (BENCH_POSTS, BENCH_RUNS); nothing here is a pass/fail test.
"""

from __future__ import annotations

import http.client
import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

BENCH_DB = os.environ.get("BENCH_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/dpp_bench")
PORT = int(os.environ.get("BENCH_PORT", "8765"))
CONCURRENCY = 16
POSTS = int(os.environ.get("BENCH_POSTS", "800"))
RUNS = int(os.environ.get("BENCH_RUNS", "200"))
LATENCY_RUNS = 30
RUN_ID = uuid.uuid4().hex[:6]

os.environ.update({
    "DATABASE_URL": BENCH_DB,
    "DPP_ENV": "test",
    "DPP_QUEUE_NAME": f"dpp-bench-exec-{RUN_ID}",
    "DPP_JSON_LOGS": "true",
    "LOG_LEVEL": "WARNING",
    "DPP_SQS_WAIT_SECONDS": "1",
    "DPP_SQS_POLLING_INTERVAL_MS": "100",
    "DJANGO_SETTINGS_MODULE": "dpp.settings",
})

BODY = {
    "pack_type": "decision",
    "inputs": {
        "question": "Which database for the ledger?",
        "options": [{"id": "pg", "label": "PostgreSQL", "scores": {"cost": 9, "ops": 7}},
                    {"id": "my", "label": "MySQL", "scores": {"cost": 8, "ops": 6}}],
        "criteria": [{"id": "cost", "weight": 0.6}, {"id": "ops", "weight": 0.4}],
    },
    "reservation": {"max_cost_usd": "0.0500", "timebox_sec": 30},
}


def log(message: str) -> None:
    print(message, flush=True)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def setup_database() -> tuple[str, str]:
    from bench.common import funded_tenant

    tenant, key = funded_tenant(database_url=BENCH_DB, name=f"bench-{RUN_ID}", micros=9_000_000_000)
    return str(tenant.pk), key


def start_gunicorn() -> subprocess.Popen:
    process = subprocess.Popen(
        [str(Path(sys.executable).parent / "gunicorn"), "dpp.wsgi:application", "-b", f"127.0.0.1:{PORT}",
         "--workers", "2", "--threads", "8", "--timeout", "30", "--log-level", "warning"],
        cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
        # The submissions' messages go to a queue no worker reads: this part measures the API only.
        env={**os.environ, "DPP_QUEUE_NAME": f"dpp-bench-posts-{RUN_ID}"},
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            connection = http.client.HTTPConnection("127.0.0.1", PORT, timeout=2)
            connection.request("GET", "/health")
            if connection.getresponse().status == 200:
                return process
        except OSError:
            time.sleep(0.2)
    raise RuntimeError("gunicorn did not start")


def bench_posts(api_key: str) -> dict:
    payload = json.dumps(BODY).encode()
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    lock = threading.Lock()
    per_thread = POSTS // CONCURRENCY

    def client(_: int) -> None:
        connection = http.client.HTTPConnection("127.0.0.1", PORT, timeout=30)
        for _ in range(per_thread):
            started = time.perf_counter()
            connection.request("POST", "/v1/runs", body=payload, headers={
                "Authorization": f"Bearer {api_key}", "Content-Type": "application/json",
                "Idempotency-Key": uuid.uuid4().hex})
            response = connection.getresponse()
            response.read()
            elapsed = time.perf_counter() - started
            with lock:
                latencies.append(elapsed)
                statuses[response.status] = statuses.get(response.status, 0) + 1

    started = time.perf_counter()
    with ThreadPoolExecutor(CONCURRENCY) as pool:
        list(pool.map(client, range(CONCURRENCY)))
    wall = time.perf_counter() - started
    return {"requests": len(latencies), "req_per_s": len(latencies) / wall, "p50_ms": percentile(latencies, 0.5) * 1000,
            "p99_ms": percentile(latencies, 0.99) * 1000, "statuses": statuses}


def bench_postgres_same_writes(tenant_id: str) -> dict:
    """The floor: one transaction with the same writes as a submission, in plain SQL."""
    import psycopg
    from django.conf import settings

    db = settings.DATABASES["default"]
    dsn = f"host={db['HOST']} port={db['PORT'] or 5432} dbname={db['NAME']} user={db['USER']}"
    with psycopg.connect(dsn) as setup:
        accounts = dict(setup.execute(
            "SELECT kind, id FROM billing_account WHERE tenant_id = %s", [tenant_id]).fetchall())
    per_thread = POSTS // CONCURRENCY

    def worker(_: int) -> None:
        with psycopg.connect(dsn) as connection:
            for _ in range(per_thread):
                run_id = uuid.uuid4()
                with connection.transaction():
                    connection.execute("SELECT 1 FROM billing_wallet WHERE tenant_id = %s FOR UPDATE", [tenant_id])
                    connection.execute(
                        """INSERT INTO runs_run (id, tenant_id, pack_type, inputs, idempotency_key, payload_hash,
                           status, money_state, finalize_stage, version, attempts, reserved_micros,
                           minimum_fee_micros, timebox_sec, trace_id, request_id, result_bucket, result_key,
                           result_sha256, retention_until, error_reason, error_detail, enqueue_attempts,
                           deadline_at, created_at, updated_at)
                           VALUES (%s, %s, 'decision', %s, %s, '', 'QUEUED', 'RESERVED', 'NONE', 0, 0, 50000, 5000,
                           30, 't', '', '', '', '', now() + interval '30 days', '', '', 0, now() + interval '1 hour',
                           now(), now())""",
                        [run_id, tenant_id, json.dumps(BODY["inputs"]), uuid.uuid4().hex])
                    journal_id = connection.execute(
                        """INSERT INTO billing_journal (kind, phase, tenant_id, run_id, memo, created_at)
                           VALUES ('RESERVE', 'RESERVE', %s, %s, '', now()) RETURNING id""",
                        [tenant_id, run_id]).fetchone()[0]
                    connection.execute(
                        "INSERT INTO billing_journalleg (journal_id, account_id, amount_micros) VALUES (%s, %s, -50000), "
                        "(%s, %s, 50000)", [journal_id, accounts["AVAILABLE"], journal_id, accounts["HELD"]])
                    connection.execute(
                        "UPDATE billing_wallet SET available_micros = available_micros - 50000, "
                        "held_micros = held_micros + 50000 WHERE tenant_id = %s", [tenant_id])

    started = time.perf_counter()
    with ThreadPoolExecutor(CONCURRENCY) as pool:
        list(pool.map(worker, range(CONCURRENCY)))
    wall = time.perf_counter() - started
    return {"transactions": per_thread * CONCURRENCY, "tx_per_s": per_thread * CONCURRENCY / wall}


def start_worker(concurrency: int = 2) -> subprocess.Popen:
    (REPO / ".run").mkdir(exist_ok=True)
    log = open(REPO / ".run" / "bench-worker.log", "wb")  # noqa: SIM115 - handed to the child
    return subprocess.Popen(
        [str(Path(sys.executable).parent / "celery"), "-A", "dpp", "worker", "-l", "WARNING", "--concurrency",
         str(concurrency), "-I", "bench.noop", "--without-gossip", "--without-mingle", "--without-heartbeat"],
        cwd=REPO, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )


def stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)


def rss_per_process_mb(parent: subprocess.Popen) -> list[float]:
    out = subprocess.run(["ps", "-o", "rss=", "--ppid", str(parent.pid)], capture_output=True, text=True).stdout
    children = [int(x) / 1024 for x in out.split()]
    own = subprocess.run(["ps", "-o", "rss=", "-p", str(parent.pid)], capture_output=True, text=True).stdout
    return [round(float(own.split()[0]) / 1024, 1)] + [round(c, 1) for c in children] if own.split() else children


def bench_execution() -> dict:
    from django.conf import settings
    from django.utils import timezone

    from bench.noop import noop_done_count, noop_task
    from billing.services import wallet_top_up
    from runs.models import Run
    from runs.packs import pack_get
    from runs.services import RunSubmission, run_create
    from tenants.services import tenant_create

    # A tenant of its own: the submission benchmark left its runs queued on a queue nobody reads.
    tenant = tenant_create(name=f"bench-exec-{RUN_ID}", plan_code="unlimited")
    wallet_top_up(tenant=tenant, amount_micros=1_000_000_000, memo="bench")
    worker = start_worker()
    try:
        time.sleep(6)  # worker start-up, outside the measurement
        rss = rss_per_process_mb(worker)

        inputs = pack_get("decision").validate(BODY["inputs"])  # as the API stores them
        started = time.perf_counter()
        ids = []
        for index in range(RUNS):
            submission = RunSubmission(
                idempotency_key=f"exec-{RUN_ID}-{index}", payload_hash="0" * 64, pack_type="decision",
                inputs=inputs, max_cost_micros=50_000, timebox_sec=30,
                min_reliability_score=None, trace_id=f"bench-{index}")
            ids.append(run_create(tenant=tenant, submission=submission, now=timezone.now()).run.pk)
        deadline = time.monotonic() + 300
        while Run.objects.filter(pk__in=ids, status="COMPLETED").count() < RUNS and time.monotonic() < deadline:
            time.sleep(0.2)
        runs_wall = time.perf_counter() - started
        completed = Run.objects.filter(pk__in=ids, status="COMPLETED").count()

        # Submission-to-claim on an idle worker: runs submitted one at a time, 0.2 s apart.
        latency_ids = []
        for index in range(LATENCY_RUNS):
            submission = RunSubmission(
                idempotency_key=f"lat-{RUN_ID}-{index}", payload_hash="0" * 64, pack_type="decision",
                inputs=inputs, max_cost_micros=50_000, timebox_sec=30,
                min_reliability_score=None, trace_id=f"bench-lat-{index}")
            latency_ids.append(run_create(tenant=tenant, submission=submission, now=timezone.now()).run.pk)
            time.sleep(0.2)
        deadline = time.monotonic() + 60
        while (Run.objects.filter(pk__in=latency_ids, started_at__isnull=False).count() < LATENCY_RUNS
               and time.monotonic() < deadline):
            time.sleep(0.2)
        to_claim = [(started_at - created_at).total_seconds() for created_at, started_at in
                    Run.objects.filter(pk__in=latency_ids, started_at__isnull=False)
                    .values_list("created_at", "started_at")]

        started = time.perf_counter()
        for _ in range(RUNS):
            noop_task.apply_async(kwargs={"bench_id": RUN_ID}, queue=settings.DPP_QUEUE_NAME)
        while noop_done_count(bench_id=RUN_ID) < RUNS and time.perf_counter() - started < 300:
            time.sleep(0.2)
        noop_wall = time.perf_counter() - started
        rss_after = rss_per_process_mb(worker)
    finally:
        stop(worker)
    return {"runs": completed, "runs_per_s": completed / runs_wall, "noop_per_s": RUNS / noop_wall,
            "rss_mb_start": rss, "rss_mb_end": rss_after,
            "to_claim_p50_ms": percentile(to_claim, 0.5) * 1000 if to_claim else float("nan")}


def main() -> None:
    tenant_id, api_key = setup_database()
    log(f"# DPP bench {time.strftime('%Y-%m-%d %H:%M:%S')} on {os.cpu_count()} cores")
    server = start_gunicorn()
    try:
        posts = bench_posts(api_key)
    finally:
        stop(server)
    floor = bench_postgres_same_writes(tenant_id)
    log(f"POST /v1/runs  x{posts['requests']} at concurrency {CONCURRENCY}: {posts['req_per_s']:.1f} req/s, "
        f"p50 {posts['p50_ms']:.1f} ms, p99 {posts['p99_ms']:.1f} ms, statuses {posts['statuses']}")
    log(f"PostgreSQL same writes x{floor['transactions']} at concurrency {CONCURRENCY}: {floor['tx_per_s']:.1f} tx/s")
    log(f"ratio API / PostgreSQL floor: {posts['req_per_s'] / floor['tx_per_s']:.3f}")
    execution = bench_execution()
    log(f"end-to-end decision runs, 1 worker x 2 processes: {execution['runs']} in "
        f"{execution['runs'] / execution['runs_per_s']:.1f} s = {execution['runs_per_s']:.1f} runs/s")
    log(f"submission-to-claim p50: {execution['to_claim_p50_ms']:.1f} ms")
    log(f"bare Celery no-op task on the same broker: {execution['noop_per_s']:.1f} tasks/s")
    log(f"ratio runs / no-op: {execution['runs_per_s'] / execution['noop_per_s']:.3f}")
    log(f"worker RSS MB (parent, children) at start {execution['rss_mb_start']}, after {execution['rss_mb_end']}")


if __name__ == "__main__":
    main()
