"""The worker for real: `celery worker` processes on the emulator's SQS, the test database,
S3 receipts, heartbeats, kill -9 and the timebox. Exact micros throughout."""

from __future__ import annotations

import json
import re
import time
import uuid
from datetime import datetime

import pytest
from django.core.management import call_command
from django.test import override_settings
from django.utils import timezone

from billing.models import Wallet
from runs import storage
from runs.models import Run, RunEvent
from runs.reaper import zombies_reap
from tenants.services import api_key_issue
from tests.factories import TenantFactory
from tests.runs.helpers import new_key, post_run, run_body
from tests.workers import TEST_PACKS, RelayProcess, WorkerProcess, wait_until

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow, pytest.mark.emulator]

INITIAL_MICROS = 10_000_000


@pytest.fixture
def queue_name():
    return f"dpp-runs-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def test_settings(queue_name):
    with override_settings(DPP_QUEUE_NAME=queue_name, DPP_PACKS=TEST_PACKS.split(",")):
        yield


@pytest.fixture
def client_and_tenant(test_settings):
    from rest_framework.test import APIClient

    tenant = TenantFactory(balance_micros=INITIAL_MICROS)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {api_key_issue(tenant=tenant).plaintext}")
    return client, tenant


@pytest.fixture
def workers(queue_name):
    started: list[WorkerProcess] = []

    def start(**env) -> WorkerProcess:
        if not started:  # one relay sends the submitted runs to the queue
            started.append(RelayProcess(queue_name=queue_name, name=f"relay-{uuid.uuid4().hex[:6]}").start())
        worker = WorkerProcess(queue_name=queue_name, env={k: str(v) for k, v in env.items()}, relay=False).start()
        started.append(worker)
        return worker

    yield start
    for worker in started:
        worker.stop()


def submit(client, body) -> Run:
    response = post_run(client, body, key=new_key())
    assert response.status_code == 202, response.content
    return Run.objects.get(pk=response.json()["run_id"])


def slow_body(seconds: float, *, cost_micros: int = 20_000, fail: bool = False, cap: str = "0.0500",
              timebox: int = 30) -> dict:
    return {"pack_type": "test_slow", "inputs": {"seconds": seconds, "cost_micros": cost_micros, "fail": fail},
            "reservation": {"max_cost_usd": cap, "timebox_sec": timebox}}


def terminal(run_ids):
    return Run.objects.filter(pk__in=run_ids, status__in=Run.TERMINAL_STATUSES).count() == len(run_ids)


def ledger_is_green():
    try:
        call_command("check_ledger")
    except SystemExit as exit_:
        raise AssertionError(f"check_ledger failed with {exit_.code}") from None
    return True


def received_count(worker: WorkerProcess, run_id) -> int:
    """How many times the worker started the task for this run (each delivery logs once)."""
    return sum(1 for line in worker.log_text().splitlines()
               if "run task done" in line and str(run_id) in line)


