"""Fault drills: the real platform in processes (API under gunicorn, workers, beat, the emulator,
PostgreSQL, Redis), a fault injected, and then every run terminal with its exact outcome and
check_ledger green. docs/RELIABILITY.md lists them with their expected and observed outcomes."""

from __future__ import annotations

import subprocess
import sys
import time
import uuid
from datetime import timedelta

import pytest
from django.core.management import call_command
from django.db import connection
from django.test import override_settings
from django.utils import timezone

from billing.models import Journal, Wallet
from dpp.aws import AwsConfig
from runs.models import Run, RunEvent
from runs.services import RunSubmission, run_claim_lease, run_create
from tenants.services import api_key_issue
from tests.drills.platform import REPO, Platform
from tests.factories import TenantFactory
from tests.runs.helpers import decision_inputs, run_body
from tests.workers import wait_until

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow, pytest.mark.emulator]

INITIAL = 10_000_000
DECISION_COST = 10_400  # 2 options x 2 criteria: 0.0100 + 4 x 0.0001
MIN_FEE = 5_000  # of a 0.0500 reservation


@pytest.fixture
def platforms():
    started: list[Platform] = []

    def start(*, workers: int = 1, beats: int = 1, **worker_env) -> Platform:
        platform = Platform(worker_env={k: str(v) for k, v in worker_env.items()})
        started.append(platform)
        return platform.start(workers=workers, beats=beats)

    yield start
    for platform in started:
        platform.stop()


@pytest.fixture
def account():
    tenant = TenantFactory(balance_micros=INITIAL)
    return tenant, api_key_issue(tenant=tenant, label="drill").plaintext


def slow(seconds: float, cost_micros: int = 20_000) -> dict:
    return {"pack_type": "test_slow", "inputs": {"seconds": seconds, "cost_micros": cost_micros},
            "reservation": {"max_cost_usd": "0.0500", "timebox_sec": 60}}


def submit(platform: Platform, key: str, body: dict) -> str:
    status, answer, _ = platform.submit(key, body)
    assert status == 202, answer
    return answer["run_id"]


def terminal(ids) -> bool:
    return Run.objects.filter(pk__in=ids, status__in=Run.TERMINAL_STATUSES).exclude(
        money_state__in=["RESERVED"]).count() == len(ids)


def ledger_green(platform: Platform) -> bool:
    endpoint = f"http://127.0.0.1:{platform.moto_port}"
    aws = AwsConfig(region="us-east-1", sqs_endpoint=endpoint, s3_endpoint=endpoint, uses_loopback_credentials=True)
    with override_settings(AWS=aws):
        try:
            call_command("check_ledger")
        except SystemExit as exit_:
            raise AssertionError(f"check_ledger failed ({exit_.code})") from None
    return True


def wallet(tenant) -> tuple[int, int]:
    w = Wallet.objects.get(tenant=tenant)
    return w.available_micros, w.held_micros


def settlements(run_id) -> int:
    return Journal.objects.filter(run_id=run_id, phase="FINALIZE").count()


