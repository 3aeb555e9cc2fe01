"""What operators need to see at a glance (admin's ops page): runs per state, queue age and
depth, stuck claims, audits waiting, and live workers. Reads only; each external call bounded."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

import redis
from django.conf import settings
from django.db.models import Count, Min

from dpp.aws import sqs_client
from dpp.worker_steps import WORKER_ALIVE_KEY
from runs.models import Run

logger = logging.getLogger(__name__)

def queue_depth() -> dict[str, int | str]:
    name = settings.CELERY_BROKER_TRANSPORT_OPTIONS.get("queue_name_prefix", "") + settings.DPP_QUEUE_NAME
    try:
        client = sqs_client(read_timeout=2)
        url = client.get_queue_url(QueueName=name)["QueueUrl"]
        attributes = client.get_queue_attributes(
            QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
        )["Attributes"]
    except Exception as error:
        return {"error": type(error).__name__}
    return {"visible": int(attributes.get("ApproximateNumberOfMessages", 0)),
            "in_flight": int(attributes.get("ApproximateNumberOfMessagesNotVisible", 0))}


def live_workers() -> list[str] | str:
    """Workers that wrote their liveness key recently (dpp/worker_steps.py: a worker bootstep)."""
    try:
        client = redis.Redis.from_url(settings.REDIS_URL, socket_timeout=1, socket_connect_timeout=1)
        names = sorted(key.decode()[len(WORKER_ALIVE_KEY):] for key in client.scan_iter(f"{WORKER_ALIVE_KEY}*",
                                                                                          count=100))
        client.close()
        return names[:200]
    except Exception as error:
        return f"unavailable ({type(error).__name__})"


def ops_overview(*, now: datetime) -> dict:
    oldest = Run.objects.filter(status=Run.Status.QUEUED).aggregate(oldest=Min("created_at"))["oldest"]
    threshold = now - timedelta(seconds=settings.DPP_RECONCILE_AFTER_SECONDS)
    return {
        "by_state": list(Run.objects.values("status", "money_state").annotate(runs=Count("id"))
                         .order_by("status", "money_state")),
        "oldest_queued_age_seconds": int((now - oldest).total_seconds()) if oldest else None,
        "claimed_past_threshold": Run.objects.filter(finalize_stage=Run.FinalizeStage.CLAIMED,
                                                     status=Run.Status.PROCESSING,
                                                     finalize_claimed_at__lt=threshold).count(),
        "zombies": Run.objects.filter(status=Run.Status.PROCESSING, finalize_stage=Run.FinalizeStage.NONE,
                                      lease_expires_at__lt=now).count(),
        "audit_required": Run.objects.filter(money_state=Run.MoneyState.AUDIT_REQUIRED).count(),
        "queue": queue_depth(),
        "workers": live_workers(),
    }
