"""GET endpoints: run detail, list, balance, packs, usage; tenant isolation on every one."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
from django.db import transaction
from django.utils import timezone

from runs.models import Run, RunEvent
from runs.reasons import PACK_FAILURE_TEXT, REASON_TEXTS
from runs.services import (
    run_cancel,
    run_claim_lease,
    run_fail_by_worker,
    run_finalize_claim,
    run_finalize_commit,
    run_mark_audit_required,
    run_resolve_audit,
)
from tests.runs.helpers import post_run, run_body

pytestmark = pytest.mark.django_db

PROBLEM = "application/problem+json"


def submit(client, cap="0.0500") -> Run:
    response = post_run(client, run_body(cap))
    assert response.status_code == 202, response.content
    return Run.objects.get(pk=response.json()["run_id"])


def complete(run: Run, charge: int) -> Run:
    run = run_claim_lease(run_id=run.pk)
    token = run_finalize_claim(run=run)
    assert run_finalize_commit(run=run, finalize_token=token, charge_micros=charge, sha256="ab" * 32)
    return Run.objects.get(pk=run.pk)


def run_finalize_claimed(run: Run) -> Run:
    run = run_claim_lease(run_id=run.pk)
    assert run_finalize_claim(run=run)
    return Run.objects.get(pk=run.pk)


class TestRunDetail:
    def test_shows_a_queued_run_with_its_costs(self, auth_client):
        run = submit(auth_client, "0.5000")
        response = auth_client.get(f"/v1/runs/{run.pk}")
        assert response.status_code == 200
        body = response.json()
        assert body["run_id"] == str(run.pk)
        assert body["status"] == "QUEUED" and body["money_state"] == "RESERVED"
        assert body["cost"] == {"reserved_usd": "0.5000", "used_usd": None, "minimum_fee_usd": "0.0100",
                                "budget_remaining_usd": "9.5000"}
        assert body["result"] is None and body["error"] is None
        assert body["meta"]["pack_type"] == "decision"
        assert "X-DPP-Cost-Actual" not in response

    def test_shows_a_completed_run_with_its_result_link_and_actual_cost(self, auth_client):
        run = complete(submit(auth_client, "0.5000"), charge=10_400)
        response = auth_client.get(f"/v1/runs/{run.pk}")
        body = response.json()
        assert body["status"] == "COMPLETED" and body["money_state"] == "SETTLED"
        assert body["cost"]["used_usd"] == "0.0104"
        assert body["cost"]["budget_remaining_usd"] == "9.9896"
        assert response["X-DPP-Cost-Actual"] == "0.0104"
        assert body["result"]["sha256"] == "ab" * 32
        assert f"runs/{run.tenant_id}/{run.pk}/pack_envelope.json" in body["result"]["presigned_url"]

    def test_shows_the_error_of_a_failed_run(self, auth_client):
        run = run_claim_lease(run_id=submit(auth_client, "0.5000").pk)
        run_fail_by_worker(run=run, reason="PACK_FAILED", detail="boom")
        body = auth_client.get(f"/v1/runs/{run.pk}").json()
        assert body["error"] == {"reason_code": "PACK_FAILED", "detail": PACK_FAILURE_TEXT}
        assert body["cost"]["used_usd"] == "0.0100"

    def test_a_reconcilers_diagnostic_stays_in_the_events_and_the_client_reads_a_fixed_text(self, auth_client):
        run = run_finalize_claimed(submit(auth_client, "0.5000"))
        why = f"receipt token 1234 is not the claim's {run.finalize_token}"
        assert run_mark_audit_required(run=run, why=why, now=timezone.now())

        body = auth_client.get(f"/v1/runs/{run.pk}").json()

        assert body["error"] == {"reason_code": "AUDIT_REQUIRED", "detail": REASON_TEXTS["AUDIT_REQUIRED"]}
        assert str(run.finalize_token) not in str(body)
        assert RunEvent.objects.get(run=run, kind="AUDIT_REQUIRED").reason == why

    def test_an_operators_note_stays_in_the_events_and_the_client_reads_a_fixed_text(self, auth_client):
        run = run_finalize_claimed(submit(auth_client, "0.5000"))
        assert run_mark_audit_required(run=run, why="receipt has no readable cost", now=timezone.now())
        note = "Called Bob at ACME: their agent loops; settle 0.01 and ban after the 3rd time."
        run_resolve_audit(run_id=run.pk, action="settle_amount", actor="admin:ops", reason=note, amount_micros=10_000)

        body = auth_client.get(f"/v1/runs/{run.pk}").json()

        assert body["error"] == {"reason_code": "OPERATOR_RESOLVED", "detail": REASON_TEXTS["OPERATOR_RESOLVED"]}
        assert "Bob" not in str(body)
        assert RunEvent.objects.get(run=run, kind="OPERATOR_SETTLE_AMOUNT").reason == note

    @pytest.mark.parametrize("run_id", ["not-a-uuid", str(uuid.uuid4()), "1", "%00"])
    def test_a_missing_or_malformed_id_is_the_same_404(self, auth_client, run_id):
        response = auth_client.get(f"/v1/runs/{run_id}")
        assert response.status_code == 404
        assert response["Content-Type"] == PROBLEM
        assert response.json()["detail"] == "No such run."

    def test_another_tenants_run_is_the_same_404(self, auth_client, other_api_key):
        from rest_framework.test import APIClient

        theirs = APIClient()
        theirs.credentials(HTTP_AUTHORIZATION=f"Bearer {other_api_key}")
        run = submit(theirs)
        mine = auth_client.get(f"/v1/runs/{run.pk}")
        missing = auth_client.get(f"/v1/runs/{uuid.uuid4()}")
        assert mine.status_code == missing.status_code == 404
        assert mine.json()["detail"] == missing.json()["detail"]

    def test_a_run_past_retention_is_410_to_its_owner_only(self, auth_client, other_api_key):
        from rest_framework.test import APIClient

        run = submit(auth_client)
        Run.objects.filter(pk=run.pk).update(retention_until=timezone.now() - timedelta(seconds=1))
        assert auth_client.get(f"/v1/runs/{run.pk}").status_code == 410
        theirs = APIClient()
        theirs.credentials(HTTP_AUTHORIZATION=f"Bearer {other_api_key}")
        assert theirs.get(f"/v1/runs/{run.pk}").status_code == 404


class TestRunList:
    def test_lists_own_runs_newest_first_with_a_cursor(self, auth_client, other_api_key):
        from rest_framework.test import APIClient

        theirs = APIClient()
        theirs.credentials(HTTP_AUTHORIZATION=f"Bearer {other_api_key}")
        submit(theirs)
        mine = [submit(auth_client) for _ in range(5)]

        page1 = auth_client.get("/v1/runs?limit=2").json()
        assert [r["run_id"] for r in page1["results"]] == [str(mine[4].pk), str(mine[3].pk)]
        page2 = auth_client.get(page1["next"]).json()
        page3 = auth_client.get(page2["next"]).json()
        seen = [r["run_id"] for page in (page1, page2, page3) for r in page["results"]]
        assert seen == [str(r.pk) for r in reversed(mine)]
        assert page3["next"] is None

    def test_filters_by_status(self, auth_client):
        done = complete(submit(auth_client), charge=10_400)
        submit(auth_client)
        body = auth_client.get("/v1/runs?status=COMPLETED").json()
        assert [r["run_id"] for r in body["results"]] == [str(done.pk)]

    def test_an_unknown_status_filter_is_a_422(self, auth_client):
        response = auth_client.get("/v1/runs?status=DONE")
        assert response.status_code == 422
        assert response["Content-Type"] == PROBLEM

    def test_query_count_does_not_grow_with_the_page(self, auth_client, django_assert_max_num_queries):
        for _ in range(3):
            complete(submit(auth_client), charge=10_400)
        auth_client.get("/v1/runs")  # warm the key's last_used_at debounce
        with django_assert_max_num_queries(2):  # the key lookup and the page
            small = auth_client.get("/v1/runs?limit=1")
        for _ in range(10):
            submit(auth_client)
        with django_assert_max_num_queries(2):
            large = auth_client.get("/v1/runs?limit=50")
        assert len(small.json()["results"]) == 1 and len(large.json()["results"]) == 13

    def test_get_requests_carry_ratelimit_headers(self, auth_client):
        response = auth_client.get("/v1/runs")
        assert response["RateLimit-Policy"] == '"get_requests";q=100000;w=60'
        assert response["RateLimit"].startswith('"get_requests";r=99999;t=')


class TestBalance:
    def test_shows_available_held_and_the_plan(self, auth_client, tenant):
        submit(auth_client, "0.5000")
        body = auth_client.get("/v1/balance").json()
        assert body["tenant_id"] == str(tenant.pk)  # the key's own tenant, for its usage URL
        assert body["available_usd"] == "9.5000"
        assert body["held_usd"] == "0.5000"
        assert body["currency"] == "USD"
        assert body["plan"]["code"] == "unlimited"
        assert body["plan"]["limits"]["max_concurrent_runs"] == 1000


class TestPacks:
    def test_lists_the_decision_pack_with_its_schema_and_pricing(self, auth_client):
        packs = auth_client.get("/v1/packs").json()["packs"]
        decision = next(p for p in packs if p["pack_type"] == "decision")
        assert decision["input_schema"]["type"] == "object"
        assert "question" in decision["input_schema"]["properties"]
        assert decision["pricing"]["base_usd"] == "0.0100"


class TestUsage:
    # The daily aggregate is written when each transaction commits (a deferred trigger): real commits.
    @pytest.mark.django_db(transaction=True)
    def test_sums_runs_and_ledger_by_day_exactly(self, auth_client, tenant):
        completed = complete(submit(auth_client, "0.5000"), charge=10_400)
        failed = run_claim_lease(run_id=submit(auth_client, "0.2000").pk)
        run_fail_by_worker(run=failed, reason="PACK_FAILED", detail="x")  # minimum fee 5_000 (2% = 4_000 < floor)
        submit(auth_client, "0.0500")  # still queued: reserved, not charged
        canceled = run_claim_lease(run_id=submit(auth_client, "0.3000").pk)
        run_cancel(tenant=tenant, run_id=canceled.pk)  # canceled while processing: minimum fee 6_000 (2%)
        yesterday = submit(auth_client, "0.1000")
        with transaction.atomic():
            Run.objects.filter(pk=yesterday.pk).update(created_at=timezone.now() - timedelta(days=1))
        today = timezone.now().date()

        response = auth_client.get(
            f"/v1/tenants/{tenant.pk}/usage?from={today - timedelta(days=1)}&to={today}"
        )
        assert response.status_code == 200
        body = response.json()
        assert body["tenant_id"] == str(tenant.pk)
        assert body["daily_usage"] == [
            {"usage_date": str(today - timedelta(days=1)), "runs_count": 1, "success_count": 0, "fail_count": 0,
             "canceled_count": 0, "cost_usd_micros_sum": 0, "reserved_usd_micros_sum": 100_000},
            {"usage_date": str(today), "runs_count": 4, "success_count": 1, "fail_count": 1, "canceled_count": 1,
             "cost_usd_micros_sum": 10_400 + 5_000 + 6_000,
             "reserved_usd_micros_sum": 500_000 + 200_000 + 50_000 + 300_000},
        ]
        assert completed.actual_cost_micros == 10_400

    def test_another_tenants_usage_is_a_404(self, auth_client, other_tenant):
        assert auth_client.get(f"/v1/tenants/{other_tenant.pk}/usage").status_code == 404
        assert auth_client.get("/v1/tenants/not-a-uuid/usage").status_code == 404

    @pytest.mark.parametrize("query", ["from=2026-13-01", "from=2026-02-01&to=2026-01-01",
                                       "from=2020-01-01&to=2026-01-01", "to=yesterday"])
    def test_bad_dates_are_422(self, auth_client, tenant, query):
        response = auth_client.get(f"/v1/tenants/{tenant.pk}/usage?{query}")
        assert response.status_code == 422
        assert response["Content-Type"] == PROBLEM


class TestIsolation:
    @pytest.mark.parametrize("path", ["/v1/runs", "/v1/balance", "/v1/packs"])
    def test_every_endpoint_needs_a_key(self, api_client, path):
        response = api_client.get(path)
        assert response.status_code == 401
        assert response["Content-Type"] == PROBLEM
