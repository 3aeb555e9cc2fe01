"""A hypothesis state machine over the money-moving services, with every ledger invariant checked
after every step. The services and PostgreSQL are real; S3 is a fake in-memory receipt store
(named ``fake_receipts``) so that thousands of steps stay fast. Time is a virtual clock passed to
the services, so leases expire and claims age without sleeping."""

from __future__ import annotations

import os
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from django.conf import settings
from django.db import transaction
from hypothesis import HealthCheck
from hypothesis import settings as hsettings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from billing.checks import ledger_violations
from billing.models import Wallet
from billing.services import wallet_top_up
from runs import reaper
from runs.models import Run, RunEvent
from runs.services import (
    AuditResolutionRefused,
    RunNotCancelable,
    RunSubmission,
    run_cancel,
    run_claim_lease,
    run_create,
    run_extend_lease,
    run_fail_by_worker,
    run_finalize_claim,
    run_finalize_commit,
    run_resolve_audit,
)
from runs.storage import Receipt
from tests.factories import TenantFactory
from tests.runs.helpers import decision_inputs

EXAMPLES = int(os.environ.get("DPP_STATE_MACHINE_EXAMPLES", "200"))
START = datetime(2026, 1, 1, tzinfo=UTC)


class LedgerMachine(RuleBasedStateMachine):
    """Submit, claim, heartbeat, crash, reap, reconcile, settle, fail, top up, resolve audits."""

    SEEN: set[tuple[str, str]] = set()  # (event kind, actor) reached over all examples

    def __init__(self):
        super().__init__()
        # Each example runs inside a savepoint rolled back at teardown, so the database (and the
        # cost of checking it) does not grow with the number of examples.
        self.savepoint = transaction.savepoint()
        # A fixed virtual clock: replays (and shrinking) see the same times, so preconditions
        # that read the database behave the same way.
        self.now = START
        self.receipts: dict[str, Receipt] = {}  # fake_receipts: key -> receipt
        self.tokens: dict[uuid.UUID, uuid.UUID] = {}  # run -> finalize token of its claim

    @initialize(caps=st.lists(st.sampled_from([5_000, 12_300, 50_000, 120_000]), min_size=1, max_size=4))
    def open_tenant_with_runs(self, caps):
        self.tenant = TenantFactory(balance_micros=400_000)
        for cap in caps:
            self.submit(cap)

    def teardown(self):
        if hasattr(self, "tenant"):
            seen = type(self).SEEN
            seen |= set(RunEvent.objects.filter(run__tenant=self.tenant)
                        .values_list("kind", "actor").order_by().distinct())
            # Cancels, by the row of the cancel table they took (refusals are added by the rule).
            seen |= {(f"CANCELED from {from_status}", actor) for from_status, actor in
                     RunEvent.objects.filter(run__tenant=self.tenant, kind="CANCELED")
                     .values_list("from_status", "actor").distinct()}
        transaction.savepoint_rollback(self.savepoint)

    # --- helpers -------------------------------------------------------------------------------

    def runs(self, **filters) -> list[Run]:
        return list(Run.objects.filter(tenant=self.tenant, **filters).order_by("created_at"))

    def has(self, **filters) -> bool:
        return Run.objects.filter(tenant=self.tenant, **filters).exists()

    def pick(self, data, **filters) -> Run:
        return data.draw(st.sampled_from(self.runs(**filters)))

    def committable(self) -> list[Run]:
        """Claimed runs whose receipt (uploaded by their own claim) could still be committed."""
        return [run for run in self.runs(result_key__gt="", finalize_token__isnull=False)
                if (receipt := self.receipts.get(run.result_key)) is not None
                and receipt.finalize_token == str(run.finalize_token)
                and receipt.actual_cost_micros <= run.reserved_micros]

    # --- rules -----------------------------------------------------------------------------------

    @rule(cap=st.sampled_from([5_000, 12_300, 50_000, 120_000]))
    def submit(self, cap):
        submission = RunSubmission(
            idempotency_key=uuid.uuid4().hex, payload_hash="0" * 64, pack_type="decision",
            inputs=decision_inputs(), max_cost_micros=cap, timebox_sec=30, min_reliability_score=None,
            trace_id="state-machine")
        try:
            run_create(tenant=self.tenant, submission=submission, now=self.now)
        except Exception as error:  # refused (balance, concurrency): nothing may have moved
            assert type(error).__name__ in {"InsufficientBalance", "ValidationProblem", "ConcurrentRunsExceeded"}, error

    @rule(amount=st.integers(min_value=1, max_value=200_000))
    def top_up(self, amount):
        wallet_top_up(tenant=self.tenant, amount_micros=amount)

    @precondition(lambda self: self.has(status="PROCESSING"))
    @rule(data=st.data())
    def heartbeat(self, data):
        run = self.pick(data, status="PROCESSING")
        run_extend_lease(run_id=run.pk, lease_token=run.lease_token, now=self.now)

    @rule(seconds=st.sampled_from([1, 30, settings.DPP_LEASE_SECONDS + 1, settings.DPP_RECONCILE_AFTER_SECONDS + 1,
                                   settings.DPP_RUN_QUEUE_DEADLINE_SECONDS + 1]))
    def time_passes(self, seconds):
        """Also a crash: a worker that stops heartbeating is just time passing without beats."""
        self.now += timedelta(seconds=seconds)

    OUTCOMES = st.sampled_from(["complete", "pack_fails", "crash_mid_run", "crash_after_claim",
                                "crash_after_upload", "receipt_above_cap", "receipt_wrong_token"])

    @precondition(lambda self: self.has(status="QUEUED"))
    @rule(data=st.data(), outcome=OUTCOMES, cost_share=st.integers(min_value=0, max_value=100))
    def a_worker_takes_a_run(self, data, outcome, cost_share):
        """Claim a queued run and take it to an outcome (the common path, in one step)."""
        run = run_claim_lease(run_id=self.pick(data, status="QUEUED").pk, now=self.now)
        if run is not None:
            self._execute(run, outcome, cost_share)

    @precondition(lambda self: self.has(status="PROCESSING", finalize_stage="NONE"))
    @rule(data=st.data(), outcome=OUTCOMES, cost_share=st.integers(min_value=0, max_value=100))
    def a_worker_finishes_a_run_in_flight(self, data, outcome, cost_share):
        """A worker still holding a lease (perhaps already expired and reaped meanwhile) finishes."""
        self._execute(self.pick(data, status="PROCESSING", finalize_stage="NONE"), outcome, cost_share)

    def _execute(self, run: Run, outcome: str, cost_share: int) -> None:
        """The pack is done; the worker may die at a named point."""
        if outcome == "crash_mid_run":
            return  # no more heartbeats: the lease will expire as time passes
        if outcome == "pack_fails":
            run_fail_by_worker(run=run, reason="PACK_FAILED", detail="state machine", now=self.now)
            return
        token = run_finalize_claim(run=run, now=self.now)
        if token is None or outcome == "crash_after_claim":
            return
        cost = run.reserved_micros * cost_share // 100
        if outcome == "receipt_above_cap":
            cost = run.reserved_micros + 1
        receipt_token = str(uuid.uuid4()) if outcome == "receipt_wrong_token" else str(token)
        self.receipts[run.result_key] = Receipt(actual_cost_micros=cost, finalize_token=receipt_token,
                                                sha256="f" * 64)
        if outcome == "complete":
            run_finalize_commit(run=run, finalize_token=token, charge_micros=cost, sha256="f" * 64, now=self.now)

    @precondition(lambda self: self.committable())
    @rule(data=st.data())
    def a_late_worker_commits(self, data):
        """A worker that uploaded, stalled, and commits late (perhaps after the reconciler acted)."""
        run = data.draw(st.sampled_from(self.committable()))
        receipt = self.receipts[run.result_key]
        run_finalize_commit(run=run, finalize_token=run.finalize_token, charge_micros=receipt.actual_cost_micros,
                            sha256=receipt.sha256, now=self.now)

    @rule(job=st.sampled_from(["zombies", "reconcile", "outbox"]))
    def a_reaper_pass(self, job):
        if job == "zombies":
            reaper.zombies_reap(now=self.now)
        elif job == "reconcile":
            original = reaper.storage.receipt_get
            reaper.storage.receipt_get = lambda *, bucket, key: self.receipts.get(key)  # fake_receipts
            try:
                reaper.claims_reconcile(now=self.now)
            finally:
                reaper.storage.receipt_get = original
        else:
            reaper.outbox_sweep(now=self.now)

    @precondition(lambda self: self.has(money_state="AUDIT_REQUIRED"))
    @rule(data=st.data(), action=st.sampled_from(["settle_receipt", "settle_amount", "release"]),
          amount=st.integers(min_value=0, max_value=200_000))
    def operator_resolves(self, data, action, amount):
        run = self.pick(data, money_state="AUDIT_REQUIRED")
        try:
            run_resolve_audit(run_id=run.pk, action=action, actor="admin:machine", reason="state machine",
                              amount_micros=amount, receipt=self.receipts.get(run.result_key), now=self.now)
        except AuditResolutionRefused:
            pass

    # --- invariants -------------------------------------------------------------------------------

    @invariant()
    def the_ledger_holds_every_invariant(self):
        from runs.checks import run_money_violations

        violations = ledger_violations() + run_money_violations()
        assert not violations, violations

    @invariant()
    def no_run_is_charged_above_its_reservation_nor_finished_unsettled(self):
        for run in self.runs():
            if run.actual_cost_micros is not None:
                assert 0 <= run.actual_cost_micros <= run.reserved_micros
            if run.status in Run.TERMINAL_STATUSES:
                assert run.money_state != "RESERVED"

    @invariant()
    def the_wallet_is_never_negative(self):
        wallet = Wallet.objects.get(tenant=self.tenant)
        assert wallet.available_micros >= 0 and wallet.held_micros >= 0

    @invariant()
    def the_wallet_counts_exactly_the_runs_holding_a_slot_within_the_plan(self):
        wallet = Wallet.objects.get(tenant=self.tenant)
        assert wallet.active_runs == Run.objects.filter(tenant=self.tenant, money_state="RESERVED").count()
        assert 0 <= wallet.active_runs <= self.tenant.plan.max_concurrent_runs


