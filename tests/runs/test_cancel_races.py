"""Cancel racing every other actor, against the real PostgreSQL (threads with their own
connections) and the emulator's S3: 20 concurrent cancels of one run, cancel injected at named
points of the worker (runs.faults.fault_hook) on both sides of the lease claim and of the
finalize claim, and cancel racing the zombie reaper and an operator. Each race ends with exactly
one transition, one ledger movement, exact micros and check_ledger green."""

from __future__ import annotations

import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from functools import partial

import pytest
from django.core.management import call_command
from django.db import connection
from django.test import override_settings
from django.utils import timezone

from billing.models import Journal, Wallet
from runs import storage
from runs.faults import fault_hook
from runs.models import Run, RunEvent
from runs.services import (
    RunNotCancelable,
    RunSubmission,
    run_cancel,
    run_claim_lease,
    run_create,
    run_mark_audit_required,
    run_reap_zombie,
    run_resolve_audit,
)
from runs.worker import run_execute
from tenants.services import api_key_issue
from tests.factories import TenantFactory
from tests.runs.helpers import decision_inputs
from tests.workers import TEST_PACKS

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

INITIAL = 10_000_000
CAP = 500_000
MIN_FEE = 10_000  # of 0.5000
DECISION_COST = 10_400  # 2 options x 2 criteria


@pytest.fixture(autouse=True)
def _no_broker(no_broker):
    """Runs are created by the service and driven by the test, never sent to a queue."""


@pytest.fixture
def tenant_with_key():
    tenant = TenantFactory(balance_micros=INITIAL)
    return tenant, api_key_issue(tenant=tenant, label="races").plaintext


def make_run(tenant, *, pack_type: str = "decision", inputs: dict | None = None, cap_micros: int = CAP) -> Run:
    return run_create(tenant=tenant, submission=RunSubmission(
        idempotency_key=uuid.uuid4().hex, payload_hash="0" * 64, pack_type=pack_type,
        inputs=inputs if inputs is not None else decision_inputs(), max_cost_micros=cap_micros, timebox_sec=30,
        min_reliability_score=None, trace_id="trace-cancel-race")).run


def wallet(tenant) -> tuple[int, int]:
    w = Wallet.objects.get(tenant=tenant)
    return w.available_micros, w.held_micros


def settlements(run_id) -> int:
    return Journal.objects.filter(run_id=run_id, phase="FINALIZE").count()


def ledger_is_green() -> bool:
    try:
        call_command("check_ledger")
    except SystemExit as exit_:
        raise AssertionError(f"check_ledger failed with {exit_.code}") from None
    return True


def on_own_connection(call):
    """Run ``call`` in another thread with its own database connection (another actor); return
    what it returned or raised."""
    outcome: list = []

    def act():
        try:
            outcome.append(call())
        except Exception as error:  # the other actor's answer, checked by the test
            outcome.append(error)
        finally:
            connection.close()

    thread = threading.Thread(target=act)
    thread.start()
    thread.join(timeout=60)
    assert outcome, "the other actor did not answer"
    return outcome[0]


def at_once(*calls) -> list:
    """Start every call in its own thread and connection behind one barrier; their answers."""
    barrier = threading.Barrier(len(calls))

    def one(call):
        try:
            barrier.wait(timeout=10)
            return call()
        except Exception as error:
            return error
        finally:
            connection.close()

    with ThreadPoolExecutor(max_workers=len(calls)) as pool:
        return list(pool.map(one, calls))


class TestTwentyConcurrentCancels:
    @pytest.mark.parametrize("claimed", [False, True], ids=["queued", "processing"])
    def test_make_one_transition_and_one_ledger_movement(self, tenant_with_key, claimed):
        from rest_framework.test import APIClient

        tenant, key = tenant_with_key
        run = make_run(tenant)
        if claimed:
            run_claim_lease(run_id=run.pk)

        def cancel():
            client = APIClient()
            client.credentials(HTTP_AUTHORIZATION=f"Bearer {key}")
            response = client.post(f"/v1/runs/{run.pk}/cancel", {"reason": "all at once"}, format="json")
            return response.status_code, response.json()["status"], response.json()["cost"]["used_usd"]

        answers = at_once(*[cancel] * 20)

        charge = MIN_FEE if claimed else 0
        assert answers == [(200, "CANCELED", "0.0100" if claimed else "0.0000")] * 20
        assert RunEvent.objects.filter(run_id=run.pk, kind="CANCELED").count() == 1
        assert settlements(run.pk) == 1
        stored = Run.objects.get(pk=run.pk)
        assert (stored.status, stored.actual_cost_micros, stored.version) == ("CANCELED", charge, 2 if claimed else 1)
        assert wallet(tenant) == (INITIAL - charge, 0)
        assert ledger_is_green()


