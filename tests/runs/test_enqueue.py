"""The task is sent only after commit, really lands on the emulator's SQS queue, and a failed
send leaves the run QUEUED for the outbox sweeper."""

from __future__ import annotations

import base64
import time

import pytest
from django.conf import settings

from dpp.aws import sqs_client
from runs.models import Run
from tests.runs.helpers import post_run

pytestmark = pytest.mark.emulator


def queue_url() -> str:
    name = settings.CELERY_BROKER_TRANSPORT_OPTIONS["queue_name_prefix"] + settings.DPP_QUEUE_NAME
    return sqs_client().create_queue(QueueName=name)["QueueUrl"]


def find_message(run_id: str, *, timeout: float = 10.0) -> dict | None:
    """Receive until the message for ``run_id`` shows up (deleting it), bounded in time."""
    client, url = sqs_client(), queue_url()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        answer = client.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=1,
                                        VisibilityTimeout=1)
        for message in answer.get("Messages", []):
            text = base64.b64decode(message["Body"]).decode("utf-8", "replace")
            if run_id in text:
                client.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
                return {"text": text}
    return None


@pytest.mark.django_db
class TestEnqueueOnCommit:
    def test_the_message_is_sent_after_commit_and_the_run_marked_enqueued(
        self, auth_client, django_capture_on_commit_callbacks
    ):
        with django_capture_on_commit_callbacks(execute=True) as callbacks:
            response = post_run(auth_client)
        run = Run.objects.get(pk=response.json()["run_id"])

        assert len(callbacks) == 1
        assert run.enqueued_at is not None and run.enqueue_attempts == 1
        message = find_message(str(run.pk))
        assert message is not None, "the run's task is not on the queue"
        assert "runs.tasks.run_execute_task" in message["text"]

    def test_nothing_is_sent_when_the_transaction_does_not_commit(self, auth_client,
                                                                  django_capture_on_commit_callbacks):
        with django_capture_on_commit_callbacks(execute=False) as callbacks:
            response = post_run(auth_client)
        run = Run.objects.get(pk=response.json()["run_id"])
        assert len(callbacks) == 1
        assert run.enqueued_at is None

    def test_a_failed_send_with_a_fake_broker_error_leaves_the_run_queued_for_the_outbox(
        self, auth_client, monkeypatch, django_capture_on_commit_callbacks
    ):
        def broker_down(*args, **kwargs):
            raise ConnectionError("broker unreachable")

        monkeypatch.setattr("runs.services.outbox.celery_app.send_task", broker_down)
        with django_capture_on_commit_callbacks(execute=True):
            response = post_run(auth_client)

        assert response.status_code == 202
        run = Run.objects.get(pk=response.json()["run_id"])
        assert run.status == "QUEUED" and run.money_state == "RESERVED"
        assert run.enqueued_at is None and run.enqueue_attempts == 1
