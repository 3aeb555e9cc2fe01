"""Metrics across real processes: the API under gunicorn with two worker processes and a Celery
worker with two prefork children, each group in prometheus_client's multiprocess mode with its own
directory. One scrape of each after N runs shows exactly N created and N finished (the sums of
several processes, the files a previous start left behind wiped), the held micros equal the
wallets' held balances in PostgreSQL, both scrapes need the token, and no label carries a tenant
id or a raw UUID."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import urllib.error
import urllib.request
import uuid
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path

import pytest
from django.db import connection
from django.utils import timezone
from prometheus_client import CollectorRegistry
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.parser import text_string_to_metric_families

from runs.models import Run
from runs.services import RunSubmission, run_create
from tenants.services import api_key_issue
from tests.drills.platform import Process, free_port
from tests.factories import TenantFactory
from tests.runs.helpers import decision_inputs
from tests.workers import REPO, TEST_PACKS, WorkerProcess, database_url, wait_until

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow, pytest.mark.emulator]

BIN = Path(sys.executable).parent
TOKEN = "metrics-test-token-" + uuid.uuid4().hex
N = 10
STALE = 1000  # what a previous start left in the directory; the wipe at start must drop it
EXCERPT = REPO / ".run" / "metrics-scrape-excerpt.txt"
UUID_FRAGMENT = r"[0-9a-fA-F]{8}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{12}"


def http(url: str, *, token: str | None = None, body: dict | None = None, key: str | None = None,
         headers: dict | None = None) -> tuple[int, bytes]:
    request = urllib.request.Request(url, data=json.dumps(body).encode() if body is not None else None,
                                     method="POST" if body is not None else "GET")
    request.add_header("Content-Type", "application/json")
    if token or key:
        request.add_header("Authorization", f"Bearer {token or key}")
    for name, value in (headers or {}).items():
        request.add_header(name, value)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()
    except OSError:
        return 0, b""


def samples(text: str) -> list:
    return [sample for family in text_string_to_metric_families(text) for sample in family.samples]


def total(text: str, name: str, **labels) -> float:
    return sum(s.value for s in samples(text) if s.name == name and all(s.labels.get(k) == v
                                                                         for k, v in labels.items()))


def per_process(directory: Path, name: str) -> dict[int, float]:
    """``name`` summed in each process's own files (to show that several processes contributed)."""
    files = defaultdict(list)
    for path in directory.glob("*.db"):
        files[int(path.stem.rsplit("_", 1)[1])].append(path)
    values = {}
    for pid, paths in files.items():
        with tempfile.TemporaryDirectory() as alone:
            for path in paths:
                shutil.copy(path, alone)
            registry = CollectorRegistry()
            MultiProcessCollector(registry, path=alone)
            values[pid] = sum(s.value for metric in registry.collect() for s in metric.samples if s.name == name)
    return values


def children(pid: int) -> set[int]:
    """Live child processes of ``pid`` (from /proc)."""
    found = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid and fields[0] != "Z":
            found.add(int(stat.parent.name))
    return found


def leave_stale_files(directory: Path) -> None:
    """A process of an earlier start that counted STALE runs created and finished."""
    code = (f"from dpp import metrics; metrics.runs_created.inc({STALE}); "
            "metrics.runs_finished.labels(pack_type='test_slow', status='COMPLETED', reason_code='none')"
            f".inc({STALE})")
    subprocess.run([sys.executable, "-c", code], cwd=REPO, check=True, timeout=60,
                   env={**base_env(), "PROMETHEUS_MULTIPROC_DIR": str(directory)})
    assert list(directory.glob("counter_*.db"))


def base_env() -> dict[str, str]:
    return {**os.environ, "DPP_ENV": "test", "DATABASE_URL": database_url(), "DPP_PACKS": TEST_PACKS}


@pytest.fixture
def metrics_dirs(tmp_path):
    api, worker = tmp_path / "api", tmp_path / "worker"
    api.mkdir()
    worker.mkdir()
    return api, worker


@pytest.fixture
def platform(metrics_dirs):
    api_dir, worker_dir = metrics_dirs
    leave_stale_files(api_dir)
    leave_stale_files(worker_dir)
    queue = f"metrics-{uuid.uuid4().hex[:8]}"
    worker_port, api_port = free_port(), free_port()
    common = {"DPP_METRICS_TOKEN": TOKEN, "DPP_QUEUE_NAME": queue, "DPP_PACKS": TEST_PACKS}
    worker = WorkerProcess(queue_name=queue, concurrency=2, env={
        **common, "PROMETHEUS_MULTIPROC_DIR": str(worker_dir), "DPP_WORKER_METRICS_PORT": str(worker_port)})
    api = Process("api-metrics", [str(BIN / "gunicorn"), "-c", "gunicorn.conf.py", "dpp.wsgi:application",
                                  "-b", f"127.0.0.1:{api_port}", "--workers", "2", "--threads", "1",
                                  "--timeout", "30"],
                  {**base_env(), **common, "PROMETHEUS_MULTIPROC_DIR": str(api_dir)})
    try:
        worker.start()
        api.start()
        wait_until(lambda: http(f"http://127.0.0.1:{api_port}/health")[0] == 200, timeout=30, message="the API")
        yield {"api": f"http://127.0.0.1:{api_port}", "worker": f"http://127.0.0.1:{worker_port}/metrics",
               "api_process": api, "worker_process": worker, "api_dir": api_dir, "worker_dir": worker_dir}
    finally:
        api.stop()
        worker.stop()


