"""The periodic jobs ride a queue and a worker of their own, each message expiring after one
interval: behind a backlog of runs on the run queue, a zombie is still reaped."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
from django.conf import settings
from django.test import override_settings
from django.utils import timezone
from django_celery_beat.models import PeriodicTask
from django_celery_beat.schedulers import ModelEntry

from dpp.celery import app as celery_app
from runs import tasks
from runs.models import Run
from runs.schedule import periodic_jobs, periodic_jobs_sync
from runs.services import RunSubmission, run_claim_lease, run_create
from runs.webhooks import tasks as webhook_tasks  # noqa: F401 - registers the webhook sweep task
from tests.factories import TenantFactory
from tests.runs.helpers import decision_inputs
from tests.workers import WorkerProcess, wait_until


def make_run(tenant) -> Run:
    return run_create(tenant=tenant, submission=RunSubmission(
        idempotency_key=uuid.uuid4().hex, payload_hash="0" * 64, pack_type="decision", inputs=decision_inputs(),
        max_cost_micros=50_000, timebox_sec=30, min_reliability_score=None, trace_id="trace-schedule")).run


def test_every_periodic_pass_has_a_soft_and_a_hard_time_limit_of_a_few_intervals():
    """A pass stuck on a hung broker or S3 call ends instead of holding a periodic worker's process."""
    intervals = {"runs.tasks.zombies_reap_task": settings.DPP_REAPER_INTERVAL_SECONDS,
                 "runs.tasks.claims_reconcile_task": settings.DPP_RECONCILE_INTERVAL_SECONDS,
                 "runs.tasks.outbox_sweep_task": settings.DPP_OUTBOX_INTERVAL_SECONDS}
    for name, interval in intervals.items():
        task = celery_app.tasks[name]
        assert task.soft_time_limit is not None and task.soft_time_limit >= 2 * interval, name
        assert task.time_limit is not None and task.time_limit > task.soft_time_limit, name
    retention = celery_app.tasks["runs.tasks.results_expire_task"]
    assert retention.soft_time_limit is not None and retention.soft_time_limit > settings.DPP_RETENTION_BUDGET_SECONDS
    assert retention.time_limit is not None and retention.time_limit > retention.soft_time_limit


@pytest.mark.django_db
class TestTheSchedule:
    def test_every_job_goes_to_the_periodic_queue_and_expires_after_its_interval(self):
        periodic_jobs_sync()
        for job in periodic_jobs():
            row = PeriodicTask.objects.get(name=job.name)
            assert row.queue == settings.DPP_PERIODIC_QUEUE_NAME != settings.DPP_QUEUE_NAME
            assert row.expire_seconds == job.every_seconds and row.expires is None
            options = ModelEntry(row, app=celery_app).options  # what beat sends with
            assert options["queue"] == settings.DPP_PERIODIC_QUEUE_NAME
            assert options["expires"] == job.every_seconds

    def test_a_job_called_directly_routes_to_the_periodic_queue_and_a_run_to_the_run_queue(self):
        for job in periodic_jobs():
            assert celery_app.tasks[job.task].queue == settings.DPP_PERIODIC_QUEUE_NAME
        assert getattr(tasks.run_execute_task, "queue", None) is None  # the default queue: DPP_QUEUE_NAME

    def test_the_two_queues_must_differ(self):
        import subprocess
        import sys

        result = subprocess.run([sys.executable, "-c", "import django; django.setup()"], capture_output=True,
                                text=True, timeout=60, env={**__import__("os").environ, "DJANGO_SETTINGS_MODULE":
                                                            "dpp.settings", "DPP_QUEUE_NAME": "q",
                                                            "DPP_PERIODIC_QUEUE_NAME": "q"})
        assert result.returncode != 0 and "DPP_PERIODIC_QUEUE_NAME must differ" in result.stderr


@pytest.mark.django_db(transaction=True)
@pytest.mark.slow
@pytest.mark.emulator
class TestNothingStarves:
    def test_behind_a_backlog_of_runs_the_periodic_worker_still_reaps_a_zombie(self):
        queue = f"dpp-runs-{uuid.uuid4().hex[:8]}"
        with override_settings(DPP_QUEUE_NAME=queue, DPP_PERIODIC_QUEUE_NAME=f"{queue}-periodic"):
            tenant = TenantFactory(balance_micros=10_000_000)
            backlog = [make_run(tenant).pk for _ in range(5)]  # sent to the run queue; no run worker
            zombie = run_claim_lease(run_id=make_run(tenant).pk, now=timezone.now() - timedelta(hours=1))
            periodic_jobs_sync()
            worker = WorkerProcess(queue_name=queue, consume=f"{queue}-periodic", concurrency=1).start()
            try:
                # Exactly what beat sends: the task with the options of its schedule row.
                entry = ModelEntry(PeriodicTask.objects.get(name="dpp: reap zombies"), app=celery_app)
                celery_app.send_task(entry.task, **entry.options)
                wait_until(lambda: Run.objects.get(pk=zombie.pk).status == Run.Status.FAILED, timeout=60,
                           message="the zombie to be reaped by the periodic worker")
            finally:
                worker.stop()
            assert Run.objects.get(pk=zombie.pk).error_reason == "LEASE_EXPIRED"
            assert set(Run.objects.filter(pk__in=backlog).values_list("status", flat=True)) == {Run.Status.QUEUED}
            assert "run task done" not in worker.log_text()  # it never took a run


def routed_queue(task_name: str) -> str:
    return celery_app.amqp.router.route({}, task_name)["queue"].name


class TestWebhookSweepJob:
    def test_is_declared_with_its_interval(self, settings):
        [job] = [job for job in periodic_jobs() if job.task == "runs.webhooks.tasks.webhook_deliveries_sweep_task"]

        assert job.every_seconds == settings.DPP_WEBHOOK_SWEEP_INTERVAL_SECONDS

    def test_attempts_travel_on_the_webhook_queue_the_sweep_on_the_periodic_one_and_runs_on_the_runs_queue(
            self, settings):
        assert celery_app.tasks["runs.webhooks.tasks.webhook_deliveries_sweep_task"].queue == \
            settings.DPP_PERIODIC_QUEUE_NAME
        assert routed_queue("runs.webhooks.tasks.webhook_delivery_attempt_task") == settings.DPP_WEBHOOK_QUEUE_NAME
        assert routed_queue("runs.tasks.run_execute_task") == settings.DPP_QUEUE_NAME
        assert settings.DPP_WEBHOOK_QUEUE_NAME != settings.DPP_QUEUE_NAME

    @pytest.mark.django_db
    def test_is_synced_into_the_beat_schedule(self):
        from django_celery_beat.models import PeriodicTask

        periodic_jobs_sync()

        task = PeriodicTask.objects.get(name="dpp: webhook deliveries")
        assert task.enabled and task.task == "runs.webhooks.tasks.webhook_deliveries_sweep_task"
