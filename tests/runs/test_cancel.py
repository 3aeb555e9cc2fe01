"""POST /v1/runs/{id}/cancel and runs.services.cancel: every row of the cancel table with exact
micros, the problem it answers, validation, isolation, the rate limit, and check_ledger green."""

from __future__ import annotations

import uuid

import pytest
from django.core.management import call_command
from django.utils import timezone

from billing.models import Journal, JournalLeg, Wallet
from runs.models import Run, RunEvent
from runs.services import (
    RunNotCancelable,
    RunSubmission,
    run_cancel,
    run_claim_lease,
    run_create,
    run_extend_lease,
    run_fail_by_worker,
    run_finalize_claim,
    run_finalize_commit,
    run_mark_audit_required,
)
from tenants.models import Plan
from tenants.services import api_key_issue
from tests.runs.helpers import decision_inputs, ledger_snapshot, post_run, run_body

pytestmark = pytest.mark.django_db

PROBLEM = "application/problem+json"
INITIAL = 10_000_000  # the tenant fixture's balance
CAP = 500_000  # "0.5000"
MIN_FEE = 10_000  # of a 0.5000 reservation: max(5_000, 2%) = 10_000


def submit(client, cap="0.5000") -> Run:
    response = post_run(client, run_body(cap))
    assert response.status_code == 202, response.content
    return Run.objects.get(pk=response.json()["run_id"])


def make_run(tenant, cap_micros: int = CAP) -> Run:
    """A run created by the service (no request, so no rate-limit hit); never sent to a queue."""
    return run_create(tenant=tenant, submission=RunSubmission(
        idempotency_key=uuid.uuid4().hex, payload_hash="0" * 64, pack_type="decision", inputs=decision_inputs(),
        max_cost_micros=cap_micros, timebox_sec=30, min_reliability_score=None, trace_id="trace-cancel")).run


def cancel(client, run_id, body=None):
    return client.post(f"/v1/runs/{run_id}/cancel", body, format="json")


def wallet(tenant) -> tuple[int, int]:
    w = Wallet.objects.get(tenant=tenant)
    return w.available_micros, w.held_micros


def finalize_legs(run_id) -> dict[str, int]:
    """The run's one settle-or-release journal: account kind -> micros."""
    journal = Journal.objects.get(run_id=run_id, phase="FINALIZE")
    return {leg.account.kind: leg.amount_micros for leg in JournalLeg.objects.filter(journal=journal)
            .select_related("account")}


def ledger_is_green() -> bool:
    try:
        call_command("check_ledger", "--skip-s3")
    except SystemExit as exit_:
        raise AssertionError(f"check_ledger failed with {exit_.code}") from None
    return True


class TestCancelAQueuedRun:
    def test_releases_everything_and_answers_the_canceled_run(self, auth_client, tenant):
        run = submit(auth_client)
        assert wallet(tenant) == (INITIAL - CAP, CAP)

        response = cancel(auth_client, run.pk, {"reason": "the agent changed its mind"})

        assert response.status_code == 200
        body = response.json()
        assert (body["status"], body["money_state"]) == ("CANCELED", "REFUNDED")
        assert body["cost"] == {"reserved_usd": "0.5000", "used_usd": "0.0000", "minimum_fee_usd": "0.0100",
                                "budget_remaining_usd": "10.0000"}
        assert body["error"] == {"reason_code": "CANCELED", "detail": "the agent changed its mind"}
        assert body["result"] is None and body["meta"]["finished_at"] is not None
        assert response["X-DPP-Cost-Actual"] == "0.0000"
        assert wallet(tenant) == (INITIAL, 0)
        assert Journal.objects.get(run_id=run.pk, phase="FINALIZE").kind == "RELEASE"
        assert finalize_legs(run.pk) == {"HELD": -CAP, "AVAILABLE": CAP}
        event = RunEvent.objects.get(run_id=run.pk, kind="CANCELED")
        assert (event.actor, event.from_status, event.to_status, event.money_state, event.amount_micros) == (
            "api", "QUEUED", "CANCELED", "REFUNDED", 0)
        assert ledger_is_green()

    def test_without_a_body_the_detail_says_the_client_canceled(self, auth_client, tenant):
        run = submit(auth_client)

        response = auth_client.post(f"/v1/runs/{run.pk}/cancel")

        assert response.status_code == 200
        assert response.json()["error"] == {"reason_code": "CANCELED", "detail": "canceled by the client"}
        assert wallet(tenant) == (INITIAL, 0)

    def test_a_worker_message_arriving_later_claims_nothing(self, auth_client, tenant):
        run = submit(auth_client)
        cancel(auth_client, run.pk)

        assert run_claim_lease(run_id=run.pk) is None
        assert Run.objects.get(pk=run.pk).attempts == 0


