"""The worker rides out a database outage (issue 15, item 19): ``with_db_reconnect`` retries a
state transition for DPP_WORKER_DB_RETRY_SECONDS with a capped exponential back-off, then gives
up. Before, three attempts (about 1.5 s) ended the task and the run was reaped at the minimum fee
once its lease expired: the customer paid for the platform's outage.

The unit tests use a fake transition, a fake clock and a fake connection (no database); the last
class runs a real run on PostgreSQL and the emulator's S3 with the outage injected in front of the
finalize claim, and the lease expiring while the database is away."""

from __future__ import annotations

import logging
import uuid
from datetime import timedelta

import pytest
from django.core.management import call_command
from django.db import InterfaceError, OperationalError
from django.utils import timezone

from billing.models import Journal, Wallet
from runs import worker
from runs.models import Run
from runs.reaper import zombies_reap
from runs.services import RunSubmission, run_create, run_finalize_claim
from tests.factories import TenantFactory
from tests.runs.helpers import decision_inputs

SECRET = "password=hunter2 host=db.internal"


class FakeClock:
    """``time`` as the worker sees it: sleeping moves the monotonic clock, nothing waits."""

    def __init__(self):
        self.now = 1000.0
        self.sleeps: list[float] = []

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


class FakeConnection:
    def __init__(self):
        self.closes = 0

    def close(self) -> None:
        self.closes += 1


class FakeTransition:
    """Raises ``error`` on its first ``failures`` calls (each one also costs ``cost`` seconds of
    the fake clock, as a refused connection does), then answers ``answer``."""

    __name__ = "fake_transition"

    def __init__(self, *, failures: int, clock: FakeClock, answer="won", error=OperationalError, cost=0.0):
        self.failures, self.clock, self.answer, self.error, self.cost = failures, clock, answer, error, cost
        self.calls: list[dict] = []

    def __call__(self, **kwargs):
        self.calls.append(kwargs)
        self.clock.now += self.cost
        if len(self.calls) <= self.failures:
            raise self.error(f"connection to server failed: {SECRET}")
        return self.answer


@pytest.fixture
def clock(monkeypatch) -> FakeClock:
    fake = FakeClock()
    monkeypatch.setattr(worker, "time", fake)
    return fake


@pytest.fixture
def fake_connection(monkeypatch) -> FakeConnection:
    fake = FakeConnection()
    monkeypatch.setattr(worker, "connection", fake)
    return fake


@pytest.fixture
def budget(settings):
    settings.DPP_WORKER_DB_RETRY_SECONDS = 90
    return settings


class TestWithDbReconnect:
    def test_retries_until_the_database_answers_with_the_same_arguments(self, clock, fake_connection, budget):
        token = uuid.uuid4()
        transition = FakeTransition(failures=8, clock=clock)

        answer = worker.with_db_reconnect(transition, run_id="r1", lease_token=token)

        assert answer == "won"
        assert len(transition.calls) == 9
        assert all(call == {"run_id": "r1", "lease_token": token} for call in transition.calls)  # one token

    def test_backs_off_from_a_quarter_second_doubling_to_two_seconds(self, clock, fake_connection, budget):
        transition = FakeTransition(failures=6, clock=clock)

        worker.with_db_reconnect(transition)

        assert clock.sleeps == [0.25, 0.5, 1.0, 2.0, 2.0, 2.0]

    def test_closes_the_connection_between_tries(self, clock, fake_connection, budget):
        transition = FakeTransition(failures=4, clock=clock)

        worker.with_db_reconnect(transition)

        assert fake_connection.closes == 4

    def test_an_interface_error_is_retried_too(self, clock, fake_connection, budget):
        transition = FakeTransition(failures=2, clock=clock, error=InterfaceError)

        assert worker.with_db_reconnect(transition) == "won"

    def test_rides_out_a_sixty_second_outage_and_answers_within_a_back_off_step_of_its_end(
            self, clock, fake_connection, budget):
        outage_ends = clock.now + 60

        def fake_sixty_second_outage(**kwargs):
            if clock.now < outage_ends:
                raise OperationalError("the server is unreachable")
            return "won"

        assert worker.with_db_reconnect(fake_sixty_second_outage) == "won"
        assert outage_ends <= clock.now <= outage_ends + 2.0

    def test_gives_up_when_the_budget_runs_out_and_raises_the_last_error(self, clock, fake_connection, settings):
        settings.DPP_WORKER_DB_RETRY_SECONDS = 10
        started = clock.now
        transition = FakeTransition(failures=10**6, clock=clock, cost=0.1)

        with pytest.raises(OperationalError):
            worker.with_db_reconnect(transition)

        assert clock.now - started == pytest.approx(10, abs=0.2)  # bounded by the budget...
        assert max(clock.sleeps) <= 2.0 and clock.sleeps[-1] < 2.0  # ...the last sleep cut to what was left
        assert len(transition.calls) == len(clock.sleeps) + 1

    def test_a_zero_budget_tries_once(self, clock, fake_connection, settings):
        settings.DPP_WORKER_DB_RETRY_SECONDS = 0
        transition = FakeTransition(failures=1, clock=clock)

        with pytest.raises(OperationalError):
            worker.with_db_reconnect(transition)

        assert len(transition.calls) == 1 and clock.sleeps == []

    def test_other_errors_are_not_retried(self, clock, fake_connection, budget):
        transition = FakeTransition(failures=1, clock=clock, error=ValueError)

        with pytest.raises(ValueError):
            worker.with_db_reconnect(transition)

        assert len(transition.calls) == 1

    def test_logs_one_warning_per_try_without_the_drivers_message(self, clock, fake_connection, budget, caplog):
        transition = FakeTransition(failures=3, clock=clock)

        with caplog.at_level(logging.WARNING, logger="runs.worker"):
            worker.with_db_reconnect(transition)

        warnings = [record for record in caplog.records if record.levelno == logging.WARNING]
        assert len(warnings) == 3
        assert [record.attempt for record in warnings] == [1, 2, 3]
        assert all(record.exc_info is None for record in warnings)
        assert "hunter2" not in caplog.text and "db.internal" not in caplog.text