class TestEndToEnd:
    def test_twenty_runs_complete_settle_at_their_receipts_and_the_ledger_balances(self, client_and_tenant,
                                                                                   workers):
        client, tenant = client_and_tenant
        workers()
        body = run_body("0.0500")  # each decision costs $0.0104: base 0.0100 + 2x2 cells x 0.0001
        runs = [submit(client, body) for _ in range(20)]
        ids = [run.pk for run in runs]

        wait_until(lambda: terminal(ids), timeout=90, message="20 runs to finish")

        finished = list(Run.objects.filter(pk__in=ids))
        assert {(r.status, r.money_state, r.finalize_stage) for r in finished} == {("COMPLETED", "SETTLED",
                                                                                    "COMMITTED")}
        for run in finished:
            receipt = storage.receipt_get(bucket=run.result_bucket, key=run.result_key)
            assert receipt.actual_cost_micros == run.actual_cost_micros == 10_400
            assert receipt.finalize_token == str(run.finalize_token)
            assert receipt.sha256 == run.result_sha256
        wallet = Wallet.objects.get(tenant=tenant)
        assert (wallet.available_micros, wallet.held_micros) == (INITIAL_MICROS - 20 * 10_400, 0)
        assert ledger_is_green()

    def test_the_result_downloads_with_a_matching_sha256_and_the_envelope_shape(self, client_and_tenant, workers):
        import hashlib

        import requests

        client, _ = client_and_tenant
        workers()
        run = submit(client, run_body("0.0500", meta={"trace_id": "trace-e2e-1"}))
        wait_until(lambda: terminal([run.pk]), timeout=60, message="the run to finish")

        detail = client.get(f"/v1/runs/{run.pk}").json()
        download = requests.get(detail["result"]["presigned_url"], timeout=5)
        assert download.status_code == 200
        assert hashlib.sha256(download.content).hexdigest() == detail["result"]["sha256"]
        envelope = json.loads(download.content)
        assert set(envelope) == {"schema_version", "run_id", "pack_type", "status", "generated_at", "cost", "data",
                                 "artifacts", "logs", "meta"}
        assert envelope["run_id"] == str(run.pk) and envelope["status"] == "COMPLETED"
        assert envelope["cost"] == {"reserved_usd": "0.0500", "used_usd": "0.0104", "minimum_fee_usd": "0.0050"}
        assert envelope["meta"] == {"trace_id": "trace-e2e-1"}
        assert envelope["data"]["winner"]["id"] == "pg"

    def test_worker_log_lines_carry_the_runs_trace_and_request_ids(self, client_and_tenant, workers):
        client, _ = client_and_tenant
        worker = workers()
        response = post_run(client, run_body("0.0500", meta={"trace_id": "trace-log-7"}), HTTP_X_REQUEST_ID="req-log-7")
        run_id = response.json()["run_id"]
        wait_until(lambda: terminal([run_id]), timeout=60, message="the run to finish")

        # Every line written while the task ran; the consumer's "received" line is written before
        # the message is decoded into a task, outside any run's context.
        lines = [json.loads(line) for line in worker.log_text().splitlines()
                 if line.startswith("{") and run_id in line and '"celery.worker.strategy"' not in line]
        assert len(lines) >= 3, worker.log_tail()  # settled, task done, celery's succeeded line
        for line in lines:
            assert line["trace_id"] == "trace-log-7"
            assert line["request_id"] == "req-log-7"


class TestHeartbeat:
    def test_a_run_lasting_several_leases_is_never_reaped_nor_delivered_twice(self, client_and_tenant, workers):
        client, tenant = client_and_tenant
        worker = workers(DPP_LEASE_SECONDS=3, DPP_HEARTBEAT_SECONDS=1)
        run = submit(client, slow_body(9.0, cost_micros=20_000))  # three leases long

        wait_until(lambda: Run.objects.get(pk=run.pk).status != "QUEUED", timeout=30, message="the claim")
        first_expiry = Run.objects.get(pk=run.pk).lease_expires_at
        reaped = 0
        expiries = set()
        deadline = time.monotonic() + 60
        while not terminal([run.pk]) and time.monotonic() < deadline:
            reaped += zombies_reap(now=timezone.now()).get("reaped", 0)
            current = Run.objects.get(pk=run.pk)
            if current.lease_expires_at:
                expiries.add(current.lease_expires_at)
            time.sleep(0.3)

        run.refresh_from_db()
        assert reaped == 0
        assert (run.status, run.money_state, run.actual_cost_micros) == ("COMPLETED", "SETTLED", 20_000)
        assert max(expiries) > first_expiry  # the heartbeat moved the lease
        assert run.attempts == 1
        assert RunEvent.objects.filter(run=run, kind="LEASE_CLAIMED").count() == 1
        # The message stayed invisible while the heartbeat extended it: one delivery only.
        time.sleep(4)  # longer than the visibility timeout of 3 s
        assert received_count(worker, run.pk) == 1
        assert Wallet.objects.get(tenant=tenant).available_micros == INITIAL_MICROS - 20_000