class TestCancelAProcessingRun:
    def test_charges_the_minimum_fee_and_releases_the_rest(self, auth_client, tenant):
        run = run_claim_lease(run_id=submit(auth_client).pk)

        response = cancel(auth_client, run.pk, {"reason": "too slow"})

        assert response.status_code == 200
        body = response.json()
        assert (body["status"], body["money_state"]) == ("CANCELED", "SETTLED")
        assert body["cost"]["used_usd"] == "0.0100" and body["cost"]["budget_remaining_usd"] == "9.9900"
        assert body["error"] == {"reason_code": "CANCELED", "detail": "too slow"}
        assert response["X-DPP-Cost-Actual"] == "0.0100"
        assert wallet(tenant) == (INITIAL - MIN_FEE, 0)
        assert finalize_legs(run.pk) == {"HELD": -CAP, "REVENUE": MIN_FEE, "AVAILABLE": CAP - MIN_FEE}
        stored = Run.objects.get(pk=run.pk)
        assert (stored.actual_cost_micros, stored.lease_expires_at, stored.finalize_stage) == (MIN_FEE, None, "NONE")
        assert ledger_is_green()

    def test_the_minimum_fee_of_a_small_reservation_is_its_floor(self, auth_client, tenant):
        run = run_claim_lease(run_id=submit(auth_client, "0.0123").pk)  # 2% = 246 < floor 5_000

        cancel(auth_client, run.pk)

        assert Run.objects.get(pk=run.pk).actual_cost_micros == 5_000
        assert wallet(tenant) == (INITIAL - 5_000, 0)
        assert finalize_legs(run.pk) == {"HELD": -12_300, "REVENUE": 5_000, "AVAILABLE": 7_300}

    def test_the_workers_heartbeat_then_updates_no_row_and_its_finalize_claim_loses(self, auth_client, tenant):
        run = run_claim_lease(run_id=submit(auth_client).pk)
        cancel(auth_client, run.pk)

        assert run_extend_lease(run_id=run.pk, lease_token=run.lease_token) is False
        assert run_finalize_claim(run=run) is None
        assert run_fail_by_worker(run=run, reason="PACK_FAILED", detail="late") is False
        assert wallet(tenant) == (INITIAL - MIN_FEE, 0)
        assert Journal.objects.filter(run_id=run.pk, phase="FINALIZE").count() == 1

    def test_frees_the_concurrency_slot(self, tenant):
        plan = Plan.objects.create(code="one-at-once", name="One", allowed_pack_types=["decision"],
                                   post_runs_per_minute=1000, get_requests_per_minute=1000,
                                   max_concurrent_runs=1, max_cost_per_run_micros=CAP)
        tenant.plan = plan
        tenant.save(update_fields=["plan"])
        from rest_framework.test import APIClient

        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {api_key_issue(tenant=tenant).plaintext}")
        first = run_claim_lease(run_id=submit(client).pk)
        assert post_run(client, run_body("0.5000")).status_code == 429

        cancel(client, first.pk)

        assert post_run(client, run_body("0.5000")).status_code == 202


