"""The run row is the outbox: a submission commits without any broker I/O and wakes the relay;
the relay (runs/relay.py over runs/services/outbox.py) claims pending runs with SKIP LOCKED,
publishes them to the emulator's SQS queue, then marks them; a failed send goes back to pending
and does not count as a send."""

from __future__ import annotations

import base64
import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import pytest
from django.conf import settings
from django.db import connection
from django.utils import timezone

from dpp.aws import sqs_client
from dpp.celery import app as celery_app
from runs.models import Run
from runs.reaper import outbox_sweep
from runs.relay import relay_batch, relay_forever
from runs.services import RunSubmission, run_create
from runs.services.outbox import runs_relay_claim
from tests.factories import TenantFactory
from tests.runs.helpers import decision_inputs, post_run
from tests.workers import wait_until

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


def submit(tenant, index: int = 0) -> Run:
    return run_create(tenant=tenant, submission=RunSubmission(
        idempotency_key=f"relay-{index}-{time.monotonic_ns()}", payload_hash="0" * 64, pack_type="decision",
        inputs=decision_inputs(), max_cost_micros=50_000, timebox_sec=30, min_reliability_score=None,
        trace_id="relay-test")).run


def broker_down(*args, **kwargs):
    raise ConnectionError("broker unreachable")


@pytest.mark.django_db
class TestSubmissionDoesNoBrokerIO:
    def test_a_post_answers_202_with_the_broker_down_and_only_wakes_the_relay_after_commit(
        self, auth_client, monkeypatch, django_capture_on_commit_callbacks
    ):
        monkeypatch.setattr("runs.services.outbox.celery_app.send_task", broker_down)
        woken = []
        monkeypatch.setattr("runs.services.submit.relay_wake", lambda: woken.append(1))
        with django_capture_on_commit_callbacks(execute=True) as callbacks:
            response = post_run(auth_client)

        assert response.status_code == 202
        run = Run.objects.get(pk=response.json()["run_id"])
        assert (run.status, run.money_state, run.enqueued_at, run.enqueue_attempts) == ("QUEUED", "RESERVED", None, 0)
        assert len(callbacks) == 1 and woken == [1]


@pytest.mark.django_db
class TestRelayBatch:
    def test_sends_a_pending_run_to_the_queue_then_marks_it(self, tenant, no_broker):
        run = submit(tenant)
        with celery_app.producer_pool.acquire(block=True) as producer:
            counts = relay_batch(producer=producer, limit=10)

        assert counts == {"claimed": 1, "sent": 1, "failed": 0}
        run.refresh_from_db()
        assert run.enqueued_at is not None and run.enqueue_attempts == 1
        message = find_message(str(run.pk))
        assert message is not None and "runs.tasks.run_execute_task" in message["text"]

    def test_a_failed_send_goes_back_to_pending_and_is_not_counted(self, tenant, no_broker, monkeypatch):
        run = submit(tenant)
        monkeypatch.setattr("runs.services.outbox.celery_app.send_task", broker_down)
        with celery_app.producer_pool.acquire(block=True) as producer:
            counts = relay_batch(producer=producer, limit=10)

        assert counts == {"claimed": 1, "sent": 0, "failed": 1}
        run.refresh_from_db()
        assert (run.enqueued_at, run.enqueue_attempts) == (None, 0)

    def test_the_first_failed_send_ends_the_batch_and_puts_every_unsent_run_back(self, tenant, no_broker,
                                                                                  monkeypatch):
        """A hung broker costs one send's timeout per batch, not one per claimed run."""
        runs = [submit(tenant, index) for index in range(4)]
        attempts = []

        def first_accepted_then_down(*args, **kwargs):
            attempts.append(kwargs["kwargs"]["run_id"])
            if len(attempts) > 1:
                raise ConnectionError("broker unreachable")

        monkeypatch.setattr("runs.services.outbox.celery_app.send_task", first_accepted_then_down)
        with celery_app.producer_pool.acquire(block=True) as producer:
            counts = relay_batch(producer=producer, limit=10)

        assert counts == {"claimed": 4, "sent": 1, "failed": 3}
        assert len(attempts) == 2  # the third and fourth runs were not tried
        states = {run.pk: (run.enqueued_at is not None, run.enqueue_attempts)
                  for run in Run.objects.filter(pk__in=[r.pk for r in runs])}
        assert sorted(states.values()) == [(False, 0), (False, 0), (False, 0), (True, 1)]
        assert states[runs[0].pk] == (True, 1)  # oldest first: the one accepted is confirmed

    def test_runs_past_their_deadline_are_left_to_the_outbox_pass(self, tenant, no_broker):
        run = submit(tenant)
        Run.objects.filter(pk=run.pk).update(deadline_at=timezone.now() - timedelta(seconds=1))

        assert runs_relay_claim(now=timezone.now(), limit=10) == []

    def test_a_claim_whose_relay_died_before_the_mark_is_sent_again_by_the_outbox_pass(self, tenant, no_broker,
                                                                                       monkeypatch):
        run = submit(tenant)
        long_ago = timezone.now() - timedelta(minutes=1)
        Run.objects.filter(pk=run.pk).update(created_at=long_ago)
        assert [p.id for p in runs_relay_claim(now=long_ago, limit=10)] == [run.pk]  # ... and the relay died
        sent = []
        monkeypatch.setattr("runs.services.outbox.run_send", lambda **kwargs: sent.append(kwargs["run_id"]))

        counts = outbox_sweep(now=timezone.now())

        assert sent == [run.pk] and counts.get("resent") == 1
        run.refresh_from_db()
        assert run.enqueue_attempts == 1