class TestCancel:
    HEARTBEAT_SECONDS = 2
    # Scheduling on a loaded 2-core machine: the worker's log line may trail its heartbeat.
    SLACK_SECONDS = 2.0

    def test_a_canceled_run_is_stopped_within_one_heartbeat_and_its_message_acknowledged(self, client_and_tenant,
                                                                                           workers):
        from django.conf import settings

        from dpp.celery import app as celery_app

        client, tenant = client_and_tenant
        worker = workers(DPP_LEASE_SECONDS=3, DPP_HEARTBEAT_SECONDS=self.HEARTBEAT_SECONDS)
        run = submit(client, slow_body(60.0, cap="0.5000", timebox=90))
        wait_until(lambda: Run.objects.get(pk=run.pk).status == "PROCESSING", timeout=30, message="the claim")
        time.sleep(self.HEARTBEAT_SECONDS + 0.5)  # the heartbeat has extended the lease at least once

        canceled_at = time.time()
        response = client.post(f"/v1/runs/{run.pk}/cancel", {"reason": "no longer needed"}, format="json")

        assert response.status_code == 200 and response["X-DPP-Cost-Actual"] == "0.0100"
        line = wait_until(lambda: next((json.loads(text) for text in worker.log_text().splitlines()
                                        if "run canceled: pack stopped" in text and str(run.pk) in text), None),
                          timeout=30, message="the worker to stop the pack")
        stopped_at = datetime.fromisoformat(line["ts"]).timestamp()
        assert stopped_at - canceled_at <= self.HEARTBEAT_SECONDS + self.SLACK_SECONDS
        wait_until(lambda: any('"outcome": "canceled"' in text for text in worker.log_text().splitlines()),
                   timeout=10, message="the task to return")

        # A redelivered message for the canceled run is acknowledged and ignored.
        celery_app.send_task("runs.tasks.run_execute_task", kwargs={"run_id": str(run.pk)},
                             queue=settings.DPP_QUEUE_NAME)
        wait_until(lambda: received_count(worker, run.pk) >= 2, timeout=30, message="the redelivery")
        time.sleep(4)  # past the 3 s visibility timeout: the first message was acknowledged, not returned
        assert received_count(worker, run.pk) == 2
        assert "not QUEUED" in worker.log_text()

        run.refresh_from_db()
        assert (run.status, run.money_state, run.error_reason, run.error_detail) == (
            "CANCELED", "SETTLED", "CANCELED", "no longer needed")
        assert (run.actual_cost_micros, run.attempts, run.finalize_stage, run.result_key) == (10_000, 1, "NONE", "")
        wallet = Wallet.objects.get(tenant=tenant)
        assert (wallet.available_micros, wallet.held_micros) == (INITIAL_MICROS - 10_000, 0)
        assert ledger_is_green()


class TestWorkerKilled:
    def test_kill_9_mid_run_the_message_returns_and_the_lease_prevents_a_second_execution(self, client_and_tenant,
                                                                                          workers):
        client, tenant = client_and_tenant
        first = workers(DPP_LEASE_SECONDS=3, DPP_HEARTBEAT_SECONDS=1)
        run = submit(client, slow_body(20.0, cap="0.0500"))
        wait_until(lambda: Run.objects.get(pk=run.pk).status == "PROCESSING", timeout=30, message="the claim")

        first.kill()
        second = workers(DPP_LEASE_SECONDS=3, DPP_HEARTBEAT_SECONDS=1)
        # The message reappears after its visibility timeout and the new worker acknowledges it
        # without executing: the run is no longer QUEUED.
        wait_until(lambda: received_count(second, run.pk) >= 1, timeout=30, message="the redelivery")
        assert Run.objects.get(pk=run.pk).status == "PROCESSING"

        wait_until(lambda: zombies_reap(now=timezone.now()).get("reaped", 0) or terminal([run.pk]), timeout=20,
                   message="the reaper")
        run.refresh_from_db()
        assert (run.status, run.money_state, run.error_reason) == ("FAILED", "SETTLED", "LEASE_EXPIRED")
        assert run.actual_cost_micros == 5_000  # minimum fee of a 0.0500 reservation
        assert run.attempts == 1
        assert re.search(r"not QUEUED", second.log_text())
        wallet = Wallet.objects.get(tenant=tenant)
        assert (wallet.available_micros, wallet.held_micros) == (INITIAL_MICROS - 5_000, 0)
        assert ledger_is_green()


class TestFailures:
    def test_a_run_over_its_timebox_fails_with_the_minimum_fee(self, client_and_tenant, workers):
        client, tenant = client_and_tenant
        workers()
        run = submit(client, slow_body(10.0, cap="0.5000", timebox=2))
        wait_until(lambda: terminal([run.pk]), timeout=40, message="the timebox")

        run.refresh_from_db()
        assert (run.status, run.money_state, run.error_reason) == ("FAILED", "SETTLED", "TIMEBOX_EXCEEDED")
        assert run.actual_cost_micros == 10_000  # 2% of 500_000
        wallet = Wallet.objects.get(tenant=tenant)
        assert (wallet.available_micros, wallet.held_micros) == (INITIAL_MICROS - 10_000, 0)

    def test_a_failing_pack_fails_the_run_with_the_minimum_fee(self, client_and_tenant, workers):
        client, tenant = client_and_tenant
        workers()
        run = submit(client, slow_body(0.0, fail=True, cap="0.0500"))
        wait_until(lambda: terminal([run.pk]), timeout=40, message="the failure")

        run.refresh_from_db()
        assert (run.status, run.money_state, run.error_reason) == ("FAILED", "SETTLED", "PACK_FAILED")
        assert run.actual_cost_micros == 5_000
        assert Wallet.objects.get(tenant=tenant).available_micros == INITIAL_MICROS - 5_000
        assert ledger_is_green()