class LedgerMachineWithCancels(LedgerMachine):
    """The same machine, and a client who may cancel any run at any step (issue 12). Kept apart
    so that the base machine's derandomized walk, which must reach every settlement path, is not
    diluted by an always-enabled rule that ends runs early."""

    SEEN: set[tuple[str, str]] = set()

    @precondition(lambda self: self.has())
    @rule(data=st.data())
    def a_client_cancels(self, data):
        """Any run, in any state: the cancel table decides (refused while finalizing or finished)."""
        run = self.pick(data)
        before = (run.status, run.finalize_stage, run.money_state)
        try:
            result = run_cancel(tenant=self.tenant, run_id=run.pk, reason="state machine", now=self.now)
        except RunNotCancelable:
            assert before[0] in ("COMPLETED", "FAILED") or before[1] != "NONE" or before[2] != "RESERVED", before
            type(self).SEEN.add(("CANCEL_REFUSED", before[0]))
            return
        assert result.run.status == "CANCELED"
        assert result.run.actual_cost_micros == (0 if result.run.money_state == "REFUNDED" else run.minimum_fee_micros)


def _run(machine: type[LedgerMachine], examples: int) -> None:
    machine.TestCase.settings = hsettings(
        max_examples=examples, stateful_step_count=50, deadline=None, derandomize=True, database=None,
        suppress_health_check=[HealthCheck.filter_too_much, HealthCheck.too_slow],
    )
    machine.TestCase().runTest()


