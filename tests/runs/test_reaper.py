"""Reaper passes with the real emulator (S3) and PostgreSQL, exact micros, and their races."""

from __future__ import annotations

import threading
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import pytest
from botocore.exceptions import ClientError
from django.db import connection
from django.utils import timezone

from billing.models import Journal, Wallet
from runs import storage
from runs.models import Run, RunEvent
from runs.reaper import claims_reconcile, outbox_sweep, results_expire, zombies_reap
from runs.reasons import REASON_TEXTS
from runs.serializers import RunOutput
from runs.services import (
    RunSubmission,
    run_claim_lease,
    run_create,
    run_finalize_claim,
    run_finalize_commit,
    run_reap_zombie,
)
from tests.factories import TenantFactory
from tests.runs.helpers import decision_inputs
from tests.runs.test_relay import find_message

pytestmark = pytest.mark.emulator

INITIAL = 10_000_000
LONG_AGO = timedelta(hours=1)


@pytest.fixture(autouse=True)
def _broker_and_bucket(no_broker, result_bucket):
    """Every test here: no queue sends, and the results bucket exists."""


def make_run(tenant, cap_micros: int = 500_000, *, now=None) -> Run:
    submission = RunSubmission(
        idempotency_key=uuid.uuid4().hex, payload_hash="0" * 64, pack_type="decision", inputs=decision_inputs(),
        max_cost_micros=cap_micros, timebox_sec=30, min_reliability_score=None, trace_id="trace-reaper",
    )
    return run_create(tenant=tenant, submission=submission, now=now).run


def claimed(tenant, *, when, cap_micros: int = 500_000) -> Run:
    """A run a worker claimed at ``when`` (so its lease expired long ago if ``when`` is old)."""
    run = make_run(tenant, cap_micros)
    return run_claim_lease(run_id=run.pk, now=when)


def finalize_claimed(tenant, *, when, cap_micros: int = 500_000) -> tuple[Run, uuid.UUID]:
    run = claimed(tenant, when=when, cap_micros=cap_micros)
    token = run_finalize_claim(run=run, now=when)
    return run, token


def wallet(tenant) -> tuple[int, int]:
    w = Wallet.objects.get(tenant=tenant)
    return w.available_micros, w.held_micros


@pytest.mark.django_db
class TestZombieReaping:
    def test_an_expired_lease_is_failed_at_the_minimum_fee(self):
        tenant = TenantFactory(balance_micros=INITIAL)
        run = claimed(tenant, when=timezone.now() - LONG_AGO)

        counts = zombies_reap(now=timezone.now())

        run.refresh_from_db()
        assert counts == {"reaped": 1}
        assert (run.status, run.money_state, run.error_reason) == ("FAILED", "SETTLED", "LEASE_EXPIRED")
        assert run.actual_cost_micros == 10_000  # 2% of 500_000
        assert wallet(tenant) == (INITIAL - 10_000, 0)

    def test_a_live_lease_is_left_alone(self):
        tenant = TenantFactory(balance_micros=INITIAL)
        run = claimed(tenant, when=timezone.now())
        assert zombies_reap(now=timezone.now()) == {}
        run.refresh_from_db()
        assert run.status == "PROCESSING"
        assert wallet(tenant) == (INITIAL - 500_000, 500_000)

    def test_a_claimed_run_is_left_to_the_reconciler(self):
        tenant = TenantFactory(balance_micros=INITIAL)
        finalize_claimed(tenant, when=timezone.now() - LONG_AGO)
        assert zombies_reap(now=timezone.now()) == {}


def s3_refuses(**kwargs):
    """An injected 403, what a role without s3:ListBucket gets for a missing key."""
    raise ClientError({"Error": {"Code": "403", "Message": "Forbidden"}}, "HeadObject")


