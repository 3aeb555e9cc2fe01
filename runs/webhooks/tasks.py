"""Celery tasks of webhooks (routed to DPP_WEBHOOK_QUEUE_NAME by CELERY_TASK_ROUTES): interfaces
that take ids and call one service. Retries are not Celery's: they are rows in PostgreSQL."""

from __future__ import annotations

from celery import shared_task
from django.conf import settings
from django.utils import timezone

from runs.webhooks import services


@shared_task(name=services.DELIVERY_TASK_NAME, acks_late=True,
             reject_on_worker_lost=True, ignore_result=True)
def webhook_delivery_attempt_task(*, delivery_id: str) -> str:
    return services.webhook_delivery_attempt(delivery_id=delivery_id)


# Periodic (declared in runs/schedule.py).
# A periodic job like the reaper's: on the periodic queue (runs/schedule.py); the attempts it
# sends travel on the webhook queue.
@shared_task(name="runs.webhooks.tasks.webhook_deliveries_sweep_task", ignore_result=True,
             queue=settings.DPP_PERIODIC_QUEUE_NAME)
def webhook_deliveries_sweep_task() -> dict:
    return services.webhook_deliveries_sweep(now=timezone.now())
