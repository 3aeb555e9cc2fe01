"""The periodic jobs declared in runs/schedule.py, and where their tasks travel."""

from __future__ import annotations

import pytest

from dpp.celery import app
from runs.schedule import periodic_jobs, periodic_jobs_sync


def routed_queue(task_name: str) -> str:
    return app.amqp.router.route({}, task_name)["queue"].name


class TestWebhookSweepJob:
    def test_is_declared_with_its_interval(self, settings):
        [job] = [job for job in periodic_jobs() if job.task == "runs.webhooks.tasks.webhook_deliveries_sweep_task"]

        assert job.every_seconds == settings.DPP_WEBHOOK_SWEEP_INTERVAL_SECONDS

    def test_webhook_tasks_travel_on_the_webhook_queue_and_runs_on_the_runs_queue(self, settings):
        assert routed_queue("runs.webhooks.tasks.webhook_deliveries_sweep_task") == settings.DPP_WEBHOOK_QUEUE_NAME
        assert routed_queue("runs.webhooks.tasks.webhook_delivery_attempt_task") == settings.DPP_WEBHOOK_QUEUE_NAME
        assert routed_queue("runs.tasks.run_execute_task") == settings.DPP_QUEUE_NAME
        assert settings.DPP_WEBHOOK_QUEUE_NAME != settings.DPP_QUEUE_NAME

    @pytest.mark.django_db
    def test_is_synced_into_the_beat_schedule(self):
        from django_celery_beat.models import PeriodicTask

        periodic_jobs_sync()

        task = PeriodicTask.objects.get(name="dpp: webhook deliveries")
        assert task.enabled and task.task == "runs.webhooks.tasks.webhook_deliveries_sweep_task"