@pytest.mark.django_db
class TestReconciliationWhenS3KeepsFailing:
    def test_a_recent_claim_stays_undecided_with_an_injected_403(self, monkeypatch):
        tenant = TenantFactory(balance_micros=INITIAL)
        run, _ = finalize_claimed(tenant, when=timezone.now() - LONG_AGO)
        monkeypatch.setattr(storage, "receipt_get", s3_refuses)

        assert claims_reconcile(now=timezone.now()) == {"undecided": 1}
        assert Run.objects.get(pk=run.pk).money_state == "RESERVED"

    def test_past_the_bound_the_run_goes_to_an_operator_with_the_reason_with_an_injected_403(self, monkeypatch):
        tenant = TenantFactory(balance_micros=INITIAL)
        run, _ = finalize_claimed(tenant, when=timezone.now() - timedelta(hours=7))
        monkeypatch.setattr(storage, "receipt_get", s3_refuses)

        assert claims_reconcile(now=timezone.now()) == {"audit_required": 1}

        run.refresh_from_db()
        assert (run.status, run.money_state) == ("PROCESSING", "AUDIT_REQUIRED")
        event = RunEvent.objects.get(run=run, kind="AUDIT_REQUIRED")
        assert "could not be read for 25" in event.reason and "403" in event.reason
        assert wallet(tenant) == (INITIAL - 500_000, 500_000)  # nothing moved: an operator decides


@pytest.mark.django_db
class TestReconciliation:
    def test_a_receipt_with_the_claims_token_rolls_forward_at_the_receipts_cost(self):
        tenant = TenantFactory(balance_micros=INITIAL)
        run, token = finalize_claimed(tenant, when=timezone.now() - LONG_AGO)
        storage.envelope_put(bucket=run.result_bucket, key=run.result_key, body=b"{}", sha256="c" * 64,
                             actual_cost_micros=12_300, finalize_token=token)

        counts = claims_reconcile(now=timezone.now())

        run.refresh_from_db()
        assert counts == {"rolled_forward": 1}
        assert (run.status, run.money_state, run.finalize_stage) == ("COMPLETED", "SETTLED", "COMMITTED")
        assert run.actual_cost_micros == 12_300 and run.result_sha256 == "c" * 64
        assert wallet(tenant) == (INITIAL - 12_300, 0)

    def test_no_object_rolls_back_at_the_minimum_fee(self):
        tenant = TenantFactory(balance_micros=INITIAL)
        run, _ = finalize_claimed(tenant, when=timezone.now() - LONG_AGO)

        counts = claims_reconcile(now=timezone.now())

        run.refresh_from_db()
        assert counts == {"rolled_back": 1}
        assert (run.status, run.money_state, run.error_reason) == ("FAILED", "SETTLED",
                                                                   "WORKER_CRASH_DURING_FINALIZE")
        assert wallet(tenant) == (INITIAL - 10_000, 0)

    def test_a_young_claim_is_not_touched(self):
        tenant = TenantFactory(balance_micros=INITIAL)
        finalize_claimed(tenant, when=timezone.now())
        assert claims_reconcile(now=timezone.now()) == {}

    @pytest.mark.parametrize(
        ("cost", "token_matches", "why"),
        [(600_000, True, "outside"), (12_300, False, "is not the claim's")],
        ids=["receipt above the reservation", "token mismatch"],
    )
    def test_an_inconsistent_receipt_requires_an_audit_and_moves_no_money(self, cost, token_matches, why, caplog):
        tenant = TenantFactory(balance_micros=INITIAL)
        run, token = finalize_claimed(tenant, when=timezone.now() - LONG_AGO)
        storage.envelope_put(bucket=run.result_bucket, key=run.result_key, body=b"{}", sha256="c" * 64,
                             actual_cost_micros=cost, finalize_token=token if token_matches else uuid.uuid4())

        counts = claims_reconcile(now=timezone.now())

        run.refresh_from_db()
        assert counts == {"audit_required": 1}
        assert run.money_state == "AUDIT_REQUIRED" and why in run.error_detail
        assert wallet(tenant) == (INITIAL - 500_000, 500_000)
        assert Wallet.objects.get(tenant=tenant).active_runs == 0  # it no longer holds a concurrency slot
        assert RunOutput(run).data["error"] == {"reason_code": "AUDIT_REQUIRED", "detail": REASON_TEXTS["AUDIT_REQUIRED"]}
        assert not Journal.objects.filter(run_id=run.pk, phase="FINALIZE").exists()
        critical = [r for r in caplog.records if getattr(r, "severity", None) == "CRITICAL"]
        assert critical and critical[0].levelname == "ERROR"

    def test_a_run_without_reservation_requires_an_audit(self):
        tenant = TenantFactory(balance_micros=INITIAL)
        run, token = finalize_claimed(tenant, when=timezone.now() - LONG_AGO)
        # A run row whose reservation cannot be found (written around the services):
        orphan = Run.objects.create(
            tenant=tenant, pack_type="decision", inputs={}, idempotency_key="orphan-run-1", payload_hash="0" * 64,
            status="PROCESSING", finalize_stage="CLAIMED", finalize_token=token, reserved_micros=500_000,
            minimum_fee_micros=10_000, trace_id="t", retention_until=timezone.now() + LONG_AGO,
            deadline_at=timezone.now() + LONG_AGO, result_bucket=run.result_bucket, result_key=f"{run.result_key}-o",
            finalize_claimed_at=timezone.now() - LONG_AGO,
        )
        storage.envelope_put(bucket=orphan.result_bucket, key=orphan.result_key, body=b"{}", sha256="c" * 64,
                             actual_cost_micros=1_000, finalize_token=token)
        storage.envelope_put(bucket=run.result_bucket, key=run.result_key, body=b"{}", sha256="c" * 64,
                             actual_cost_micros=1_000, finalize_token=token)

        counts = claims_reconcile(now=timezone.now())

        assert counts == {"audit_required": 1, "rolled_forward": 1}
        orphan.refresh_from_db()
        assert orphan.money_state == "AUDIT_REQUIRED"
        assert "no matching reservation" in orphan.error_detail