@pytest.mark.emulator
@pytest.mark.usefixtures("result_bucket")
class TestCancelAtNamedPointsOfTheWorker:
    """The worker runs in this process (run_execute, the task's body); at a named point, another
    actor cancels on its own connection; then the worker carries on."""

    def _cancel_at(self, point: str, tenant, run: Run):
        answers: list = []
        with fault_hook(point, lambda: answers.append(on_own_connection(
                lambda: run_cancel(tenant=tenant, run_id=run.pk, reason=f"at {point}")))):
            outcome = run_execute(run_id=run.pk)
        assert len(answers) == 1, f"the point {point} was not reached"
        return outcome, answers[0]

    def test_before_the_lease_claim_the_cancel_wins_and_everything_is_released(self, tenant_with_key):
        tenant, _ = tenant_with_key
        run = make_run(tenant)

        outcome, answer = self._cancel_at("before_lease_claim", tenant, run)

        assert outcome == "ignored" and answer.canceled_now
        stored = Run.objects.get(pk=run.pk)
        assert (stored.status, stored.money_state, stored.actual_cost_micros, stored.attempts) == (
            "CANCELED", "REFUNDED", 0, 0)
        assert wallet(tenant) == (INITIAL, 0) and settlements(run.pk) == 1
        assert ledger_is_green()

    def test_after_the_lease_claim_the_claim_won_and_the_cancel_charges_the_minimum_fee(self, tenant_with_key):
        tenant, _ = tenant_with_key
        run = make_run(tenant)

        outcome, answer = self._cancel_at("mid_execution", tenant, run)

        assert outcome == "claim_lost" and answer.canceled_now
        stored = Run.objects.get(pk=run.pk)
        assert (stored.status, stored.money_state, stored.actual_cost_micros, stored.attempts) == (
            "CANCELED", "SETTLED", MIN_FEE, 1)
        assert stored.finalize_stage == "NONE" and stored.result_key == ""
        assert wallet(tenant) == (INITIAL - MIN_FEE, 0) and settlements(run.pk) == 1
        assert ledger_is_green()

    def test_before_the_finalize_claim_the_cancel_wins_and_nothing_is_uploaded(self, tenant_with_key):
        tenant, _ = tenant_with_key
        run = make_run(tenant)

        outcome, answer = self._cancel_at("before_finalize_claim", tenant, run)

        assert outcome == "claim_lost" and answer.canceled_now
        stored = Run.objects.get(pk=run.pk)
        assert (stored.status, stored.money_state, stored.actual_cost_micros) == ("CANCELED", "SETTLED", MIN_FEE)
        from runs.services import result_key_for

        assert storage.receipt_get(bucket=stored.result_bucket or "dpp-results", key=result_key_for(stored)) is None
        assert wallet(tenant) == (INITIAL - MIN_FEE, 0) and settlements(run.pk) == 1
        assert ledger_is_green()

    def test_after_the_finalize_claim_the_cancel_is_refused_and_the_run_completes_at_its_cost(self,
                                                                                              tenant_with_key):
        tenant, _ = tenant_with_key
        run = make_run(tenant)

        outcome, answer = self._cancel_at("after_claim", tenant, run)

        assert outcome == "completed"
        assert isinstance(answer, RunNotCancelable) and answer.extra["finalize_stage"] == "CLAIMED"
        stored = Run.objects.get(pk=run.pk)
        assert (stored.status, stored.money_state, stored.actual_cost_micros) == ("COMPLETED", "SETTLED",
                                                                                  DECISION_COST)
        assert not RunEvent.objects.filter(run_id=run.pk, kind="CANCELED").exists()
        assert wallet(tenant) == (INITIAL - DECISION_COST, 0) and settlements(run.pk) == 1
        assert ledger_is_green()

    def test_a_cancel_during_the_pack_stops_it_at_the_next_heartbeat(self, tenant_with_key):
        tenant, _ = tenant_with_key
        with override_settings(DPP_PACKS=TEST_PACKS.split(","), DPP_HEARTBEAT_SECONDS=1):
            run = make_run(tenant, pack_type="test_slow", inputs={"seconds": 30, "cost_micros": 20_000})
            canceler = threading.Timer(0.5, lambda: on_own_connection(lambda: run_cancel(tenant=tenant,
                                                                                         run_id=run.pk)))
            canceler.start()
            started = time.monotonic()
            outcome = run_execute(run_id=run.pk)
            elapsed = time.monotonic() - started
            canceler.join()

        assert outcome == "canceled"
        assert elapsed < 10, f"the 30 s pack was not stopped ({elapsed:.1f} s)"
        stored = Run.objects.get(pk=run.pk)
        assert (stored.status, stored.actual_cost_micros, stored.finalize_stage) == ("CANCELED", MIN_FEE, "NONE")
        assert wallet(tenant) == (INITIAL - MIN_FEE, 0) and settlements(run.pk) == 1
        assert ledger_is_green()