class TestRunsThatCannotBeCanceled:
    def test_a_finalizing_run_is_a_409_and_nothing_moves(self, auth_client, tenant):
        run = run_claim_lease(run_id=submit(auth_client).pk)
        run_finalize_claim(run=run)
        before = ledger_snapshot(tenant)

        response = cancel(auth_client, run.pk, {"reason": "late"})

        assert response.status_code == 409 and response["Content-Type"] == PROBLEM
        problem = response.json()
        assert problem["type"] == "/problems/run-not-cancelable" and problem["status"] == 409
        assert "finalizing" in problem["detail"]
        assert (problem["run_status"], problem["finalize_stage"]) == ("PROCESSING", "CLAIMED")
        assert ledger_snapshot(tenant) == before == (INITIAL - CAP, CAP, 2, 4)
        assert Run.objects.get(pk=run.pk).status == "PROCESSING"
        assert not RunEvent.objects.filter(run_id=run.pk, kind="CANCELED").exists()

    def test_a_completed_run_is_a_409_and_keeps_its_charge(self, auth_client, tenant):
        run = run_claim_lease(run_id=submit(auth_client).pk)
        token = run_finalize_claim(run=run)
        run_finalize_commit(run=run, finalize_token=token, charge_micros=10_400, sha256="ab" * 32)
        before = ledger_snapshot(tenant)

        response = cancel(auth_client, run.pk)

        assert response.status_code == 409
        assert response.json()["run_status"] == "COMPLETED"
        assert ledger_snapshot(tenant) == before == (INITIAL - 10_400, 0, 3, 7)

    def test_a_failed_run_is_a_409_and_keeps_its_minimum_fee(self, auth_client, tenant):
        run = run_claim_lease(run_id=submit(auth_client).pk)
        run_fail_by_worker(run=run, reason="PACK_FAILED", detail="boom")
        before = ledger_snapshot(tenant)

        response = cancel(auth_client, run.pk)

        assert response.status_code == 409
        assert response.json()["run_status"] == "FAILED"
        assert ledger_snapshot(tenant) == before == (INITIAL - MIN_FEE, 0, 3, 7)
        assert Run.objects.get(pk=run.pk).error_reason == "PACK_FAILED"

    def test_a_run_awaiting_an_operator_is_a_409(self, auth_client, tenant):
        run = run_claim_lease(run_id=submit(auth_client).pk)
        run_mark_audit_required(run=run, why="test", now=timezone.now())
        before = ledger_snapshot(tenant)

        response = cancel(auth_client, run.pk)

        assert response.status_code == 409
        assert response.json()["money_state"] == "AUDIT_REQUIRED"
        assert ledger_snapshot(tenant) == before


class TestCancelingTwice:
    @pytest.mark.parametrize("claimed", [False, True], ids=["queued", "processing"])
    def test_a_repeat_answers_the_same_run_and_moves_nothing(self, auth_client, tenant, claimed):
        run = submit(auth_client)
        if claimed:
            run_claim_lease(run_id=run.pk)
        first = cancel(auth_client, run.pk, {"reason": "first"})
        after_first = ledger_snapshot(tenant)

        again = cancel(auth_client, run.pk, {"reason": "second"})

        assert again.status_code == 200
        assert again.json() == first.json()
        assert again.json()["error"]["detail"] == "first"
        assert ledger_snapshot(tenant) == after_first
        assert RunEvent.objects.filter(run_id=run.pk, kind="CANCELED").count() == 1
        assert Journal.objects.filter(run_id=run.pk, phase="FINALIZE").count() == 1

    def test_the_service_says_whether_it_canceled_now(self, auth_client, tenant):
        run = submit(auth_client)

        assert run_cancel(tenant=tenant, run_id=run.pk).canceled_now is True
        assert run_cancel(tenant=tenant, run_id=run.pk).canceled_now is False


