"""An outbox resend (runs/services/outbox.py ``run_resend``): claim, send, then confirm under the
claim only (a conditional UPDATE on this pass's ``enqueued_at``): a claim taken again by another
pass while the send was in flight is never overwritten."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
from django.utils import timezone

from runs.models import Run
from runs.services import RunSubmission, run_create, run_resend
from tests.factories import TenantFactory
from tests.runs.helpers import decision_inputs


@pytest.fixture
def queued_run(no_broker):
    tenant = TenantFactory(balance_micros=10_000_000)
    return run_create(tenant=tenant, submission=RunSubmission(
        idempotency_key=uuid.uuid4().hex, payload_hash="0" * 64, pack_type="decision", inputs=decision_inputs(),
        max_cost_micros=500_000, timebox_sec=30, min_reliability_score=None, trace_id="trace-enqueue")).run


def fresh(run: Run) -> Run:
    return Run.objects.get(pk=run.pk)


@pytest.mark.django_db
class TestRunResend:
    def test_a_confirmed_resend_marks_the_claim_and_counts_one_send(self, queued_run, monkeypatch):
        sent = []
        monkeypatch.setattr("runs.services.outbox.run_send", lambda **kwargs: sent.append(kwargs["run_id"]))
        now = timezone.now()

        assert run_resend(run=fresh(queued_run), now=now) == "resent"

        run = fresh(queued_run)
        assert sent == [run.pk] and (run.enqueued_at, run.enqueue_attempts) == (now, 1)

    def test_a_newer_claim_taken_during_the_send_is_not_overwritten(self, queued_run, monkeypatch):
        now = timezone.now()
        newer = now + timedelta(seconds=30)

        def send_while_another_pass_claims(**kwargs):
            Run.objects.filter(pk=kwargs["run_id"]).update(enqueued_at=newer)

        monkeypatch.setattr("runs.services.outbox.run_send", send_while_another_pass_claims)

        assert run_resend(run=fresh(queued_run), now=now) == "resent"

        run = fresh(queued_run)
        assert (run.enqueued_at, run.enqueue_attempts) == (newer, 0)

    def test_a_failed_send_puts_the_claim_back_and_counts_nothing(self, queued_run, monkeypatch):
        def broker_down(**kwargs):
            raise ConnectionError("broker unreachable")

        monkeypatch.setattr("runs.services.outbox.run_send", broker_down)

        assert run_resend(run=fresh(queued_run), now=timezone.now()) == "send_failed"

        run = fresh(queued_run)
        assert (run.status, run.enqueued_at, run.enqueue_attempts) == ("QUEUED", None, 0)
