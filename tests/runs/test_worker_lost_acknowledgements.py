"""The worker's retry wrapper after a lost commit acknowledgement (issue 15, item 2): the first
attempt of a claim commits, then the connection drops before its answer arrives. The retry must
recognise its own claim (same token, chosen before the first attempt) and go on, not report
"another actor won" and drop work the customer then pays the minimum fee for.

Real PostgreSQL and S3 (emulator); the only injected fault is the lost answer."""

from __future__ import annotations

import uuid

import pytest
from django.core.management import call_command
from django.db import OperationalError

from billing.models import Journal, Wallet
from runs import worker
from runs.models import Run
from runs.services import RunSubmission, run_claim_lease, run_create, run_finalize_claim, run_finalize_commit
from tests.factories import TenantFactory
from tests.runs.helpers import decision_inputs

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.emulator]

INITIAL = 10_000_000


@pytest.fixture(autouse=True)
def _broker_and_bucket(no_broker, result_bucket):
    """No queue sends; the results bucket exists."""


def make_run(tenant) -> Run:
    submission = RunSubmission(
        idempotency_key=uuid.uuid4().hex, payload_hash="0" * 64, pack_type="decision", inputs=decision_inputs(),
        max_cost_micros=500_000, timebox_sec=30, min_reliability_score=None, trace_id="trace-lost-ack",
    )
    return run_create(tenant=tenant, submission=submission).run


def answer_lost_once(call):
    """``call`` commits, then its answer is lost once (the connection drops)."""
    state = {"lost": False}

    def wrapped(**kwargs):
        result = call(**kwargs)
        if not state["lost"]:
            state["lost"] = True
            raise OperationalError("server closed the connection unexpectedly")
        return result

    return wrapped


class TestLeaseClaimAfterALostAnswer:
    def test_the_retry_recognises_its_own_lease_and_the_run_completes(self, monkeypatch):
        tenant = TenantFactory(balance_micros=INITIAL)
        run = make_run(tenant)
        monkeypatch.setattr(worker, "run_claim_lease", answer_lost_once(run_claim_lease))

        outcome = worker.run_execute(run_id=run.pk)

        run.refresh_from_db()
        assert outcome == "completed"
        assert (run.status, run.money_state, run.attempts) == ("COMPLETED", "SETTLED", 1)
        wallet = Wallet.objects.get(tenant=tenant)
        assert (wallet.available_micros, wallet.held_micros) == (INITIAL - run.actual_cost_micros, 0)
        call_command("check_ledger")

    def test_another_token_still_loses(self):
        tenant = TenantFactory(balance_micros=INITIAL)
        run = make_run(tenant)
        assert run_claim_lease(run_id=run.pk, lease_token=uuid.uuid4()) is not None

        assert run_claim_lease(run_id=run.pk, lease_token=uuid.uuid4()) is None


class TestFinalizeClaimAfterALostAnswer:
    def test_the_retry_recognises_its_own_claim_and_the_run_completes(self, monkeypatch):
        tenant = TenantFactory(balance_micros=INITIAL)
        run = make_run(tenant)
        monkeypatch.setattr(worker, "run_finalize_claim", answer_lost_once(run_finalize_claim))

        outcome = worker.run_execute(run_id=run.pk)

        run.refresh_from_db()
        assert outcome == "completed"
        assert (run.status, run.money_state, run.finalize_stage) == ("COMPLETED", "SETTLED", "COMMITTED")
        call_command("check_ledger")

    def test_another_token_still_loses(self):
        tenant = TenantFactory(balance_micros=INITIAL)
        run = run_claim_lease(run_id=make_run(tenant).pk, lease_token=uuid.uuid4())
        stale_copy = Run.objects.get(pk=run.pk)
        assert run_finalize_claim(run=run, finalize_token=uuid.uuid4()) is not None

        assert run_finalize_claim(run=stale_copy, finalize_token=uuid.uuid4()) is None


class TestFinalizeCommitAfterALostAnswer:
    def test_the_retry_recognises_its_own_commit_and_reports_completed_with_one_settlement(self, monkeypatch):
        tenant = TenantFactory(balance_micros=INITIAL)
        run = make_run(tenant)
        monkeypatch.setattr(worker, "run_finalize_commit", answer_lost_once(run_finalize_commit))

        outcome = worker.run_execute(run_id=run.pk)

        run.refresh_from_db()
        assert outcome == "completed"
        assert (run.status, run.money_state) == ("COMPLETED", "SETTLED")
        assert Journal.objects.filter(run_id=run.pk, phase="FINALIZE").count() == 1
        call_command("check_ledger")
