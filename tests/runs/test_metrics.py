"""Run metrics: creation counted at the API once per run, the queue and audit gauges from the run
rows, the execution task's metrics from Celery's signals (the task run in this process, eagerly:
the same signal handlers a prefork child runs), the periodic jobs' actions, and the admin ops page
showing the figures /metrics serves."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
from django.contrib.auth.models import User
from django.utils import timezone
from rest_framework.test import APIClient

from dpp import metrics
from runs.models import Run
from runs.ops import ops_figures
from runs.tasks import run_execute_task, zombies_reap_task
from tenants.models import Plan
from tenants.services import api_key_issue
from tests.dpp.test_metrics import scrape, value
from tests.factories import TenantFactory
from tests.runs.helpers import new_key, post_run, run_body
from tests.workers import TEST_PACKS

REGISTRY = metrics.PROCESS_REGISTRY


def sample(name: str, **labels) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


@pytest.mark.django_db
class TestCreation:
    def test_a_created_run_counts_once_and_its_replay_not_at_all(self, client, auth_client, no_broker):
        before = value(scrape(client), "dpp_runs_created_total")
        key = new_key()
        assert post_run(auth_client, key=key).status_code == 202
        assert post_run(auth_client, key=key).status_code == 202  # the replay
        assert post_run(auth_client).status_code == 202
        assert value(scrape(client), "dpp_runs_created_total") == before + 2

    def test_a_refused_submission_is_not_a_created_run(self, client, auth_client, no_broker):
        before = value(scrape(client), "dpp_runs_created_total")
        assert post_run(auth_client, run_body(pack_type="nope")).status_code == 422
        assert value(scrape(client), "dpp_runs_created_total") == before

    def test_a_concurrent_runs_refusal_counts_under_its_own_policy(self, client, no_broker):
        plan = Plan.objects.create(code=f"one-{uuid.uuid4().hex[:6]}", name="one", allowed_pack_types=["decision"],
                                   post_runs_per_minute=100, get_requests_per_minute=100, max_concurrent_runs=1,
                                   max_cost_per_run_micros=1_000_000)
        tenant = TenantFactory(plan=plan, balance_micros=1_000_000)
        api = APIClient()
        api.credentials(HTTP_AUTHORIZATION=f"Bearer {api_key_issue(tenant=tenant, label='t').plaintext}")
        before = value(scrape(client), "dpp_rate_limited_total", policy="concurrent_runs")
        assert post_run(api).status_code == 202
        assert post_run(api).status_code == 429
        assert value(scrape(client), "dpp_rate_limited_total", policy="concurrent_runs") == before + 1


@pytest.mark.django_db
class TestQueueAndAuditGauges:
    def test_queued_runs_their_age_and_the_unconfirmed_enqueues_are_counted(self, client, auth_client, no_broker):
        for _ in range(3):
            assert post_run(auth_client).status_code == 202
        oldest = Run.objects.order_by("created_at").first()
        Run.objects.filter(pk=oldest.pk).update(created_at=oldest.created_at - timedelta(days=365))
        Run.objects.exclude(pk=oldest.pk).update(enqueued_at=timezone.now())
        text = scrape(client)
        assert value(text, "dpp_runs_queued") == 3
        assert value(text, "dpp_runs_oldest_queued_age_seconds") > 364 * 86400
        assert value(text, "dpp_outbox_pending") == 1  # only the oldest was never confirmed
        assert value(text, "dpp_outbox_oldest_pending_age_seconds") > 364 * 86400

    def test_with_nothing_queued_the_ages_are_zero(self, client):
        text = scrape(client)
        assert value(text, "dpp_runs_queued") == 0
        assert value(text, "dpp_runs_oldest_queued_age_seconds") == 0
        assert value(text, "dpp_outbox_oldest_pending_age_seconds") == 0

    def test_audit_required_runs_are_counted(self, client, auth_client, no_broker):
        assert post_run(auth_client).status_code == 202
        Run.objects.update(money_state=Run.MoneyState.AUDIT_REQUIRED)
        assert value(scrape(client), "dpp_runs_audit_required") == 1

    def test_the_ops_page_shows_the_figures_the_scrape_serves(self, client, auth_client, no_broker):
        assert post_run(auth_client).status_code == 202
        figures = ops_figures(now=timezone.now())
        client.force_login(User.objects.create_superuser("ops-metrics", "ops@example.com", "pw"))
        page = client.get("/admin/runs/run/ops/").content.decode()
        assert f"QUEUED runs: {figures['dpp_runs_queued']} (dpp_runs_queued)" in page
        assert f"Held, all tenants: {figures['dpp_ledger_held_usd_micros']} micros" in page
        assert figures["dpp_ledger_held_usd_micros"] == 50_000  # the run's reservation


@pytest.fixture
def test_packs(settings):
    settings.DPP_PACKS = TEST_PACKS.split(",")


@pytest.mark.django_db(transaction=True)
@pytest.mark.emulator
@pytest.mark.usefixtures("test_packs")
class TestTaskSignals:
    def test_a_completed_run_is_finished_with_its_pack_status_and_waits(self, auth_client, no_broker, result_bucket):
        run_id = post_run(auth_client).json()["run_id"]
        finished = sample("dpp_runs_finished_total", pack_type="decision", status="COMPLETED", reason_code="none")
        waits = sample("dpp_run_queue_wait_seconds_count", pack_type="decision")
        executions = sample("dpp_run_execution_seconds_count", pack_type="decision")
        tasks = sample("dpp_tasks_total", task="runs.tasks.run_execute_task", state="SUCCESS")
        assert run_execute_task.apply(kwargs={"run_id": run_id}).get() == "completed"
        assert sample("dpp_runs_finished_total", pack_type="decision", status="COMPLETED",
                      reason_code="none") == finished + 1
        assert sample("dpp_run_queue_wait_seconds_count", pack_type="decision") == waits + 1
        assert sample("dpp_run_execution_seconds_count", pack_type="decision") == executions + 1
        assert sample("dpp_tasks_total", task="runs.tasks.run_execute_task", state="SUCCESS") == tasks + 1

    def test_a_redelivered_message_is_not_a_second_finish(self, auth_client, no_broker, result_bucket):
        run_id = post_run(auth_client).json()["run_id"]
        run_execute_task.apply(kwargs={"run_id": run_id})
        finished = sample("dpp_runs_finished_total", pack_type="decision", status="COMPLETED", reason_code="none")
        assert run_execute_task.apply(kwargs={"run_id": run_id}).get() == "ignored"
        assert sample("dpp_runs_finished_total", pack_type="decision", status="COMPLETED",
                      reason_code="none") == finished

    def test_a_failed_pack_is_finished_as_failed_with_its_reason_bounded(self, auth_client, no_broker):
        body = run_body(pack_type="test_slow", inputs={"seconds": 0, "fail": True})
        run_id = post_run(auth_client, body).json()["run_id"]
        failed = sample("dpp_runs_finished_total", pack_type="test_slow", status="FAILED", reason_code="OTHER")
        assert run_execute_task.apply(kwargs={"run_id": run_id}).get() == "pack_failed"
        assert Run.objects.get(pk=run_id).error_reason == "PACK_FAILED"  # the pack's own code ...
        assert sample("dpp_runs_finished_total", pack_type="test_slow", status="FAILED",
                      reason_code="OTHER") == failed + 1  # ... counted as OTHER

    def test_a_reaper_pass_counts_its_actions(self, auth_client, no_broker):
        run_id = post_run(auth_client).json()["run_id"]
        Run.objects.filter(pk=run_id).update(status=Run.Status.PROCESSING, lease_token=uuid.uuid4(),
                                             lease_expires_at=timezone.now() - timedelta(seconds=5))
        reaped = sample("dpp_reaper_actions_total", job="zombies", action="reaped")
        assert zombies_reap_task.apply().get() == {"reaped": 1}
        assert sample("dpp_reaper_actions_total", job="zombies", action="reaped") == reaped + 1


@pytest.mark.django_db
def test_a_task_that_raises_counts_as_a_failure_and_finishes_no_run():
    failures = sample("dpp_tasks_total", task="runs.tasks.run_execute_task", state="FAILURE")
    finished = sum(s.value for metric in REGISTRY.collect() if metric.name == "dpp_runs_finished"
                   for s in metric.samples)
    result = run_execute_task.apply(kwargs={"run_id": "not-a-uuid"})
    assert result.failed()
    assert sample("dpp_tasks_total", task="runs.tasks.run_execute_task", state="FAILURE") == failures + 1
    assert sum(s.value for metric in REGISTRY.collect() if metric.name == "dpp_runs_finished"
               for s in metric.samples) == finished