def _no_broker(monkeypatch) -> None:
    """Sends succeed without a broker, and the outbox sees an empty queue: the machine's steps stay
    deterministic (no network I/O whose timing could change a replay) and fast."""
    monkeypatch.setattr("runs.services.submit.relay_wake", lambda: None)
    monkeypatch.setattr("runs.services.outbox.run_send", lambda **kwargs: None)
    monkeypatch.setattr("runs.reaper.queue_depth", lambda: {"visible": 0, "in_flight": 0})


# 200 derandomized examples of up to 50 steps take minutes on a 2-core machine: above the
# suite's default timeout, which would interrupt a query mid-flight.
@pytest.mark.django_db
@pytest.mark.slow
@pytest.mark.timeout(1500)
def test_no_sequence_of_operations_leaks_a_micro(monkeypatch):
    _no_broker(monkeypatch)
    _run(LedgerMachine, EXAMPLES)

    # The machine really walked the dangerous paths.
    seen = LedgerMachine.SEEN
    for path in [("COMPLETED", "worker"), ("COMPLETED", "reconciler"), ("FAILED", "reaper"),
                 ("FAILED", "reconciler"), ("FAILED", "worker"), ("FAILED", "outbox"),
                 ("AUDIT_REQUIRED", "reconciler"), ("OPERATOR_RELEASE", "admin:machine")]:
        assert path in seen, f"the state machine never reached {path}: {sorted(seen)}"


@pytest.mark.django_db
@pytest.mark.slow
@pytest.mark.timeout(1500)
def test_no_sequence_of_operations_with_cancels_leaks_a_micro(monkeypatch):
    _no_broker(monkeypatch)
    _run(LedgerMachineWithCancels, max(EXAMPLES // 4, 40))

    # Both cancels that move money and refusals while finalizing or finished, among the other
    # actors' settlement paths (the refusal of a COMPLETED run is tested in tests/runs/test_cancel.py).
    seen = LedgerMachineWithCancels.SEEN
    for path in [("CANCELED from QUEUED", "api"), ("CANCELED from PROCESSING", "api"),
                 ("CANCEL_REFUSED", "PROCESSING"), ("CANCEL_REFUSED", "FAILED"),
                 ("COMPLETED", "worker"), ("FAILED", "worker"), ("FAILED", "reconciler"), ("FAILED", "outbox")]:
        assert path in seen, f"the state machine with cancels never reached {path}: {sorted(seen)}"