class TestCancelRequests:
    def test_another_tenants_run_a_missing_run_and_a_bad_id_are_the_same_404(self, auth_client, tenant,
                                                                               other_tenant):
        from rest_framework.test import APIClient

        other = APIClient()
        other.credentials(HTTP_AUTHORIZATION=f"Bearer {api_key_issue(tenant=other_tenant).plaintext}")
        foreign = submit(other)

        answers = [cancel(auth_client, run_id) for run_id in (foreign.pk, uuid.uuid4(), "not-a-uuid")]

        assert {a.status_code for a in answers} == {404}
        assert {a.json()["type"] for a in answers} == {"/problems/not-found"}
        assert {a.json()["detail"] for a in answers} == {"No such run."}
        assert Run.objects.get(pk=foreign.pk).status == "QUEUED"
        assert wallet(other_tenant) == (INITIAL - CAP, CAP)

    @pytest.mark.parametrize("body", [{"reason": "x" * 201}, {"reason": 12}, {"reason": "tab\there"},
                                      {"why": "unknown field"}, ["a", "list"]],
                             ids=["too long", "not a string", "control character", "unknown field", "not an object"])
    def test_invalid_bodies_are_422_and_move_nothing(self, auth_client, tenant, body):
        run = submit(auth_client)
        before = ledger_snapshot(tenant)

        response = cancel(auth_client, run.pk, body)

        assert response.status_code == 422 and response["Content-Type"] == PROBLEM
        assert response.json()["type"] == "/problems/validation-error"
        assert ledger_snapshot(tenant) == before
        assert Run.objects.get(pk=run.pk).status == "QUEUED"

    def test_a_reason_of_200_characters_is_kept_whole(self, auth_client):
        run = submit(auth_client)

        response = cancel(auth_client, run.pk, {"reason": "r" * 200})

        assert response.status_code == 200 and response.json()["error"]["detail"] == "r" * 200

    def test_malformed_json_is_a_400(self, auth_client):
        run = submit(auth_client)

        response = auth_client.post(f"/v1/runs/{run.pk}/cancel", "{nope", content_type="application/json")

        assert response.status_code == 400 and response["Content-Type"] == PROBLEM
        assert Run.objects.get(pk=run.pk).status == "QUEUED"

    def test_is_counted_under_the_post_rate_limit(self, tenant):
        plan = Plan.objects.create(code="one-post", name="One post", allowed_pack_types=["decision"],
                                   post_runs_per_minute=1, get_requests_per_minute=1000,
                                   max_concurrent_runs=10, max_cost_per_run_micros=CAP)
        tenant.plan = plan
        tenant.save(update_fields=["plan"])
        from rest_framework.test import APIClient

        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {api_key_issue(tenant=tenant).plaintext}")
        run = make_run(tenant)

        first, second = cancel(client, run.pk), cancel(client, run.pk)

        assert first.status_code == 200 and first["RateLimit-Policy"] == '"post_runs";q=1;w=60'
        assert second.status_code == 429 and second.json()["type"] == "/problems/rate-limit-exceeded"

    def test_get_is_not_allowed(self, auth_client):
        run = submit(auth_client)

        assert auth_client.get(f"/v1/runs/{run.pk}/cancel").status_code == 405


class TestCanceledRunsInReads:
    def test_the_list_filters_canceled_runs(self, auth_client):
        canceled, queued = submit(auth_client), submit(auth_client)
        cancel(auth_client, canceled.pk)

        body = auth_client.get("/v1/runs?status=CANCELED").json()

        assert [item["run_id"] for item in body["results"]] == [str(canceled.pk)]
        assert body["results"][0]["error"]["reason_code"] == "CANCELED"
        assert str(queued.pk) not in {item["run_id"] for item in body["results"]}

    def test_the_run_document_shows_it(self, auth_client):
        run = submit(auth_client)
        cancel(auth_client, run.pk, {"reason": "done elsewhere"})

        response = auth_client.get(f"/v1/runs/{run.pk}")

        assert response.json()["status"] == "CANCELED" and response["X-DPP-Cost-Actual"] == "0.0000"
        assert response.json()["error"] == {"reason_code": "CANCELED", "detail": "done elsewhere"}

    def test_the_ops_overview_counts_them(self, auth_client):
        from runs.ops import ops_overview

        cancel(auth_client, submit(auth_client).pk)

        states = ops_overview(now=timezone.now())["by_state"]

        assert {"status": "CANCELED", "money_state": "REFUNDED", "runs": 1} in states


def test_the_service_refuses_with_a_domain_error_naming_the_state(tenant):
    run = run_claim_lease(run_id=make_run(tenant).pk)
    run_finalize_claim(run=run)

    with pytest.raises(RunNotCancelable) as refused:
        run_cancel(tenant=tenant, run_id=run.pk)

    assert refused.value.status == 409 and refused.value.extra["finalize_stage"] == "CLAIMED"