class TestWorkerCrashes:
    def test_1_kill_9_mid_execution_fails_the_run_at_the_minimum_fee(self, platforms, account):
        tenant, key = account
        platform = platforms()
        run_id = submit(platform, key, slow(30))
        wait_until(lambda: Run.objects.get(pk=run_id).status == "PROCESSING", timeout=30, message="the claim")

        platform.workers[0].kill()
        platform.workers.append(platform.start_worker())
        wait_until(lambda: terminal([run_id]), timeout=60, message="the reaper")

        run = Run.objects.get(pk=run_id)
        assert (run.status, run.money_state, run.error_reason) == ("FAILED", "SETTLED", "LEASE_EXPIRED")
        assert run.actual_cost_micros == MIN_FEE and run.attempts == 1 and settlements(run_id) == 1
        assert wallet(tenant) == (INITIAL - MIN_FEE, 0)
        assert ledger_green(platform)

    def test_kill_9_during_a_batch_leaves_every_run_terminal_within_a_minute(self, platforms, account):
        tenant, key = account
        platform = platforms()
        ids = [submit(platform, key, slow(1.5)) for _ in range(8)]
        wait_until(lambda: Run.objects.filter(pk__in=ids, status="COMPLETED").count() >= 2, timeout=40,
                   message="the batch to be under way")

        platform.workers[0].kill()
        platform.workers.append(platform.start_worker())
        wait_until(lambda: terminal(ids), timeout=60, message="every run terminal")

        runs = list(Run.objects.filter(pk__in=ids))
        outcomes = {(r.status, r.error_reason) for r in runs}
        assert outcomes <= {("COMPLETED", ""), ("FAILED", "LEASE_EXPIRED")}, outcomes
        charged = sum(r.actual_cost_micros for r in runs)
        assert charged == sum(20_000 if r.status == "COMPLETED" else MIN_FEE for r in runs)
        assert wallet(tenant) == (INITIAL - charged, 0)
        assert all(settlements(r.pk) == 1 and r.attempts == 1 for r in runs)
        assert ledger_green(platform)

    def test_2_exit_after_the_claim_before_the_upload_rolls_back_at_the_minimum_fee(self, platforms, account):
        tenant, key = account
        platform = platforms(DPP_FAULT="after_claim")
        run_id = submit(platform, key, run_body("0.0500"))
        wait_until(lambda: terminal([run_id]), timeout=60, message="the reconciler")

        run = Run.objects.get(pk=run_id)
        assert (run.status, run.money_state, run.error_reason) == ("FAILED", "SETTLED", "WORKER_CRASH_DURING_FINALIZE")
        assert run.actual_cost_micros == MIN_FEE and settlements(run_id) == 1
        assert wallet(tenant) == (INITIAL - MIN_FEE, 0)
        assert ledger_green(platform)

    def test_3_exit_after_the_upload_before_the_commit_rolls_forward_at_the_receipts_cost(self, platforms, account):
        tenant, key = account
        platform = platforms(DPP_FAULT="after_upload")
        run_id = submit(platform, key, run_body("0.0500"))
        wait_until(lambda: terminal([run_id]), timeout=60, message="the reconciler")

        run = Run.objects.get(pk=run_id)
        assert (run.status, run.money_state, run.finalize_stage) == ("COMPLETED", "SETTLED", "COMMITTED")
        assert run.actual_cost_micros == DECISION_COST and settlements(run_id) == 1
        assert RunEvent.objects.get(run=run, kind="COMPLETED").actor == "reconciler"
        assert wallet(tenant) == (INITIAL - DECISION_COST, 0)
        assert ledger_green(platform)

    def test_4_exit_after_the_commit_before_the_ack_the_redelivery_changes_nothing(self, platforms, account):
        tenant, key = account
        platform = platforms(DPP_FAULT="after_commit")
        run_id = submit(platform, key, run_body("0.0500"))
        wait_until(lambda: terminal([run_id]), timeout=60, message="the run")
        # The pool child died before acknowledging: the message comes back and is ignored.
        wait_until(lambda: "not QUEUED" in platform.workers[0].log_text(), timeout=30, message="the redelivery")

        run = Run.objects.get(pk=run_id)
        assert (run.status, run.money_state, run.actual_cost_micros) == ("COMPLETED", "SETTLED", DECISION_COST)
        assert run.attempts == 1 and settlements(run_id) == 1
        assert wallet(tenant) == (INITIAL - DECISION_COST, 0)
        assert ledger_green(platform)


class TestDependencyOutages:
    def test_5_submissions_while_the_emulator_is_down_complete_once_it_is_back(self, platforms, account):
        tenant, key = account
        platform = platforms()
        platform.stop_moto()
        ids = [submit(platform, key, run_body("0.0500")) for _ in range(3)]
        assert Run.objects.filter(pk__in=ids, enqueue_attempts=0).count() == 3  # no send confirmed
        assert wallet(tenant) == (INITIAL - 3 * 50_000, 3 * 50_000)  # accepted and reserved

        platform.start_moto()
        wait_until(lambda: terminal(ids), timeout=90, message="the outbox to resend them")

        assert set(Run.objects.filter(pk__in=ids).values_list("status", "actual_cost_micros")) == {
            ("COMPLETED", DECISION_COST)}
        assert wallet(tenant) == (INITIAL - 3 * DECISION_COST, 0)
        assert ledger_green(platform)

    def test_6_redis_down_answers_503_moves_no_money_and_recovers(self, platforms, account):
        tenant, key = account
        platform = platforms()
        platform.stop_redis()

        status, problem, headers = platform.submit(key, run_body("0.0500"))
        assert status == 503 and problem["type"] == "/problems/service-unavailable"
        assert headers["Content-Type"] == "application/problem+json"
        assert wallet(tenant) == (INITIAL, 0) and not Run.objects.exists()

        platform.start_redis()
        run_id = submit(platform, key, run_body("0.0500"))
        wait_until(lambda: terminal([run_id]), timeout=60, message="the run after recovery")
        assert wallet(tenant) == (INITIAL - DECISION_COST, 0)
        assert ledger_green(platform)

    def test_7_s3_failing_at_upload_is_rolled_back_without_double_charge(self, platforms, account):
        tenant, key = account
        platform = platforms()
        run_id = submit(platform, key, slow(4))
        wait_until(lambda: Run.objects.get(pk=run_id).status == "PROCESSING", timeout=30, message="the claim")
        platform.stop_moto()  # the upload at the end of the pack fails
        wait_until(lambda: Run.objects.get(pk=run_id).finalize_stage == "CLAIMED", timeout=30,
                   message="the finalize claim")
        wait_until(lambda: "leaving the run CLAIMED" in platform.workers[0].log_text(), timeout=60,
                   message="the upload to give up")

        platform.start_moto()
        wait_until(lambda: terminal([run_id]), timeout=60, message="the reconciler")

        run = Run.objects.get(pk=run_id)
        assert (run.status, run.error_reason, run.actual_cost_micros) == ("FAILED", "WORKER_CRASH_DURING_FINALIZE",
                                                                          MIN_FEE)
        assert settlements(run_id) == 1
        assert wallet(tenant) == (INITIAL - MIN_FEE, 0)
        assert ledger_green(platform)

    def test_8_database_connections_dropped_under_the_heartbeat_neither_leak_nor_double_execute(self, platforms,
                                                                                                 account):
        tenant, key = account
        platform = platforms()
        run_id = submit(platform, key, slow(6))
        wait_until(lambda: Run.objects.get(pk=run_id).status == "PROCESSING", timeout=30, message="the claim")

        for _ in range(2):
            time.sleep(1.5)
            with connection.cursor() as cursor:  # every other session on the test database, ours excepted
                cursor.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                               "WHERE datname = current_database() AND pid <> pg_backend_pid()")
        wait_until(lambda: terminal([run_id]), timeout=60, message="the run")

        run = Run.objects.get(pk=run_id)
        assert run.attempts == 1 and settlements(run_id) == 1
        assert (run.status, run.actual_cost_micros) in {("COMPLETED", 20_000), ("FAILED", MIN_FEE)}
        assert run.status == "COMPLETED", "the worker should reconnect and finish"
        assert wallet(tenant) == (INITIAL - run.actual_cost_micros, 0)
        assert ledger_green(platform)


