"""What operators need to see at a glance (admin's ops page): runs per state, queue age and
depth, stuck claims, audits waiting, money held, and live workers. Reads only; each external call
bounded. ``ops_figures`` is also what the API's /metrics serves as database gauges (registered in
runs/apps.py), so the page and the alerts always agree."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

import redis
from django.conf import settings
from django.db import connection, transaction
from django.db.models import Count, Min, Q
from django.utils import timezone

from billing.selectors import wallet_totals
from dpp.aws import run_queue_url, sqs_client
from dpp.worker_steps import WORKER_ALIVE_KEY
from runs.models import Run
from runs.webhooks.models import WebhookDelivery

logger = logging.getLogger(__name__)

def queue_depth() -> dict[str, int | str]:
    try:
        client = sqs_client(read_timeout=2)
        url = run_queue_url()  # DPP_QUEUE_URL when set: the production policy grants no GetQueueUrl
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


def _age_seconds(*, now: datetime, since: datetime | None) -> float:
    return max(0.0, (now - since).total_seconds()) if since is not None else 0.0


def ops_figures(*, now: datetime) -> dict[str, float]:
    """The database figures operators alert on, read now in one short read-only transaction with
    a statement timeout (DPP_METRICS_DB_TIMEOUT_MS), so a slow database fails the read instead of
    holding a scrape. Keys are the metric names of dpp/metrics.py DATABASE_GAUGES."""
    with transaction.atomic(durable=True):
        with connection.cursor() as cursor:
            cursor.execute("SET TRANSACTION READ ONLY")
            cursor.execute("SELECT set_config('statement_timeout', %s, true)", [str(settings.DPP_METRICS_DB_TIMEOUT_MS)])
        unconfirmed = Q(enqueued_at__isnull=True)
        queued = Run.objects.filter(status=Run.Status.QUEUED).aggregate(
            runs=Count("id"), oldest=Min("created_at"),
            outbox=Count("id", filter=unconfirmed), outbox_oldest=Min("created_at", filter=unconfirmed),
        )
        audit_required = Run.objects.filter(money_state=Run.MoneyState.AUDIT_REQUIRED).count()
        wallets = wallet_totals()
        webhook_pending = WebhookDelivery.objects.filter(status=WebhookDelivery.Status.PENDING).count()
    return {
        "dpp_runs_queued": queued["runs"],
        "dpp_runs_oldest_queued_age_seconds": _age_seconds(now=now, since=queued["oldest"]),
        "dpp_runs_audit_required": audit_required,
        "dpp_ledger_held_usd_micros": wallets["held_micros"],
        "dpp_ledger_available_usd_micros": wallets["available_micros"],
        "dpp_outbox_pending": queued["outbox"],
        "dpp_outbox_oldest_pending_age_seconds": _age_seconds(now=now, since=queued["outbox_oldest"]),
        "dpp_webhook_pending": webhook_pending,
    }


def ops_figures_now() -> dict[str, float]:
    """``ops_figures`` at the current time (the reader /metrics calls at each scrape)."""
    return ops_figures(now=timezone.now())


def ops_overview(*, now: datetime) -> dict:
    threshold = now - timedelta(seconds=settings.DPP_RECONCILE_AFTER_SECONDS)
    return {
        "figures": ops_figures(now=now),
        "by_state": list(Run.objects.values("status", "money_state").annotate(runs=Count("id"))
                         .order_by("status", "money_state")),
        "claimed_past_threshold": Run.objects.filter(finalize_stage=Run.FinalizeStage.CLAIMED,
                                                     status=Run.Status.PROCESSING,
                                                     finalize_claimed_at__lt=threshold).count(),
        "zombies": Run.objects.filter(status=Run.Status.PROCESSING, finalize_stage=Run.FinalizeStage.NONE,
                                      lease_expires_at__lt=now).count(),
        "queue": queue_depth(),
        "workers": live_workers(),
    }
