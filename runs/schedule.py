"""The periodic jobs of the platform, declared once here and synced into django-celery-beat's
DatabaseScheduler (after every migrate, and by ``manage.py sync_periodic_tasks``).

Each job is sent to ``DPP_PERIODIC_QUEUE_NAME``, consumed by a worker of its own (Procfile
``periodic``), never to the run queue: behind a backlog of long runs, zombies are still reaped and
refunds still made. Each message expires after one interval (``expire_seconds``): while that
worker is down, beat's sends do not pile up; the next one does the same work."""

from __future__ import annotations

from dataclasses import dataclass

from django.conf import settings
from django_celery_beat.models import IntervalSchedule, PeriodicTask


@dataclass(frozen=True)
class PeriodicJob:
    name: str
    task: str
    every_seconds: int
    why: str


def periodic_jobs() -> list[PeriodicJob]:
    return [
        # Runs whose worker died (lease not renewed) are failed at the minimum fee.
        PeriodicJob("dpp: reap zombies", "runs.tasks.zombies_reap_task", settings.DPP_REAPER_INTERVAL_SECONDS,
                    "PROCESSING runs with an expired lease -> FAILED LEASE_EXPIRED"),
        # Runs stuck between finalize claim and commit are rolled forward or back from S3.
        PeriodicJob("dpp: reconcile claims", "runs.tasks.claims_reconcile_task",
                    settings.DPP_RECONCILE_INTERVAL_SECONDS,
                    "CLAIMED runs older than DPP_RECONCILE_AFTER_SECONDS -> roll forward/back or AUDIT_REQUIRED"),
        # Runs whose enqueue was lost are sent again; runs never started by their deadline refunded.
        PeriodicJob("dpp: outbox", "runs.tasks.outbox_sweep_task", settings.DPP_OUTBOX_INTERVAL_SECONDS,
                    "QUEUED runs not confirmed on the queue -> resend; past deadline -> FAILED NEVER_STARTED"),
        # Results past retention are deleted from S3 (owners then get 410).
        PeriodicJob("dpp: result retention", "runs.tasks.results_expire_task", 3600,
                    "results past retention_until -> deleted from S3"),
        # Webhook retries live in PostgreSQL: due deliveries (retry time reached, lost send, dead
        # worker's claim expired) are sent to the webhook queue (the attempt task is routed there).
        PeriodicJob("dpp: webhook deliveries", "runs.webhooks.tasks.webhook_deliveries_sweep_task",
                    settings.DPP_WEBHOOK_SWEEP_INTERVAL_SECONDS,
                    "PENDING deliveries due at next_attempt_at, not claimed, not on the queue -> sent"),
    ]


def periodic_jobs_sync() -> list[str]:
    """Create or update the beat entries; disable ours that are no longer declared."""
    names = []
    for job in periodic_jobs():
        interval, _ = IntervalSchedule.objects.get_or_create(every=job.every_seconds, period=IntervalSchedule.SECONDS)
        PeriodicTask.objects.update_or_create(
            name=job.name,
            defaults={"task": job.task, "interval": interval, "enabled": True, "description": job.why,
                      "crontab": None, "solar": None, "clocked": None, "one_off": False,
                      "queue": settings.DPP_PERIODIC_QUEUE_NAME, "expire_seconds": job.every_seconds,
                      "expires": None},
        )
        names.append(job.name)
    PeriodicTask.objects.filter(name__startswith="dpp: ").exclude(name__in=names).update(enabled=False)
    return names
