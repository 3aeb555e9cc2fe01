"""DPP benchmarks (`make bench`): one run, one table of figures and ratios, on one machine.

1. The API as the Procfile runs it (gunicorn, 2 processes x 4 threads), 16 connections, fresh
   Idempotency-Keys: POST /v1/runs on one tenant and spread over 16 tenants; PostgreSQL alone
   running the submission's transaction (same statements, same order: the hot wallet row last)
   on one wallet at the same concurrency; GET /v1/runs/{id}, GET /v1/packs and GET /health on
   the same server; their ratios.
2. POST while the SQS endpoint accepts connections and never answers (the API must not care).
3. The reaper's passes with 10^4 and with 10^6 runs in the table (bulk INSERT ... SELECT
   generate_series); EXPLAIN of each pass's query goes to .run/bench-explain.txt.
4. Execution: end-to-end completed runs per second with the relay and one worker (2 processes)
   on the emulator, next to a bare Celery no-op task on the same broker; submission-to-claim
   p50 on an idle worker.

It uses its own database (dpp_bench), its own queues and ports, and cleans up after itself.
Counts are fixed (BENCH_* variables); nothing here is a pass/fail test.
"""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

BENCH_DB = os.environ.get("BENCH_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/dpp_bench")
PORT = int(os.environ.get("BENCH_PORT", "8765"))
CONCURRENCY = 16
POSTS = int(os.environ.get("BENCH_POSTS", "800"))
GETS = int(os.environ.get("BENCH_GETS", "1600"))
RUNS = int(os.environ.get("BENCH_RUNS", "200"))
REAPER_SMALL = int(os.environ.get("BENCH_REAPER_SMALL", "10000"))
REAPER_LARGE = int(os.environ.get("BENCH_REAPER_LARGE", "1000000"))
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
ROWS: list[tuple[str, str]] = []  # the table: (measure, figure)


def log(message: str) -> None:
    print(message, flush=True)


def row(measure: str, figure: str) -> None:
    ROWS.append((measure, figure))
    log(f"  {measure}: {figure}")


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def setup_database():
    from bench.common import funded_tenant

    tenant, key = funded_tenant(database_url=BENCH_DB, name=f"bench-{RUN_ID}", micros=9_000_000_000)
    from billing.services import wallet_top_up
    from tenants.services import api_key_issue, tenant_create

    spread = []
    for index in range(CONCURRENCY):
        other = tenant_create(name=f"bench-{RUN_ID}-{index}", plan_code="unlimited")
        wallet_top_up(tenant=other, amount_micros=1_000_000_000, memo="bench")
        spread.append(api_key_issue(tenant=other, label="bench").plaintext)
    return tenant, key, spread


# --- HTTP load ----------------------------------------------------------------------------------

API_WORKERS = os.environ.get("BENCH_API_WORKERS", "2")
API_THREADS = os.environ.get("BENCH_API_THREADS", "4")


