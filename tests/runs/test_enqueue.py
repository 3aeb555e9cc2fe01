"""The task is sent only after commit, really lands on the emulator's SQS queue, and a failed
send leaves the run QUEUED for the outbox sweeper."""

from __future__ import annotations

import base64
import time
import uuid

import pytest
from django.conf import settings

from billing.models import Journal, Wallet
from dpp.aws import sqs_client
from runs.models import Run
from runs.services import RunSubmission, submit
from tests.factories import TenantFactory
from tests.runs.helpers import decision_inputs, post_run

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

    def test_nothing_is_sent_until_the_transaction_commits(self, auth_client, django_capture_on_commit_callbacks):
        with django_capture_on_commit_callbacks(execute=False) as callbacks:
            response = post_run(auth_client)
        run = Run.objects.get(pk=response.json()["run_id"])
        assert len(callbacks) == 1
        assert run.enqueued_at is None
        assert find_message(str(run.pk), timeout=2) is None


@pytest.mark.django_db(transaction=True)
class TestEnqueueOnRollback:
    def test_a_submission_that_rolls_back_sends_nothing_and_moves_no_money(self, monkeypatch):
        """A real rollback on PostgreSQL: the failure is injected right after the send was
        registered for after commit, so the transaction rolls back with the callback in it."""
        real_on_commit = submit.transaction.on_commit
        created = []

        def register_then_fail(callback, *args, **kwargs):
            real_on_commit(callback, *args, **kwargs)
            created.append(callback.keywords["run_id"])
            raise RuntimeError("injected failure after the send was registered")

        monkeypatch.setattr(submit.transaction, "on_commit", register_then_fail)
        tenant = TenantFactory(balance_micros=1_000_000)
        submission = RunSubmission(
            idempotency_key=uuid.uuid4().hex, payload_hash="0" * 64, pack_type="decision",
            inputs=decision_inputs(), max_cost_micros=50_000, timebox_sec=30, min_reliability_score=None,
            trace_id="trace-rollback",
        )

        with pytest.raises(RuntimeError):
            submit.run_create(tenant=tenant, submission=submission)

        assert len(created) == 1
        assert not Run.objects.filter(pk=created[0]).exists()
        wallet = Wallet.objects.get(tenant=tenant)
        assert (wallet.available_micros, wallet.held_micros) == (1_000_000, 0)
        assert not Journal.objects.filter(tenant=tenant, phase="RESERVE").exists()
        assert find_message(str(created[0]), timeout=3) is None

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