@pytest.mark.django_db
class TestOutbox:
    def test_a_run_never_started_before_its_deadline_is_fully_refunded(self):
        tenant = TenantFactory(balance_micros=INITIAL)
        run = make_run(tenant)
        Run.objects.filter(pk=run.pk).update(deadline_at=timezone.now() - timedelta(seconds=1))

        counts = outbox_sweep(now=timezone.now())

        run.refresh_from_db()
        assert counts["never_started"] == 1
        assert (run.status, run.money_state, run.error_reason) == ("FAILED", "REFUNDED", "NEVER_STARTED")
        assert run.actual_cost_micros == 0
        assert wallet(tenant) == (INITIAL, 0)

    def test_an_unconfirmed_enqueue_is_sent_again_and_lands_on_the_real_queue(self):
        # The first send was lost (no_broker); the resend is the real one, to the emulator's SQS.
        tenant = TenantFactory(balance_micros=INITIAL)
        run = make_run(tenant, now=timezone.now() - timedelta(minutes=1))
        Run.objects.filter(pk=run.pk).update(created_at=timezone.now() - timedelta(minutes=1))

        counts = outbox_sweep(now=timezone.now())

        assert counts == {"resent": 1}
        message = find_message(str(run.pk))
        assert message is not None and "runs.tasks.run_execute_task" in message["text"]
        run.refresh_from_db()
        assert run.enqueued_at is not None and run.enqueue_attempts == 1
        assert outbox_sweep(now=timezone.now()) == {}  # confirmed now: not sent twice
        assert find_message(str(run.pk), timeout=2) is None

    def test_waiting_runs_are_not_resent_behind_a_backlog(self, monkeypatch):
        from django.conf import settings

        sent = []
        monkeypatch.setattr("runs.services.outbox.run_send", lambda **kwargs: sent.append(kwargs["run_id"]))
        monkeypatch.setattr("runs.reaper.queue_depth", lambda: {"visible": 42, "in_flight": 2})
        tenant = TenantFactory(balance_micros=INITIAL)
        waiting = make_run(tenant)
        Run.objects.filter(pk=waiting.pk).update(
            enqueued_at=timezone.now() - timedelta(seconds=10 * settings.DPP_LEASE_SECONDS), enqueue_attempts=1)

        assert outbox_sweep(now=timezone.now()) == {"backlog": 42}
        assert sent == []

    def test_a_waiting_run_is_resent_with_exponential_backoff(self, monkeypatch):
        from django.conf import settings

        sent = []
        monkeypatch.setattr("runs.services.outbox.run_send", lambda **kwargs: sent.append(kwargs["run_id"]))
        monkeypatch.setattr("runs.reaper.queue_depth", lambda: {"visible": 0, "in_flight": 0})
        tenant = TenantFactory(balance_micros=INITIAL)
        lease = timedelta(seconds=settings.DPP_LEASE_SECONDS)
        now = timezone.now()
        once, thrice = make_run(tenant), make_run(tenant)
        # Sent once, 1.5 leases ago: due (after 1 lease). Sent 3 times, 3.5 leases ago: due after 4.
        Run.objects.filter(pk=once.pk).update(enqueued_at=now - lease * 1.5, enqueue_attempts=1)
        Run.objects.filter(pk=thrice.pk).update(enqueued_at=now - lease * 3.5, enqueue_attempts=3)

        assert outbox_sweep(now=now) == {"resent": 1}
        assert sent == [once.pk]
        # 0.6 leases later: thrice is 4.1 leases old (due); once was resent, now waits 2 leases.
        assert outbox_sweep(now=now + lease * 0.6) == {"resent": 1}
        assert sent == [once.pk, thrice.pk]

    def test_an_unknown_queue_depth_resends_only_never_confirmed_runs(self, monkeypatch):
        """SQS refusing the depth read (e.g. no GetQueueUrl in the production policy) may hide a
        backlog: waiting runs are not resent; a run whose send was never confirmed still is."""
        from django.conf import settings

        sent = []
        monkeypatch.setattr("runs.services.outbox.run_send", lambda **kwargs: sent.append(kwargs["run_id"]))
        monkeypatch.setattr("runs.reaper.queue_depth", lambda: {"error": "ClientError"})
        tenant = TenantFactory(balance_micros=INITIAL)
        waiting, never_sent = make_run(tenant), make_run(tenant)
        Run.objects.filter(pk=waiting.pk).update(
            enqueued_at=timezone.now() - timedelta(seconds=10 * settings.DPP_LEASE_SECONDS), enqueue_attempts=1)
        Run.objects.filter(pk=never_sent.pk).update(created_at=timezone.now() - timedelta(minutes=1))

        counts = outbox_sweep(now=timezone.now())

        assert sent == [never_sent.pk]
        assert counts == {"resent": 1, "depth_unknown": 1}
        assert Run.objects.get(pk=waiting.pk).enqueue_attempts == 1

    def test_the_queue_depth_of_a_predefined_queue_reads_dpp_queue_url_without_get_queue_url(self):
        from botocore.stub import Stubber
        from django.test import override_settings

        from dpp.aws import sqs_client
        from runs.ops import queue_depth

        url = "https://sqs.eu-west-1.amazonaws.com/123456789012/dpp-runs"
        with Stubber(sqs_client(read_timeout=2)) as stubber, override_settings(DPP_QUEUE_URL=url):
            stubber.add_response(
                "get_queue_attributes",
                {"Attributes": {"ApproximateNumberOfMessages": "7", "ApproximateNumberOfMessagesNotVisible": "3"}},
                {"QueueUrl": url,
                 "AttributeNames": ["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]})
            assert queue_depth() == {"visible": 7, "in_flight": 3}
        stubber.assert_no_pending_responses()

    def test_the_first_failed_resend_ends_the_resends_of_the_pass(self, monkeypatch):
        attempts = []

        def broker_down(**kwargs):
            attempts.append(kwargs["run_id"])
            raise ConnectionError("broker unreachable")

        monkeypatch.setattr("runs.services.outbox.run_send", broker_down)
        tenant = TenantFactory(balance_micros=INITIAL)
        runs = [make_run(tenant) for _ in range(3)]
        Run.objects.filter(pk__in=[run.pk for run in runs]).update(created_at=timezone.now() - timedelta(minutes=1))

        assert outbox_sweep(now=timezone.now()) == {"send_failed": 1}
        assert len(attempts) == 1
        assert list(Run.objects.filter(pk__in=[run.pk for run in runs]).values_list("enqueued_at", flat=True)) == \
            [None] * 3

    def test_a_pass_out_of_time_stops_instead_of_counting_an_error_and_going_on(self, monkeypatch):
        from celery.exceptions import SoftTimeLimitExceeded

        handled = []

        def out_of_time(*, run, now):
            handled.append(run.pk)
            raise SoftTimeLimitExceeded()

        monkeypatch.setattr("runs.reaper.run_fail_never_started", out_of_time)
        tenant = TenantFactory(balance_micros=INITIAL)
        runs = [make_run(tenant) for _ in range(2)]
        Run.objects.filter(pk__in=[run.pk for run in runs]).update(deadline_at=timezone.now() - timedelta(seconds=1))

        with pytest.raises(SoftTimeLimitExceeded):
            outbox_sweep(now=timezone.now())
        assert len(handled) == 1

    def test_a_failed_resend_is_retried_on_the_next_pass(self, monkeypatch):
        def broker_down(**kwargs):
            raise ConnectionError("broker unreachable")

        monkeypatch.setattr("runs.services.outbox.run_send", broker_down)
        tenant = TenantFactory(balance_micros=INITIAL)
        run = make_run(tenant)
        Run.objects.filter(pk=run.pk).update(created_at=timezone.now() - timedelta(minutes=1))

        assert outbox_sweep(now=timezone.now()) == {"send_failed": 1}
        assert Run.objects.get(pk=run.pk).enqueued_at is None
        assert outbox_sweep(now=timezone.now()) == {"send_failed": 1}


@pytest.mark.django_db
class TestRetention:
    def test_a_result_past_retention_is_deleted_and_its_owner_gets_410(self, auth_client, tenant):
        run, token = finalize_claimed(tenant, when=timezone.now())
        storage.envelope_put(bucket=run.result_bucket, key=run.result_key, body=b"{}", sha256="c" * 64,
                             actual_cost_micros=10_400, finalize_token=token)
        assert run_finalize_commit(run=run, finalize_token=token, charge_micros=10_400, sha256="c" * 64)
        Run.objects.filter(pk=run.pk).update(retention_until=timezone.now() - timedelta(seconds=1))

        counts = results_expire(now=timezone.now())

        assert counts == {"deleted": 1}
        assert storage.receipt_get(bucket=run.result_bucket, key=run.result_key) is None
        assert Run.objects.get(pk=run.pk).result_deleted_at is not None
        response = auth_client.get(f"/v1/runs/{run.pk}")
        assert response.status_code == 410
        assert response["Content-Type"] == "application/problem+json"
        assert results_expire(now=timezone.now()) == {}

    def test_one_pass_drains_a_backlog_larger_than_its_batch(self, tenant):
        runs = [completed(tenant) for _ in range(25)]
        Run.objects.filter(pk__in=[r.pk for r in runs]).update(retention_until=timezone.now() - timedelta(seconds=1))

        counts = results_expire(now=timezone.now(), limit=10)

        assert counts == {"deleted": 25}
        assert Run.objects.filter(pk__in=[r.pk for r in runs], result_deleted_at__isnull=True).count() == 0
        assert all(storage.receipt_get(bucket=r.result_bucket, key=r.result_key) is None for r in runs)

    def test_a_pass_stops_at_its_time_budget_and_the_next_one_goes_on(self, tenant):
        runs = [completed(tenant) for _ in range(5)]
        Run.objects.filter(pk__in=[r.pk for r in runs]).update(retention_until=timezone.now() - timedelta(seconds=1))

        assert results_expire(now=timezone.now(), limit=2, budget_seconds=0) == {"deleted": 2}
        assert results_expire(now=timezone.now(), limit=2, budget_seconds=60) == {"deleted": 3}

    def test_a_run_awaiting_an_audit_keeps_its_result_as_evidence(self, tenant):
        run, token = finalize_claimed(tenant, when=timezone.now() - LONG_AGO)
        storage.envelope_put(bucket=run.result_bucket, key=run.result_key, body=b"{}", sha256="c" * 64,
                             actual_cost_micros=10_400, finalize_token=uuid.uuid4())  # another token
        assert claims_reconcile(now=timezone.now()) == {"audit_required": 1}
        Run.objects.filter(pk=run.pk).update(retention_until=timezone.now() - timedelta(seconds=1))

        assert results_expire(now=timezone.now()) == {}

        assert storage.receipt_get(bucket=run.result_bucket, key=run.result_key) is not None
        assert Run.objects.get(pk=run.pk).result_deleted_at is None

    def test_the_list_hands_out_no_link_past_retention(self, auth_client, tenant):
        kept, expired = completed(tenant), completed(tenant)
        Run.objects.filter(pk=expired.pk).update(retention_until=timezone.now() - timedelta(seconds=1))

        items = {item["run_id"]: item for item in auth_client.get("/v1/runs").json()["results"]}

        assert items[str(kept.pk)]["result"]["presigned_url"]
        assert items[str(expired.pk)]["result"] is None
        assert auth_client.get(f"/v1/runs/{expired.pk}").status_code == 410


def completed(tenant) -> Run:
    """A COMPLETED run with its result in S3."""
    run, token = finalize_claimed(tenant, when=timezone.now())
    storage.envelope_put(bucket=run.result_bucket, key=run.result_key, body=b"{}", sha256="c" * 64,
                         actual_cost_micros=10_400, finalize_token=token)
    assert run_finalize_commit(run=run, finalize_token=token, charge_micros=10_400, sha256="c" * 64)
    return run


def _in_threads(count: int, target) -> list:
    barrier = threading.Barrier(count)

    def one(index):
        try:
            barrier.wait(timeout=10)
            return target(index)
        finally:
            connection.close()

    with ThreadPoolExecutor(max_workers=count) as pool:
        return list(pool.map(one, range(count)))


@pytest.mark.django_db(transaction=True)
@pytest.mark.slow
class TestRaces:
    def test_two_reapers_at_once_handle_each_run_once(self):
        tenant = TenantFactory(balance_micros=INITIAL)
        runs = [claimed(tenant, when=timezone.now() - LONG_AGO, cap_micros=100_000) for _ in range(20)]
        now = timezone.now()

        results = _in_threads(2, lambda _: zombies_reap(now=now))

        assert sum(r.get("reaped", 0) for r in results) == 20
        assert Run.objects.filter(pk__in=[r.pk for r in runs], status="FAILED").count() == 20
        assert Journal.objects.filter(tenant=tenant, phase="FINALIZE").count() == 20
        assert wallet(tenant) == (INITIAL - 20 * 5_000, 0)

    def test_a_worker_finishing_after_its_lease_expired_and_the_reaper_settle_exactly_once(self):
        tenant = TenantFactory(balance_micros=INITIAL)
        for _ in range(10):
            run = claimed(tenant, when=timezone.now() - LONG_AGO, cap_micros=100_000)
            now = timezone.now()

            def worker_finalizes(_, run=run):
                token = run_finalize_claim(run=Run.objects.get(pk=run.pk))
                return token is not None and run_finalize_commit(
                    run=run, finalize_token=token, charge_micros=10_400, sha256="d" * 64)

            def reaper_reaps(_, run=run, now=now):
                return run_reap_zombie(run=Run.objects.get(pk=run.pk), now=now)

            outcomes = _in_threads(2, lambda i: (worker_finalizes, reaper_reaps)[i](i))
            assert sorted(outcomes) == [False, True]
            assert Journal.objects.filter(run_id=run.pk, phase="FINALIZE").count() == 1
        held = Wallet.objects.get(tenant=tenant).held_micros
        assert held == 0
        assert RunEvent.objects.filter(run__tenant=tenant, kind__in=["COMPLETED", "FAILED"]).count() == 10