def start_gunicorn(port: int, env: dict | None = None) -> subprocess.Popen:
    """The API as the Procfile runs it: gunicorn.conf.py, 2 processes x 4 threads, metrics in
    multiprocess mode."""
    metrics_dir = REPO / ".run" / f"bench-metrics-{port}"
    metrics_dir.mkdir(parents=True, exist_ok=True)
    process = subprocess.Popen(
        [str(Path(sys.executable).parent / "gunicorn"), "-c", "gunicorn.conf.py", "dpp.wsgi:application",
         "-b", f"127.0.0.1:{port}", "--workers", API_WORKERS, "--threads", API_THREADS, "--timeout", "30",
         "--log-level", "warning", "--no-control-socket"],
        cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
        # The submissions go to a queue no worker reads, and no relay runs: this part measures the API.
        env={**os.environ, "DPP_QUEUE_NAME": f"dpp-bench-posts-{RUN_ID}",
             "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir), **(env or {})},
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            connection.request("GET", "/health")
            if connection.getresponse().status == 200:
                return process
        except OSError:
            time.sleep(0.2)
    raise RuntimeError("gunicorn did not start")


def load(port: int, count: int, request) -> dict:
    """``count`` requests over CONCURRENCY keep-alive connections; ``request(thread)`` gives
    (method, path, body, headers)."""
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    lock = threading.Lock()
    per_thread = count // CONCURRENCY

    def client(thread: int) -> None:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        for _ in range(per_thread):
            method, path, body, headers = request(thread)
            started = time.perf_counter()
            try:
                connection.request(method, path, body=body, headers=headers)
                response = connection.getresponse()
                response.read()
                status = response.status
            except OSError:
                status = 0
                connection.close()
                connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            elapsed = time.perf_counter() - started
            with lock:
                latencies.append(elapsed)
                statuses[status] = statuses.get(status, 0) + 1

    started = time.perf_counter()
    with ThreadPoolExecutor(CONCURRENCY) as pool:
        list(pool.map(client, range(CONCURRENCY)))
    wall = time.perf_counter() - started
    return {"requests": len(latencies), "per_s": len(latencies) / wall, "p50_ms": percentile(latencies, 0.5) * 1000,
            "p95_ms": percentile(latencies, 0.95) * 1000, "p99_ms": percentile(latencies, 0.99) * 1000,
            "statuses": statuses}


def post_request(keys: list[str]):
    payload = json.dumps(BODY).encode()

    def request(thread: int):
        return "POST", "/v1/runs", payload, {
            "Authorization": f"Bearer {keys[thread % len(keys)]}", "Content-Type": "application/json",
            "Idempotency-Key": uuid.uuid4().hex}
    return request


def get_request(path: str, key: str | None):
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    return lambda thread: ("GET", path, None, headers)


def describe(result: dict) -> str:
    return (f"{result['per_s']:.0f} req/s, p50 {result['p50_ms']:.1f} ms, p95 {result['p95_ms']:.1f} ms, "
            f"p99 {result['p99_ms']:.1f} ms, statuses {result['statuses']}")


def bench_api(key: str, spread: list[str]) -> dict:
    server = start_gunicorn(PORT)
    try:
        load(PORT, 160, post_request([key]))  # warm-up: connections, imports, caches
        one = load(PORT, POSTS, post_request([key]))
        many = load(PORT, POSTS, post_request(spread))
        connection = http.client.HTTPConnection("127.0.0.1", PORT, timeout=10)
        connection.request("POST", "/v1/runs", body=json.dumps(BODY), headers={
            "Authorization": f"Bearer {key}", "Content-Type": "application/json", "Idempotency-Key": uuid.uuid4().hex})
        run_id = json.loads(connection.getresponse().read())["run_id"]
        load(PORT, 160, get_request(f"/v1/runs/{run_id}", key))  # warm-up
        detail = load(PORT, GETS, get_request(f"/v1/runs/{run_id}", key))
        packs = load(PORT, GETS, get_request("/v1/packs", key))
        health = load(PORT, GETS, get_request("/health", None))
    finally:
        stop(server)
    return {"one": one, "many": many, "detail": detail, "packs": packs, "health": health}


def bench_postgres_same_transaction(tenant_id: str, *, as_the_api_sends_it: bool = False) -> dict:
    """The floor: PostgreSQL alone writing the submission's rows in one transaction, in the same
    order (run, history row, journal, legs, then the hot wallet's conditional UPDATE), each its
    own statement (the issue's definition). ``as_the_api_sends_it``: the journal, legs and wallet
    UPDATE as the one statement the API now sends (billing.services._RESERVE_SQL)."""
    import psycopg
    from django.conf import settings

    from billing.services import _RESERVE_SQL

    db = settings.DATABASES["default"]
    dsn = f"host={db['HOST']} port={db['PORT'] or 5432} dbname={db['NAME']} user={db['USER']}"
    with psycopg.connect(dsn) as setup:
        accounts = dict(setup.execute(
            "SELECT kind, id FROM billing_account WHERE tenant_id = %s", [tenant_id]).fetchall())
    per_thread = POSTS // CONCURRENCY
    refused = []

    def worker(_: int) -> None:
        with psycopg.connect(dsn) as connection:
            for _ in range(per_thread):
                run_id = uuid.uuid4()
                with connection.transaction():
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
                    connection.execute(
                        """INSERT INTO runs_runevent (run_id, created_at, kind, actor, from_status, to_status,
                           money_state, amount_micros, reason, data)
                           VALUES (%s, now(), 'CREATED', 'api', '', 'QUEUED', 'RESERVED', 50000, '', '{}')""",
                        [run_id])
                    if as_the_api_sends_it:
                        moved = connection.execute(_RESERVE_SQL, {
                            "kind": "RESERVE", "phase": "RESERVE", "tenant_id": tenant_id, "run_id": run_id,
                            "reference": None, "memo": "", "created_at": datetime.now(UTC),
                            "accounts": [accounts["AVAILABLE"], accounts["HELD"]], "amounts": [-50000, 50000],
                            "amount": 50000, "max_active_runs": 100000}).fetchone()[1]
                        if moved != 1:
                            refused.append(run_id)
                        continue
                    journal_id = connection.execute(
                        """INSERT INTO billing_journal (kind, phase, tenant_id, run_id, memo, created_at)
                           VALUES ('RESERVE', 'RESERVE', %s, %s, '', now()) RETURNING id""",
                        [tenant_id, run_id]).fetchone()[0]
                    connection.execute(
                        "INSERT INTO billing_journalleg (journal_id, account_id, amount_micros) VALUES (%s, %s, -50000), "
                        "(%s, %s, 50000)", [journal_id, accounts["AVAILABLE"], journal_id, accounts["HELD"]])
                    moved = connection.execute(
                        "UPDATE billing_wallet SET available_micros = available_micros - 50000, "
                        "held_micros = held_micros + 50000, active_runs = active_runs + 1 "
                        "WHERE tenant_id = %s AND available_micros >= 50000 AND active_runs < 100000",
                        [tenant_id]).rowcount
                    if moved != 1:
                        refused.append(run_id)

    started = time.perf_counter()
    with ThreadPoolExecutor(CONCURRENCY) as pool:
        list(pool.map(worker, range(CONCURRENCY)))
    wall = time.perf_counter() - started
    return {"transactions": per_thread * CONCURRENCY, "tx_per_s": per_thread * CONCURRENCY / wall,
            "refused": len(refused)}


class BlackHole:
    """A TCP endpoint that accepts connections and never answers (a hung SQS)."""

    def __init__(self):
        self.server = socket.socket()
        self.server.bind(("127.0.0.1", 0))
        self.server.listen(256)
        self.port = self.server.getsockname()[1]
        self.held: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                connection, _ = self.server.accept()
            except OSError:
                return
            self.held.append(connection)

    def close(self) -> None:
        self.server.close()
        for connection in self.held:
            connection.close()


def bench_black_holed_sqs(keys: list[str]) -> dict:
    hole = BlackHole()
    port = PORT + 1
    server = start_gunicorn(port, env={"AWS_ENDPOINT_URL_SQS": f"http://127.0.0.1:{hole.port}"})
    try:
        return load(port, POSTS // 2, post_request(keys))
    finally:
        stop(server)
        hole.close()


# --- The reaper at two table sizes ----------------------------------------------------------------

_FILL_SQL = """
INSERT INTO runs_run (id, tenant_id, pack_type, inputs, idempotency_key, payload_hash, status, money_state,
    finalize_stage, version, attempts, reserved_micros, minimum_fee_micros, actual_cost_micros, timebox_sec,
    trace_id, request_id, result_bucket, result_key, result_sha256, retention_until, error_reason,
    error_detail, enqueue_attempts, deadline_at, created_at, updated_at, started_at, finished_at)
SELECT gen_random_uuid(), %(tenant)s, 'decision', '{}'::jsonb, 'fill-' || %(tag)s || '-' || g, '', 'COMPLETED',
       'SETTLED', 'COMMITTED', 3, 1, 50000, 1000, 20000, 30, 'fill', '', 'dpp-results',
       'runs/fill/' || g || '/pack_envelope.json', '', now() + interval '30 days', '', '', 1,
       now() - interval '1 day', now() - interval '1 day', now() - interval '1 day',
       now() - interval '1 day', now() - interval '1 day'
  FROM generate_series(%(start)s, %(stop)s) g
"""


def time_reaper_passes() -> dict:
    from django.utils import timezone

    from runs.reaper import claims_reconcile, outbox_sweep, results_expire, zombies_reap

    passes = {"zombies": zombies_reap, "reconcile": claims_reconcile, "outbox": outbox_sweep,
              "retention": results_expire}
    timings = {}
    for name, run_pass in passes.items():
        samples = []
        for _ in range(7):
            started = time.perf_counter()
            run_pass(now=timezone.now())
            samples.append((time.perf_counter() - started) * 1000)
        timings[name] = statistics.median(samples)
    return timings


def explain_reaper_queries() -> str:
    from django.utils import timezone

    from runs.reaper import reaper_candidate_queries

    out = []
    for name, queryset in reaper_candidate_queries(now=timezone.now()).items():
        out.append(f"-- {name}\n{queryset.explain(analyze=True, buffers=True)}\n")
    return "\n".join(out)


def bench_reaper() -> dict:
    from django.db import connection, transaction

    from runs.models import Run
    from tenants.services import tenant_create

    tenant = tenant_create(name=f"bench-reaper-{RUN_ID}", plan_code="unlimited")
    results = {}
    have = Run.objects.count()
    for target in (REAPER_SMALL, REAPER_LARGE):
        if have < target:
            started = time.perf_counter()
            step = 200_000
            for start in range(have + 1, target + 1, step):
                with transaction.atomic(), connection.cursor() as cursor:
                    # Fixture rows for timing the reaper's queries: the row triggers (the usage
                    # aggregate's, one deferred call per row) are skipped for this transaction
                    # only, or 10^6 rows take half an hour to write.
                    cursor.execute("SET LOCAL session_replication_role = replica")
                    cursor.execute(_FILL_SQL, {"tenant": tenant.pk, "tag": RUN_ID, "start": start,
                                               "stop": min(start + step - 1, target)})
            with connection.cursor() as cursor:
                cursor.execute("ANALYZE runs_run")
            log(f"  (filled runs_run up to {target} rows in {time.perf_counter() - started:.1f} s)")
            have = target
        results[target] = {"rows": Run.objects.count(), "timings": time_reaper_passes()}
        (REPO / ".run").mkdir(exist_ok=True)
        (REPO / ".run" / f"bench-explain-{target}.txt").write_text(explain_reaper_queries())
    return results


# --- Execution -----------------------------------------------------------------------------------

def start_worker(concurrency: int = 2) -> subprocess.Popen:
    (REPO / ".run").mkdir(exist_ok=True)
    log_file = open(REPO / ".run" / "bench-worker.log", "wb")  # noqa: SIM115 - handed to the child
    return subprocess.Popen(
        [str(Path(sys.executable).parent / "celery"), "-A", "dpp", "worker", "-l", "WARNING", "--concurrency",
         str(concurrency), "-I", "bench.noop", "--without-gossip", "--without-mingle", "--without-heartbeat"],
        cwd=REPO, stdout=log_file, stderr=subprocess.STDOUT, start_new_session=True,
    )


def start_relay() -> subprocess.Popen:
    (REPO / ".run").mkdir(exist_ok=True)
    log_file = open(REPO / ".run" / "bench-relay.log", "wb")  # noqa: SIM115 - handed to the child
    return subprocess.Popen([sys.executable, "manage.py", "run_relay"], cwd=REPO, stdout=log_file,
                            stderr=subprocess.STDOUT, start_new_session=True)


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

    # The submission benchmark left its runs pending: put them past their deadline so that the
    # relay leaves them alone (bench only; the outbox pass would fail and refund them).
    Run.objects.filter(status="QUEUED", enqueued_at__isnull=True).update(deadline_at=timezone.now())
    # A tenant of its own.
    tenant = tenant_create(name=f"bench-exec-{RUN_ID}", plan_code="unlimited")
    wallet_top_up(tenant=tenant, amount_micros=1_000_000_000, memo="bench")
    worker = start_worker()
    relay = start_relay()  # the run rows are the outbox: the relay sends them
    try:
        time.sleep(6)  # worker start-up, outside the measurement
        rss = rss_per_process_mb(worker)

        inputs = pack_get("decision").validate(BODY["inputs"])  # as the API stores them

        def submit(name: str):
            submission = RunSubmission(
                idempotency_key=f"{name}-{RUN_ID}", payload_hash="0" * 64, pack_type="decision", inputs=inputs,
                max_cost_micros=50_000, timebox_sec=30, min_reliability_score=None, trace_id=f"bench-{name}")
            return run_create(tenant=tenant, submission=submission, now=timezone.now()).run.pk

        started = time.perf_counter()
        ids = [submit(f"exec-{index}") for index in range(RUNS)]
        deadline = time.monotonic() + 300
        while Run.objects.filter(pk__in=ids, status="COMPLETED").count() < RUNS and time.monotonic() < deadline:
            time.sleep(0.2)
        runs_wall = time.perf_counter() - started
        completed = Run.objects.filter(pk__in=ids, status="COMPLETED").count()

        # Submission-to-claim on an idle worker: runs submitted one at a time, 0.2 s apart.
        latency_ids = []
        for index in range(LATENCY_RUNS):
            latency_ids.append(submit(f"lat-{index}"))
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
        stop(relay)
        stop(worker)
    return {"runs": completed, "runs_per_s": completed / runs_wall, "noop_per_s": RUNS / noop_wall,
            "rss_mb_start": rss, "rss_mb_end": rss_after,
            "to_claim_p50_ms": percentile(to_claim, 0.5) * 1000 if to_claim else float("nan")}


def main() -> None:
    # A fresh database every time: the figures never depend on what an earlier run left behind.
    subprocess.run(["dropdb", "-h", "127.0.0.1", "-U", "postgres", "--if-exists", BENCH_DB.rsplit("/", 1)[1]],
                   capture_output=True, check=False)
    tenant, key, spread = setup_database()
    log(f"# DPP bench {time.strftime('%Y-%m-%d %H:%M:%S')} on {os.cpu_count()} cores, load {os.getloadavg()[0]:.1f}")
    reaper = bench_reaper()  # first, while the table holds no candidate of any pass
    api = bench_api(key, spread)
    floor = bench_postgres_same_transaction(str(tenant.pk))
    floor_api = bench_postgres_same_transaction(str(tenant.pk), as_the_api_sends_it=True)
    # On the 16 tenants: the hot one holds ~1800 active runs by now, over the plan's 1000 (429).
    hole = bench_black_holed_sqs(spread)
    execution = bench_execution()

    log("")
    log("| measure | figure |")
    log("|---|---|")
    one, many = api["one"], api["many"]
    table = [
        (f"POST /v1/runs, one tenant, {CONCURRENCY} connections", describe(one)),
        (f"POST /v1/runs, {CONCURRENCY} tenants", describe(many)),
        (f"PostgreSQL alone, the same transaction on one hot wallet row, {CONCURRENCY} connections",
         f"{floor['tx_per_s']:.0f} tx/s ({floor['transactions']} tx, {floor['refused']} refused)"),
        ("PostgreSQL alone, the same rows in the API's three statements (run, history row, reservation)",
         f"{floor_api['tx_per_s']:.0f} tx/s ({floor_api['transactions']} tx, {floor_api['refused']} refused)"),
        ("**POST ÷ raw PostgreSQL** (goal ≥ 0.5)", f"**{one['per_s'] / floor['tx_per_s']:.2f}** "
                                                  f"(16 tenants: {many['per_s'] / floor['tx_per_s']:.2f}; "
                                                  f"against the API's own statements: "
                                                  f"{one['per_s'] / floor_api['tx_per_s']:.2f})"),
        ("POST p99 ÷ p50 (goal ≤ 4)", f"{one['p99_ms'] / one['p50_ms']:.1f} (16 tenants: "
                                       f"{many['p99_ms'] / many['p50_ms']:.1f})"),
        ("GET /v1/runs/{id}", describe(api["detail"])),
        ("GET /v1/packs (authentication + rate limit only)", describe(api["packs"])),
        ("GET /health (same server, no auth, no database)", describe(api["health"])),
        ("**GET ÷ /health** (goal ≥ 0.5)", f"**{api['detail']['per_s'] / api['health']['per_s']:.2f}** "
                                           f"(packs: {api['packs']['per_s'] / api['health']['per_s']:.2f})"),
        ("POST with SQS accepting and never answering (goal: all 202, p95 < 250 ms)", describe(hole)),
    ]
    small, large = reaper[REAPER_SMALL], reaper[REAPER_LARGE]
    for name in small["timings"]:
        a, b = small["timings"][name], large["timings"][name]
        table.append((f"reaper pass '{name}' (median of 7), {small['rows']} vs {large['rows']} runs "
                      "(goal: larger ≤ 1.5×)", f"{a:.1f} ms vs {b:.1f} ms = {b / a:.2f}×"))
    table += [
        ("end-to-end decision runs (relay + 1 worker × 2 processes)",
         f"{execution['runs']} in {execution['runs'] / execution['runs_per_s']:.1f} s = "
         f"{execution['runs_per_s']:.1f} runs/s"),
        ("bare Celery no-op task, same broker", f"{execution['noop_per_s']:.1f} tasks/s"),
        ("**end-to-end ÷ bare Celery** (goal ≥ 0.8)", f"**{execution['runs_per_s'] / execution['noop_per_s']:.2f}**"),
        ("submission-to-claim p50 (idle worker, one run every 0.2 s)", f"{execution['to_claim_p50_ms']:.1f} ms"),
        ("worker RSS MB (parent, children) at start / after",
         f"{execution['rss_mb_start']} / {execution['rss_mb_end']}"),
    ]
    for measure, figure in table:
        log(f"| {measure} | {figure} |")
    log("")
    log(f"EXPLAIN ANALYZE of each reaper pass's query: .run/bench-explain-{REAPER_SMALL}.txt and "
        f".run/bench-explain-{REAPER_LARGE}.txt")


if __name__ == "__main__":
    main()