class TestDuplicates:
    def test_9_the_same_message_delivered_to_two_workers_executes_once(self, platforms, account):
        tenant, key = account
        platform = platforms(workers=2)
        run_id = submit(platform, key, slow(3))
        duplicate = ("from runs.tasks import run_execute_task; from django.conf import settings; "
                     f"run_execute_task.apply_async(kwargs={{'run_id': '{run_id}'}}, queue=settings.DPP_QUEUE_NAME)")
        subprocess.run([sys.executable, "manage.py", "shell", "-c", duplicate], cwd=REPO, env=platform.env,
                       check=True, capture_output=True, timeout=60)
        wait_until(lambda: terminal([run_id]), timeout=60, message="the run")
        logs = lambda: "".join(w.log_text() for w in platform.workers)  # noqa: E731
        wait_until(lambda: logs().count("run task done") >= 2 and run_id in logs(), timeout=30,
                   message="both deliveries")

        run = Run.objects.get(pk=run_id)
        assert run.attempts == 1 and RunEvent.objects.filter(run=run, kind="LEASE_CLAIMED").count() == 1
        assert (run.status, run.actual_cost_micros) == ("COMPLETED", 20_000) and settlements(run_id) == 1
        assert "not QUEUED" in logs()
        assert ledger_green(platform)

    def test_10_two_beats_running_every_job_handle_each_run_once(self, platforms, account, monkeypatch):
        tenant, _ = account
        monkeypatch.setattr("runs.services.submit.relay_wake", lambda: None)
        long_ago = timezone.now() - timedelta(hours=1)
        zombies, never_started = [], []
        for index in range(6):
            run = run_create(tenant=tenant, submission=RunSubmission(
                idempotency_key=f"zombie-{index}-{uuid.uuid4().hex[:6]}", payload_hash="0" * 64,
                pack_type="decision", inputs=decision_inputs(), max_cost_micros=50_000, timebox_sec=30,
                min_reliability_score=None, trace_id="drill-10")).run
            zombies.append(run_claim_lease(run_id=run.pk, now=long_ago).pk)
        for index in range(3):
            run = run_create(tenant=tenant, submission=RunSubmission(
                idempotency_key=f"late-{index}-{uuid.uuid4().hex[:6]}", payload_hash="0" * 64,
                pack_type="decision", inputs=decision_inputs(), max_cost_micros=50_000, timebox_sec=30,
                min_reliability_score=None, trace_id="drill-10")).run
            Run.objects.filter(pk=run.pk).update(deadline_at=long_ago)
            never_started.append(run.pk)

        platform = platforms(beats=2)
        wait_until(lambda: terminal(zombies + never_started), timeout=60, message="the reapers")

        assert all(settlements(run_id) == 1 for run_id in zombies + never_started)
        for run_id in zombies + never_started:
            assert RunEvent.objects.filter(run_id=run_id, kind="FAILED").count() == 1
        assert set(Run.objects.filter(pk__in=zombies).values_list("error_reason", "actual_cost_micros")) == {
            ("LEASE_EXPIRED", MIN_FEE)}
        assert set(Run.objects.filter(pk__in=never_started).values_list("error_reason", "money_state")) == {
            ("NEVER_STARTED", "REFUNDED")}
        assert wallet(tenant) == (INITIAL - 6 * MIN_FEE, 0)
        # Both beats ran the whole time; the DatabaseScheduler lets whichever is due first send.
        assert all(beat.alive for beat in platform.beats)
        assert any("Sending due task dpp: reap zombies" in beat.log_text() for beat in platform.beats)
        assert ledger_green(platform)