class TestCancelRacingOtherActors:
    ROUNDS = 6

    def test_cancel_against_the_lease_claim_one_wins_each_time_and_both_outcomes_are_exact(self,
                                                                                           tenant_with_key):
        tenant, _ = tenant_with_key
        for _ in range(self.ROUNDS):
            run = make_run(tenant)
            canceled, claimed = at_once(partial(run_cancel, tenant=tenant, run_id=run.pk),
                                        partial(run_claim_lease, run_id=run.pk))
            stored = Run.objects.get(pk=run.pk)
            assert canceled.canceled_now and stored.status == "CANCELED"
            # The claim won (then the cancel charged the minimum fee) or lost (everything released).
            expected = (1, MIN_FEE, "SETTLED") if claimed is not None else (0, 0, "REFUNDED")
            assert (stored.attempts, stored.actual_cost_micros, stored.money_state) == expected
            assert settlements(run.pk) == 1
        charged = sum(Run.objects.filter(tenant=tenant).values_list("actual_cost_micros", flat=True))
        assert wallet(tenant) == (INITIAL - charged, 0)
        assert ledger_is_green()

    def test_cancel_against_the_zombie_reaper_settles_once_at_the_minimum_fee(self, tenant_with_key):
        tenant, _ = tenant_with_key
        long_ago = timezone.now() - timedelta(hours=1)
        for _ in range(self.ROUNDS):
            run = run_claim_lease(run_id=make_run(tenant).pk, now=long_ago)
            canceled, reaped = at_once(partial(run_cancel, tenant=tenant, run_id=run.pk),
                                       partial(run_reap_zombie, run=run, now=timezone.now()))
            stored = Run.objects.get(pk=run.pk)
            if reaped is True:
                assert isinstance(canceled, RunNotCancelable) and stored.error_reason == "LEASE_EXPIRED"
            else:
                assert canceled.canceled_now and stored.error_reason == "CANCELED"
            assert stored.actual_cost_micros == MIN_FEE and settlements(run.pk) == 1
        assert wallet(tenant) == (INITIAL - self.ROUNDS * MIN_FEE, 0)
        assert ledger_is_green()

    def test_cancel_against_an_operator_decision_only_one_moves_money(self, tenant_with_key):
        tenant, _ = tenant_with_key
        run = run_claim_lease(run_id=make_run(tenant).pk)
        marked, canceled = at_once(lambda: run_mark_audit_required(run=run, why="race", now=timezone.now()),
                                   lambda: run_cancel(tenant=tenant, run_id=run.pk))
        stored = Run.objects.get(pk=run.pk)
        if marked is True:  # the run awaits an operator: cancel refused, the operator decides once
            assert isinstance(canceled, RunNotCancelable)
            released, refused = at_once(
                lambda: run_resolve_audit(run_id=run.pk, action="release", actor="admin:ops", reason="race"),
                lambda: run_cancel(tenant=tenant, run_id=run.pk))
            assert isinstance(refused, RunNotCancelable) and released.status == "FAILED"
            assert Run.objects.get(pk=run.pk).status == "FAILED"
            assert wallet(tenant) == (INITIAL, 0)
        else:
            assert canceled.canceled_now and stored.status == "CANCELED" and marked is False
            assert wallet(tenant) == (INITIAL - MIN_FEE, 0)
        assert settlements(run.pk) == 1
        assert ledger_is_green()
