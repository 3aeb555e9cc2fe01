"""How the worker fails a run it cannot finish, in process against the real PostgreSQL and S3
(emulator): who pays (issue 15, item 8) and that nothing is left CLAIMED."""

from __future__ import annotations

import time
import uuid

import pytest
from django.conf import settings
from django.core.management import call_command

from billing.models import Wallet
from runs import worker
from runs.models import Run
from runs.packs.base import Pack, PackResult
from runs.services import RunSubmission, run_create
from tests.factories import TenantFactory
from tests.runs.helpers import decision_inputs

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.emulator]

INITIAL = 10_000_000


@pytest.fixture(autouse=True)
def _broker_and_bucket(no_broker, result_bucket):
    """No queue sends; the results bucket exists."""


def make_run(tenant, *, timebox_sec: int = 30) -> Run:
    submission = RunSubmission(
        idempotency_key=uuid.uuid4().hex, payload_hash="0" * 64, pack_type="decision", inputs=decision_inputs(),
        max_cost_micros=500_000, timebox_sec=timebox_sec, min_reliability_score=None, trace_id="trace-failures",
    )
    return run_create(tenant=tenant, submission=submission).run


def wallet(tenant) -> tuple[int, int]:
    w = Wallet.objects.get(tenant=tenant)
    return w.available_micros, w.held_micros


class UnserialisablePack(Pack):
    pack_type = "decision"

    def execute(self, inputs, *, timebox_sec):
        return PackResult(data={"not_json": object()}, actual_cost_micros=20_000)


class TestAPackUnavailableOnThisWorker:
    def test_releases_everything_for_the_platforms_own_fault(self, monkeypatch):
        tenant = TenantFactory(balance_micros=INITIAL)
        run = make_run(tenant)
        monkeypatch.setattr(worker, "pack_get", lambda pack_type: None)  # a rolling deploy

        outcome = worker.run_execute(run_id=run.pk)

        run.refresh_from_db()
        assert outcome == "pack_failed"
        assert (run.status, run.money_state, run.error_reason, run.actual_cost_micros) == (
            "FAILED", "REFUNDED", "PACK_UNAVAILABLE", 0)
        assert wallet(tenant) == (INITIAL, 0)
        call_command("check_ledger")


class TestAResultThatCannotBeSerialised:
    def test_fails_under_the_lease_at_the_minimum_fee_and_is_never_claimed(self, monkeypatch):
        tenant = TenantFactory(balance_micros=INITIAL)
        run = make_run(tenant)
        monkeypatch.setattr(worker, "pack_get", lambda pack_type: UnserialisablePack())

        outcome = worker.run_execute(run_id=run.pk)

        run.refresh_from_db()
        assert outcome == "pack_error"
        assert (run.status, run.money_state, run.finalize_stage, run.error_reason) == (
            "FAILED", "SETTLED", "NONE", "PACK_ERROR")
        assert run.actual_cost_micros == run.minimum_fee_micros == 10_000
        assert wallet(tenant) == (INITIAL - 10_000, 0)
        call_command("check_ledger")


class SwallowingPack(Pack):
    """Catches the timebox's interruption (``except BaseException``) and returns a full result."""

    pack_type = "decision"

    def execute(self, inputs, *, timebox_sec):
        deadline = time.monotonic() + timebox_sec + 0.5
        while time.monotonic() < deadline:
            try:
                time.sleep(0.05)
            except BaseException:  # noqa: BLE001 - the point of this pack
                pass
        return PackResult(data={"late": True}, actual_cost_micros=400_000)


class TestAPackThatSwallowsItsTimeout:
    def test_is_failed_at_the_minimum_fee_not_charged_in_full(self, monkeypatch):
        tenant = TenantFactory(balance_micros=INITIAL)
        run = make_run(tenant, timebox_sec=1)
        monkeypatch.setattr(worker, "pack_get", lambda pack_type: SwallowingPack())

        outcome = worker.run_execute(run_id=run.pk)

        run.refresh_from_db()
        assert outcome == "timebox_exceeded"
        assert (run.status, run.money_state, run.error_reason, run.actual_cost_micros) == (
            "FAILED", "SETTLED", "TIMEBOX_EXCEEDED", 10_000)
        assert wallet(tenant) == (INITIAL - 10_000, 0)
        call_command("check_ledger")


class TestTheRunTask:
    def test_has_a_hard_time_limit_beyond_the_longest_timebox_and_the_lease_grace(self):
        from runs.tasks import run_execute_task

        assert run_execute_task.time_limit == settings.DPP_RUN_TASK_TIME_LIMIT_SECONDS
        assert run_execute_task.time_limit > settings.DPP_MAX_TIMEBOX_SECONDS + settings.DPP_LEASE_GRACE_SECONDS