def test_one_scrape_of_each_shows_exactly_n_created_and_n_finished(platform, monkeypatch):
    tenant = TenantFactory(balance_micros=10_000_000)
    key = api_key_issue(tenant=tenant, label="metrics").plaintext
    # Runs of another tenant stay QUEUED, so money is held while we scrape: submitted "two hours
    # ago", they are past their queue deadline, which the relay never sends (the outbox pass would
    # refund them; no beat runs here).
    holder = TenantFactory(balance_micros=10_000_000)
    for cap in (30_000, 45_000):
        run_create(tenant=holder, now=timezone.now() - timedelta(hours=2), submission=RunSubmission(
            idempotency_key=uuid.uuid4().hex, payload_hash=uuid.uuid4().hex, pack_type="decision",
            inputs=decision_inputs(), max_cost_micros=cap, timebox_sec=30, min_reliability_score=None, trace_id="t"))
    body = {"pack_type": "test_slow", "inputs": {"seconds": 0.4, "cost_micros": 20_000},
            "reservation": {"max_cost_usd": "0.0500", "timebox_sec": 30}}
    keys = [uuid.uuid4().hex for _ in range(N)]

    def submit(idempotency_key: str) -> int:
        return http(f"{platform['api']}/v1/runs", key=key, body=body,
                    headers={"Idempotency-Key": idempotency_key})[0]

    with ThreadPoolExecutor(max_workers=6) as pool:
        assert list(pool.map(submit, keys)) == [202] * N
    assert submit(keys[0]) == 202  # a replay: the same run, not a new one

    ids = list(Run.objects.filter(tenant=tenant).values_list("pk", flat=True))
    assert len(ids) == N
    wait_until(lambda: Run.objects.filter(pk__in=ids, status=Run.Status.COMPLETED).count() == N, timeout=90,
               message="every run to complete")

    def worker_scrape() -> str:
        status, text = http(platform["worker"], token=TOKEN)
        assert status == 200, text
        return text.decode()

    # The finish is counted in the task's postrun signal, just after the run's commit.
    wait_until(lambda: total(worker_scrape(), "dpp_runs_finished_total") >= N, timeout=20,
               message="the worker's scrape to count every finish")

    status, api_text = http(f"{platform['api']}/metrics", token=TOKEN)
    assert status == 200, api_text
    api_text, worker_text = api_text.decode(), worker_scrape()
    with connection.cursor() as cursor:
        cursor.execute("SELECT SUM(held_micros), SUM(available_micros) FROM billing_wallet")
        held, available = cursor.fetchone()

    # Exactly N, summed over the processes (the stale 1000 of an earlier start wiped).
    assert total(api_text, "dpp_runs_created_total") == N
    assert total(worker_text, "dpp_runs_finished_total") == N
    assert total(worker_text, "dpp_runs_finished_total", pack_type="test_slow", status="COMPLETED",
                 reason_code="none") == N
    assert total(worker_text, "dpp_run_queue_wait_seconds_count") == N
    assert total(worker_text, "dpp_run_execution_seconds_count") == N
    assert total(api_text, "http_server_request_duration_seconds_count", method="POST", route="v1/runs",
                 status_code="202") == N + 1
    # Money and queue gauges are the database's figures at the scrape.
    assert total(api_text, "dpp_ledger_held_usd_micros") == held == 75_000
    assert total(api_text, "dpp_ledger_available_usd_micros") == available
    assert total(api_text, "dpp_runs_queued") == 2
    # Several processes of each group contributed (the parents counted nothing).
    api_counts = per_process(platform["api_dir"], "dpp_runs_created_total")
    worker_counts = per_process(platform["worker_dir"], "dpp_runs_finished_total")
    assert len([v for v in api_counts.values() if v > 0]) == 2, api_counts
    assert len([v for v in worker_counts.values() if v > 0]) == 2, worker_counts
    assert api_counts.get(platform["api_process"].process.pid, 0) == 0
    assert worker_counts.get(platform["worker_process"].process.pid, 0) == 0
    # Without the token: 401 on both.
    assert http(f"{platform['api']}/metrics")[0] == 401
    assert http(platform["worker"])[0] == 401
    assert http(platform["worker"], token="wrong")[0] == 401
    # No label holds a tenant id or a raw UUID.
    for text in (api_text, worker_text):
        for sample in samples(text):
            for label_value in sample.labels.values():
                assert not re.search(UUID_FRAGMENT, label_value), (sample.name, sample.labels)
                assert str(tenant.pk) not in label_value and str(holder.pk) not in label_value
    # A process that dies keeps its counts: kill -9 a gunicorn worker and a prefork child that
    # counted; once their parents have replaced them, the sums have not moved.
    for parent, counts in ((platform["api_process"], api_counts), (platform["worker_process"], worker_counts)):
        victim = max(counts, key=counts.get)
        os.kill(victim, signal.SIGKILL)
        wait_until(lambda parent=parent, victim=victim: victim not in children(parent.process.pid)
                   and len(children(parent.process.pid)) == 2, timeout=30, message="the dead process replaced")
    wait_until(lambda: http(f"{platform['api']}/health")[0] == 200, timeout=30, message="the API")
    status, after = http(f"{platform['api']}/metrics", token=TOKEN)
    assert status == 200 and total(after.decode(), "dpp_runs_created_total") == N
    assert total(worker_scrape(), "dpp_runs_finished_total") == N
    EXCERPT.parent.mkdir(parents=True, exist_ok=True)
    wanted = ("dpp_runs_created_total", "dpp_runs_finished_total{", "dpp_ledger_", "dpp_runs_queued",
              "dpp_run_queue_wait_seconds_count", 'http_server_request_duration_seconds_count{method="POST"')
    EXCERPT.write_text("# API /metrics\n" + "\n".join(
        line for line in api_text.splitlines() if line.startswith(wanted)) + "\n# worker :PORT/metrics\n" + "\n".join(
        line for line in worker_text.splitlines() if line.startswith(wanted) and not line.endswith(" 0.0")) + "\n")