@pytest.mark.django_db(transaction=True)
class TestRelaysRunningAtOnce:
    def test_two_relays_claim_disjoint_batches_that_cover_every_pending_run(self, monkeypatch):
        monkeypatch.setattr("runs.services.submit.relay_wake", lambda: None)
        tenant = TenantFactory(balance_micros=10_000_000)
        ids = {submit(tenant, index).pk for index in range(40)}
        barrier = threading.Barrier(2)

        def relay(_: int) -> list:
            claimed = []
            try:
                barrier.wait(timeout=10)
                while batch := runs_relay_claim(now=timezone.now(), limit=3):
                    claimed += [pending.id for pending in batch]
            finally:
                connection.close()
            return claimed

        with ThreadPoolExecutor(2) as pool:
            first, second = pool.map(relay, range(2))

        assert not set(first) & set(second)
        assert set(first) | set(second) == ids and len(first) + len(second) == 40

    def test_a_commit_wakes_a_running_relay_long_before_its_poll(self):
        tenant = TenantFactory(balance_micros=10_000_000)
        stop = threading.Event()

        def run_relay():
            try:
                relay_forever(stop=stop, batch_size=10, poll_seconds=60)
            finally:
                connection.close()

        thread = threading.Thread(target=run_relay, daemon=True)
        thread.start()
        try:
            time.sleep(1)  # the relay has drained and waits on its wake-up channel
            run = submit(tenant)  # its commit publishes the wake-up
            wait_until(lambda: Run.objects.filter(pk=run.pk, enqueue_attempts=1).exists(), timeout=10,
                       message="the relay to send the run")
        finally:
            stop.set()
            from runs.services.outbox import relay_wake

            relay_wake()
            thread.join(timeout=20)
        assert not thread.is_alive()
        assert find_message(str(run.pk)) is not None


@pytest.mark.django_db(transaction=True)
class TestSubmissionRollback:
    def test_a_submission_that_rolls_back_leaves_nothing_to_send_and_moves_no_money(self, monkeypatch, no_broker):
        """A real rollback on PostgreSQL: the failure is injected after the run row and its history
        row were written inside the submission's transaction, so both roll back with it."""
        from billing.models import Journal, Wallet
        from runs.services import submit as submit_module

        real_record = submit_module.run_event_record
        inserted = []

        def record_then_fail(run, **kwargs):
            real_record(run, **kwargs)
            inserted.append(run.pk)
            raise RuntimeError("injected failure inside the submission transaction")

        monkeypatch.setattr(submit_module, "run_event_record", record_then_fail)
        tenant = TenantFactory(balance_micros=1_000_000)

        with pytest.raises(RuntimeError):
            submit(tenant)

        assert len(inserted) == 1
        assert not Run.objects.filter(pk=inserted[0]).exists()
        wallet = Wallet.objects.get(tenant=tenant)
        assert (wallet.available_micros, wallet.held_micros, wallet.active_runs) == (1_000_000, 0, 0)
        assert not Journal.objects.filter(tenant=tenant, phase="RESERVE").exists()
        with celery_app.producer_pool.acquire(block=True) as producer:
            assert relay_batch(producer=producer, limit=10) == {"claimed": 0, "sent": 0, "failed": 0}


class TestRelayWithoutTheDatabase:
    def test_an_outage_is_one_warning_and_the_relay_goes_on(self, monkeypatch, caplog):
        """A fake relay_batch: the database refuses three batches, then answers (the relay must
        neither die nor log a traceback every poll)."""
        from django.db import OperationalError

        import runs.relay as relay_module

        stop = threading.Event()
        calls = []

        def fake_batch(*, producer, limit):
            calls.append(1)
            if len(calls) <= 3:
                raise OperationalError("connection refused")
            stop.set()
            return {"claimed": 0, "failed": 0}

        monkeypatch.setattr(relay_module, "relay_batch", fake_batch)
        with caplog.at_level(logging.INFO, logger="runs.relay"):
            relay_forever(stop=stop, batch_size=10, poll_seconds=0.01)

        assert len(calls) == 4
        records = [(r.levelname, r.getMessage()) for r in caplog.records if r.name == "runs.relay"]
        assert [m for level, m in records if level == "WARNING"] == [
            "relay: the database is unreachable; retrying every poll interval"]
        assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
        assert ("INFO", "relay: the database answers again") in records


class TestRelayWithoutRedis:
    def test_a_wake_up_channel_outage_is_one_warning_without_traceback_then_one_info(self, caplog):
        from django.test import override_settings

        from runs.relay import _Wakeup

        wakeup = _Wakeup()
        try:
            with caplog.at_level(logging.INFO, logger="runs.relay"):
                with override_settings(REDIS_URL="redis://127.0.0.1:1/0"):  # nothing listens there
                    for _ in range(3):
                        wakeup.wait(0.01)
                wakeup.wait(0.01)  # the real Redis answers again
        finally:
            wakeup.close()

        records = [r for r in caplog.records if r.name == "runs.relay"]
        assert [(r.levelname, r.getMessage()) for r in records] == [
            ("WARNING", "relay: the wake-up channel is unavailable; polling"),
            ("INFO", "relay: the wake-up channel answers again")]
        assert records[0].error == "ConnectionError" and not records[0].exc_info