# --- a real run: the database goes away before the finalize claim --------------------------------

INITIAL = 10_000_000


def make_run(tenant) -> Run:
    submission = RunSubmission(
        idempotency_key=uuid.uuid4().hex, payload_hash="0" * 64, pack_type="decision", inputs=decision_inputs(),
        max_cost_micros=500_000, timebox_sec=30, min_reliability_score=None, trace_id="trace-db-retry",
    )
    return run_create(tenant=tenant, submission=submission).run


def unreachable_for(failures: int, call, *, meanwhile=None):
    """``call`` raises OperationalError ``failures`` times (the database is away), then runs;
    ``meanwhile()`` runs once during the outage, on a connection of its own."""
    state = {"failed": 0}

    def fake_outage(**kwargs):
        if state["failed"] < failures:
            state["failed"] += 1
            if state["failed"] == 1 and meanwhile is not None:
                meanwhile()
            raise OperationalError("server closed the connection unexpectedly")
        return call(**kwargs)

    return fake_outage


def expire_the_lease(run_id):
    Run.objects.filter(pk=run_id).update(lease_expires_at=timezone.now() - timedelta(minutes=5))


@pytest.mark.django_db(transaction=True)
@pytest.mark.emulator
@pytest.mark.usefixtures("no_broker", "result_bucket")
class TestARunThroughAnOutage:
    def test_the_worker_outlasts_more_than_three_failures_and_completes_at_cost(self, settings, monkeypatch):
        # Four failures: 0.25 + 0.5 + 1 + 2 s of real back-off (three attempts gave up before).
        settings.DPP_WORKER_DB_RETRY_SECONDS = 30
        tenant = TenantFactory(balance_micros=INITIAL)
        run = make_run(tenant)
        monkeypatch.setattr(worker, "run_finalize_claim", unreachable_for(4, run_finalize_claim))

        outcome = worker.run_execute(run_id=run.pk)

        run.refresh_from_db()
        assert outcome == "completed"
        assert (run.status, run.money_state, run.attempts) == ("COMPLETED", "SETTLED", 1)
        wallet = Wallet.objects.get(tenant=tenant)
        assert (wallet.available_micros, wallet.held_micros) == (INITIAL - run.actual_cost_micros, 0)
        call_command("check_ledger")

    def test_a_lease_that_expired_during_the_outage_does_not_stop_the_worker_that_comes_back_first(
            self, settings, monkeypatch):
        settings.DPP_WORKER_DB_RETRY_SECONDS = 30
        tenant = TenantFactory(balance_micros=INITIAL)
        run = make_run(tenant)
        monkeypatch.setattr(worker, "run_finalize_claim",
                            unreachable_for(1, run_finalize_claim, meanwhile=lambda: expire_the_lease(run.pk)))

        outcome = worker.run_execute(run_id=run.pk)

        run.refresh_from_db()
        assert outcome == "completed"
        assert (run.status, run.money_state) == ("COMPLETED", "SETTLED")
        assert "reaped" not in zombies_reap(now=timezone.now())  # a CLAIMED or finished run is no zombie
        assert Journal.objects.filter(run_id=run.pk, phase="FINALIZE").count() == 1
        call_command("check_ledger")

    def test_a_reaper_that_comes_back_first_wins_and_the_worker_does_nothing_more(self, settings, monkeypatch):
        settings.DPP_WORKER_DB_RETRY_SECONDS = 30
        tenant = TenantFactory(balance_micros=INITIAL)
        run = make_run(tenant)

        def the_reaper_first():
            expire_the_lease(run.pk)
            zombies_reap(now=timezone.now())

        monkeypatch.setattr(worker, "run_finalize_claim",
                            unreachable_for(1, run_finalize_claim, meanwhile=the_reaper_first))

        outcome = worker.run_execute(run_id=run.pk)

        run.refresh_from_db()
        assert outcome == "claim_lost"
        assert (run.status, run.error_reason, run.actual_cost_micros) == ("FAILED", "LEASE_EXPIRED",
                                                                          run.minimum_fee_micros)
        assert Journal.objects.filter(run_id=run.pk, phase="FINALIZE").count() == 1
        call_command("check_ledger")
