"""The worker's lease (runs/services/lease.py) against the real PostgreSQL: the lease is capped
at the run's start + timebox + grace (issue 15, item 4) and its times are the database's clock,
never a worker or reaper host's (item 17)."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
from django.conf import settings
from django.core.management import call_command

from billing.models import Wallet
from dpp.clock import db_now
from runs import services, tasks
from runs.models import Run
from runs.services import RunSubmission, run_claim_lease, run_create, run_extend_lease
from tests.factories import TenantFactory
from tests.runs.helpers import decision_inputs

pytestmark = pytest.mark.django_db

INITIAL = 10_000_000


@pytest.fixture(autouse=True)
def _no_broker(no_broker):
    """Runs created here are not sent to the queue."""


def make_run(tenant, *, timebox_sec: int = 30) -> Run:
    submission = RunSubmission(
        idempotency_key=uuid.uuid4().hex, payload_hash="0" * 64, pack_type="decision", inputs=decision_inputs(),
        max_cost_micros=500_000, timebox_sec=timebox_sec, min_reliability_score=None, trace_id="trace-lease",
    )
    return run_create(tenant=tenant, submission=submission).run


class SkewedClock:
    """A host whose clock is ``offset`` away from the database's (a fake clock: unit test)."""

    def __init__(self, offset: timedelta):
        self.offset = offset

    def now(self):
        return db_now() + self.offset


class TestTheLeaseCap:
    def test_the_heartbeat_never_extends_past_start_plus_timebox_plus_grace(self):
        tenant = TenantFactory(balance_micros=INITIAL)
        run = run_claim_lease(run_id=make_run(tenant, timebox_sec=30).pk, lease_token=uuid.uuid4())
        started_at = db_now() - timedelta(minutes=10)  # a pack stuck in native code for ten minutes
        Run.objects.filter(pk=run.pk).update(started_at=started_at)

        assert run_extend_lease(run_id=run.pk, lease_token=run.lease_token)

        run.refresh_from_db()
        assert run.lease_expires_at == started_at + timedelta(seconds=30 + settings.DPP_LEASE_GRACE_SECONDS)
        assert tasks.zombies_reap_task() == {"reaped": 1}  # the reservation is released at the minimum fee
        wallet = Wallet.objects.get(tenant=tenant)
        assert (wallet.available_micros, wallet.held_micros) == (INITIAL - 10_000, 0)
        call_command("check_ledger")

    def test_a_short_timebox_gets_a_lease_shorter_than_the_lease_term(self):
        tenant = TenantFactory(balance_micros=INITIAL)
        before = db_now()
        run = run_claim_lease(run_id=make_run(tenant, timebox_sec=5).pk, lease_token=uuid.uuid4())

        assert run.lease_expires_at - run.started_at == timedelta(seconds=5 + settings.DPP_LEASE_GRACE_SECONDS)
        assert run.started_at >= before


class TestTheDatabaseClock:
    def test_a_worker_whose_clock_is_an_hour_late_still_gets_a_full_lease(self, monkeypatch):
        tenant = TenantFactory(balance_micros=INITIAL)
        run = make_run(tenant)
        monkeypatch.setattr(services.lease.timezone, "now", SkewedClock(-timedelta(hours=1)).now)

        run = run_claim_lease(run_id=run.pk, lease_token=uuid.uuid4())
        assert run_extend_lease(run_id=run.pk, lease_token=run.lease_token)

        run.refresh_from_db()
        assert run.lease_expires_at > db_now() + timedelta(seconds=30)
        assert run.started_at > db_now() - timedelta(minutes=1)

    def test_a_reaper_whose_clock_is_an_hour_ahead_reaps_no_live_lease(self, monkeypatch):
        tenant = TenantFactory(balance_micros=INITIAL)
        run = run_claim_lease(run_id=make_run(tenant).pk, lease_token=uuid.uuid4())
        monkeypatch.setattr("django.utils.timezone.now", SkewedClock(timedelta(hours=1)).now)

        assert tasks.zombies_reap_task() == {}

        assert Run.objects.get(pk=run.pk).status == "PROCESSING"
