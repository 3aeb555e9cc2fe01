"""Deliveries for real: a `celery worker -Q <webhook queue>` process on the emulator's SQS, the
test database and the receiver; a retry driven by the sweep from next_attempt_at; a worker
killed in the middle of an attempt loses nothing."""

from __future__ import annotations

import json
import time
import uuid

import pytest
from django.db import transaction
from django.test import override_settings
from django.utils import timezone
from standardwebhooks import Webhook

from runs.webhooks import services
from runs.webhooks.models import EventType, WebhookAttempt, WebhookDelivery
from tests.runs.webhooks.receiver import Reply
from tests.workers import WorkerProcess, wait_until

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow, pytest.mark.emulator]

WORKER_ENV = {
    "DPP_WEBHOOK_ALLOW_PRIVATE_CIDRS": "127.0.0.0/8",
    "DPP_WEBHOOK_TIMEOUT_SECONDS": "3",
    "DPP_WEBHOOK_CLAIM_SECONDS": "4",
    "DPP_WEBHOOK_RETRY_SCHEDULE": "1,1,1",
}


@pytest.fixture
def webhook_queue(local_receivers):
    name = f"dpp-webhooks-{uuid.uuid4().hex[:8]}"
    with override_settings(DPP_WEBHOOK_QUEUE_NAME=name):
        yield name


@pytest.fixture
def workers(webhook_queue):
    started: list[WorkerProcess] = []

    def start() -> WorkerProcess:
        worker = WorkerProcess(queue_name=f"dpp-runs-{uuid.uuid4().hex[:8]}", queues=[webhook_queue],
                               env={**WORKER_ENV, "DPP_WEBHOOK_QUEUE_NAME": webhook_queue}).start()
        started.append(worker)
        return worker

    yield start
    for worker in started:
        worker.stop()


def record(tenant, *, run_webhook=None):
    with transaction.atomic():
        return services.webhook_events_record(
            tenant_id=tenant.pk, event_type=EventType.RUN_COMPLETED, run_id=uuid.uuid4(), run_webhook=run_webhook,
            payload={"run": {"status": "COMPLETED"}, "version": 3})


def status_of(delivery_id):
    return WebhookDelivery.objects.get(pk=delivery_id).status


class TestWebhookDeliveryAttemptTask:
    def test_a_worker_delivers_per_run_and_endpoint_events_that_verify(self, tenant, receiver, workers):
        workers()
        _, endpoint_secret = services.webhook_endpoint_create(tenant=tenant, url=receiver.url("/endpoint"),
                                                              event_types=[])

        event = record(tenant, run_webhook={"url": receiver.url("/run")})  # sent on commit

        requests = {r.path: r for r in receiver.wait_for(2, timeout=30)}
        Webhook(endpoint_secret).verify(requests["/endpoint"].body, requests["/endpoint"].headers)
        default_secret = services.webhook_default_secret_get(tenant_id=tenant.pk)
        assert Webhook(default_secret).verify(requests["/run"].body, requests["/run"].headers) == json.loads(event.body)
        for delivery in WebhookDelivery.objects.filter(event=event):
            wait_until(lambda d=delivery: status_of(d.pk) == "SUCCEEDED", timeout=10, message="SUCCEEDED recorded")

    def test_a_500_is_retried_by_the_sweep_when_due(self, tenant, receiver, workers):
        workers()
        services.webhook_endpoint_create(tenant=tenant, url=receiver.url(), event_types=[])
        receiver.reply(Reply(500))

        delivery = WebhookDelivery.objects.get(event=record(tenant))
        wait_until(lambda: WebhookAttempt.objects.filter(delivery=delivery).exists(), timeout=30,
                   message="the first attempt")
        assert status_of(delivery.pk) == "PENDING"
        time.sleep(1.2)  # the schedule's first delay (1 s) passes; beat would run the sweep now
        assert services.webhook_deliveries_sweep(now=timezone.now()) == {"due": 1, "sent": 1}

        wait_until(lambda: status_of(delivery.pk) == "SUCCEEDED", timeout=30, message="the retry succeeding")
        first, second = receiver.requests
        assert first.body == second.body and first.headers["webhook-id"] == second.headers["webhook-id"]
        assert int(second.headers["webhook-timestamp"]) > int(first.headers["webhook-timestamp"])

    def test_a_delivery_survives_a_worker_killed_in_the_middle_of_its_attempt(self, tenant, receiver, workers):
        first_worker = workers()
        _, secret = services.webhook_endpoint_create(tenant=tenant, url=receiver.url(), event_types=[])
        receiver.reply(Reply(204, delay=30))  # the first receiver answer never comes in time

        delivery = WebhookDelivery.objects.get(event=record(tenant))
        receiver.wait_for(1, timeout=30)
        first_worker.kill()  # kill -9, mid-attempt: nothing recorded, the claim stays

        stuck = WebhookDelivery.objects.get(pk=delivery.pk)
        assert (stuck.status, stuck.attempts_count, stuck.claim_token is not None) == ("PENDING", 0, True)
        assert services.webhook_deliveries_sweep(now=timezone.now()) == {"due": 0, "sent": 0}  # still claimed
        workers()
        wait_until(lambda: stuck.claimed_until < timezone.now(), timeout=10, message="the claim to expire")
        # The sweep (what beat runs every few seconds) finds it: its send was long ago or the claim expired.
        wait_until(lambda: services.webhook_deliveries_sweep(
            now=timezone.now() + timezone.timedelta(seconds=61))["sent"] == 1, timeout=10, message="the resend")

        wait_until(lambda: status_of(delivery.pk) == "SUCCEEDED", timeout=30, message="delivery after the kill")
        first, second = receiver.requests[:2]
        assert first.body == second.body and first.headers["webhook-id"] == second.headers["webhook-id"]
        Webhook(secret).verify(second.body, second.headers)
        assert list(WebhookAttempt.objects.filter(delivery=delivery).values_list("number", "status_code")) == [
            (1, 204)]
