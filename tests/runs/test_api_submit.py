"""POST /v1/runs: reservation, idempotency, plan limits and every refusal as a problem."""

from __future__ import annotations

import re

import pytest
from django.test import override_settings

from billing.models import Journal, Wallet
from runs.models import Run, RunEvent
from tenants.models import Plan
from tenants.services import api_key_issue
from tests.factories import TenantFactory
from tests.runs.helpers import decision_inputs, ledger_snapshot, new_key, post_run, run_body

pytestmark = pytest.mark.django_db

PROBLEM = "application/problem+json"


def client_for(tenant):
    from rest_framework.test import APIClient

    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {api_key_issue(tenant=tenant).plaintext}")
    return client


class TestSubmitRun:
    def test_accepts_a_run_and_reserves_its_cap_in_one_transaction(self, auth_client, tenant,
                                                                    django_capture_on_commit_callbacks):
        with django_capture_on_commit_callbacks(execute=False) as callbacks:
            response = post_run(auth_client, run_body("0.5000"), key="key-00000001")

        assert response.status_code == 202, response.content
        body = response.json()
        run = Run.objects.get(pk=body["run_id"])
        assert body["status"] == "QUEUED"
        assert body["poll"] == {"href": f"/v1/runs/{run.pk}", "recommended_interval_ms": 1500, "max_wait_sec": 30}
        assert body["reservation"] == {"max_cost_usd": "0.5000", "currency": "USD"}
        assert body["meta"]["trace_id"] == run.trace_id
        assert response["Location"] == f"/v1/runs/{run.pk}"
        assert response["X-DPP-Cost-Reserved"] == "0.5000"
        assert response["X-DPP-Cost-Minimum-Fee"] == "0.0100"  # 2% of 0.5000
        assert run.reserved_micros == 500_000 and run.minimum_fee_micros == 10_000
        assert run.money_state == "RESERVED" and run.enqueued_at is None
        wallet = Wallet.objects.get(tenant=tenant)
        assert (wallet.available_micros, wallet.held_micros) == (10_000_000 - 500_000, 500_000)
        assert Journal.objects.filter(run_id=run.pk, kind="RESERVE").count() == 1
        assert RunEvent.objects.filter(run=run, kind="CREATED").count() == 1
        assert len(callbacks) == 1  # the task is sent only after commit

    def test_carries_the_client_trace_id(self, auth_client):
        response = post_run(auth_client, run_body(meta={"trace_id": "agent-trace-42"}))
        assert response.status_code == 202
        assert response.json()["meta"]["trace_id"] == "agent-trace-42"
        assert Run.objects.get().trace_id == "agent-trace-42"


class TestIdempotency:
    def test_the_same_key_and_body_replays_the_same_run_without_reserving_again(self, auth_client, tenant):
        first = post_run(auth_client, key="same-key-123")
        before = ledger_snapshot(tenant)
        second = post_run(auth_client, key="same-key-123")

        assert second.status_code == 202
        assert second["Idempotent-Replayed"] == "true"
        assert second.json()["run_id"] == first.json()["run_id"]
        assert ledger_snapshot(tenant) == before
        assert Run.objects.count() == 1

    def test_key_order_and_whitespace_of_the_body_do_not_matter(self, auth_client):
        body = run_body()
        reordered = dict(reversed(list(body.items())))
        first = post_run(auth_client, body, key="order-key-1")
        second = post_run(auth_client, reordered, key="order-key-1")
        assert second.json()["run_id"] == first.json()["run_id"]

    def test_the_same_key_with_another_body_is_a_409(self, auth_client, tenant):
        post_run(auth_client, key="reused-key-1")
        before = ledger_snapshot(tenant)
        response = post_run(auth_client, run_body("0.0400"), key="reused-key-1")
        assert response.status_code == 409
        assert response["Content-Type"] == PROBLEM
        assert response.json()["type"] == "/problems/idempotency-key-reused"
        assert ledger_snapshot(tenant) == before

    def test_keys_are_scoped_to_the_tenant(self, auth_client, other_tenant):
        other = client_for(other_tenant)
        mine = post_run(auth_client, key="shared-key-1")
        theirs = post_run(other, run_body("0.0400"), key="shared-key-1")
        assert theirs.status_code == 202
        assert theirs.json()["run_id"] != mine.json()["run_id"]

    def test_a_refused_request_does_not_consume_the_key(self, auth_client):
        refused = post_run(auth_client, run_body("0.0010"), key="retry-key-1")
        assert refused.status_code == 422
        accepted = post_run(auth_client, run_body("0.0500"), key="retry-key-1")
        assert accepted.status_code == 202
        assert "Idempotent-Replayed" not in accepted


class TestPlanLimits:
    @pytest.fixture
    def basic_client(self):
        tenant = TenantFactory(plan=Plan.objects.get(code="basic"), balance_micros=1_000_000)
        return tenant, client_for(tenant)

    def test_a_cap_above_the_plan_is_a_402(self, basic_client):
        tenant, client = basic_client
        before = ledger_snapshot(tenant)
        response = post_run(client, run_body("0.0600"))
        assert response.status_code == 402
        assert response.json()["type"] == "/problems/max-cost-exceeded"
        assert ledger_snapshot(tenant) == before

    def test_the_plan_cap_itself_is_accepted(self, basic_client):
        _, client = basic_client
        assert post_run(client, run_body("0.0500")).status_code == 202

    def test_a_cap_below_the_floor_is_a_422(self, basic_client):
        _, client = basic_client
        response = post_run(client, run_body("0.0049"))
        assert response.status_code == 422
        assert "max_cost_usd" in response.json()["detail"]

    def test_a_cap_below_the_quote_is_a_422_naming_the_quote(self, basic_client):
        _, client = basic_client
        response = post_run(client, run_body("0.0100"))  # this decision costs 0.0104
        assert response.status_code == 422
        assert response.json()["quote_usd"] == "0.0104"

    def test_a_pack_outside_the_plan_is_a_422(self):
        plan = Plan.objects.create(code="nopacks", name="No decision", allowed_pack_types=["other"],
                                   post_runs_per_minute=10, get_requests_per_minute=10, max_concurrent_runs=1,
                                   max_cost_per_run_micros=50_000)
        tenant = TenantFactory(plan=plan, balance_micros=1_000_000)
        before = ledger_snapshot(tenant)
        response = post_run(client_for(tenant))
        assert response.status_code == 422
        assert response.json()["errors"] == {"pack_type": "not available on this plan"}
        assert ledger_snapshot(tenant) == before

    def test_an_insufficient_balance_is_a_402_and_moves_nothing(self):
        tenant = TenantFactory(balance_micros=40_000)
        before = ledger_snapshot(tenant)
        response = post_run(client_for(tenant), run_body("0.0500"))
        assert response.status_code == 402
        assert response.json()["type"] == "/problems/insufficient-balance"
        assert ledger_snapshot(tenant) == before
        assert not Run.objects.exists()

    def test_over_the_concurrent_runs_limit_is_a_429_with_retry_after(self):
        plan = Plan.objects.create(code="one-at-a-time", name="One", allowed_pack_types=["decision"],
                                   post_runs_per_minute=100, get_requests_per_minute=100, max_concurrent_runs=1,
                                   max_cost_per_run_micros=50_000)
        tenant = TenantFactory(plan=plan, balance_micros=1_000_000)
        client = client_for(tenant)
        assert post_run(client).status_code == 202
        response = post_run(client)
        assert response.status_code == 429
        assert response.json()["type"] == "/problems/concurrent-runs-exceeded"
        assert int(response["Retry-After"]) > 0

    def test_over_the_post_rate_is_a_429_with_ratelimit_headers(self):
        plan = Plan.objects.create(code="slow-poster", name="Slow", allowed_pack_types=["decision"],
                                   post_runs_per_minute=2, get_requests_per_minute=100, max_concurrent_runs=10,
                                   max_cost_per_run_micros=50_000)
        tenant = TenantFactory(plan=plan, balance_micros=1_000_000)
        client = client_for(tenant)
        first = post_run(client)
        assert first["RateLimit-Policy"] == '"post_runs";q=2;w=60'
        assert first["RateLimit"].startswith('"post_runs";r=1;t=')
        post_run(client)
        before = ledger_snapshot(tenant)
        third = post_run(client)
        assert third.status_code == 429
        assert third.json()["type"] == "/problems/rate-limit-exceeded"
        assert int(third["Retry-After"]) >= 1
        assert third["RateLimit"].startswith('"post_runs";r=0;')
        assert ledger_snapshot(tenant) == before


def _bad_requests():
    """(id, body, headers, expected status, expected problem slug)."""
    ok = run_body()
    cases = [
        ("no idempotency key", ok, {"HTTP_IDEMPOTENCY_KEY": ""}, 400, "invalid-idempotency-key"),
        ("short idempotency key", ok, {"HTTP_IDEMPOTENCY_KEY": "short"}, 400, "invalid-idempotency-key"),
        ("long idempotency key", ok, {"HTTP_IDEMPOTENCY_KEY": "k" * 65}, 400, "invalid-idempotency-key"),
        ("idempotency key with a space", ok, {"HTTP_IDEMPOTENCY_KEY": "has a space"}, 400, "invalid-idempotency-key"),
        ("non-ascii idempotency key", ok, {"HTTP_IDEMPOTENCY_KEY": "clé-unique-1"}, 400, "invalid-idempotency-key"),
        ("body is a list", [ok], {}, 422, "validation-error"),
        ("body is a string", "run", {}, 422, "validation-error"),
        ("empty object", {}, {}, 422, "validation-error"),
        ("unknown top-level field", {**ok, "extra": 1}, {}, 422, "validation-error"),
        ("missing pack_type", {k: v for k, v in ok.items() if k != "pack_type"}, {}, 422, "validation-error"),
        ("unknown pack_type", {**ok, "pack_type": "nope"}, {}, 422, "validation-error"),
        ("pack_type not a string", {**ok, "pack_type": 5}, {}, 422, "validation-error"),
        ("missing reservation", {k: v for k, v in ok.items() if k != "reservation"}, {}, 422, "validation-error"),
        ("reservation not an object", {**ok, "reservation": "0.5"}, {}, 422, "validation-error"),
        ("max_cost_usd as a float", run_body(reservation={"max_cost_usd": 0.05}), {}, 422, "validation-error"),
        ("max_cost_usd as an int", run_body(reservation={"max_cost_usd": 1}), {}, 422, "validation-error"),
        ("max_cost_usd with 5 decimals", run_body("0.05001"), {}, 422, "validation-error"),
        ("max_cost_usd negative", run_body("-0.0500"), {}, 422, "validation-error"),
        ("max_cost_usd exponent", run_body("5e-2"), {}, 422, "validation-error"),
        ("max_cost_usd NaN", run_body("NaN"), {}, 422, "validation-error"),
        ("max_cost_usd blank", run_body(""), {}, 422, "validation-error"),
        ("max_cost_usd over 10000", run_body("10000.0001"), {}, 422, "validation-error"),
        ("max_cost_usd below floor", run_body("0.0010"), {}, 422, "validation-error"),
        ("timebox 0", run_body(reservation={"max_cost_usd": "0.0500", "timebox_sec": 0}), {}, 422, "validation-error"),
        ("timebox 91", run_body(reservation={"max_cost_usd": "0.0500", "timebox_sec": 91}), {}, 422, "validation-error"),
        ("timebox a string", run_body(reservation={"max_cost_usd": "0.0500", "timebox_sec": "x"}), {}, 422,
         "validation-error"),
        ("reliability above 1",
         run_body(reservation={"max_cost_usd": "0.0500", "min_reliability_score": 1.5}), {}, 422, "validation-error"),
        ("unknown reservation field", run_body(reservation={"max_cost_usd": "0.0500", "tip": "1"}), {}, 422,
         "validation-error"),
        ("unknown meta field", run_body(meta={"trace": "x"}), {}, 422, "validation-error"),
        ("trace id with spaces", run_body(meta={"trace_id": "a b"}), {}, 422, "validation-error"),
        ("inputs not an object", run_body(inputs=[1, 2]), {}, 422, "validation-error"),
        ("inputs missing question", run_body(inputs={k: v for k, v in decision_inputs().items() if k != "question"}),
         {}, 422, "validation-error"),
        ("inputs with one option", run_body(inputs=decision_inputs(options=decision_inputs()["options"][:1])), {},
         422, "validation-error"),
        ("inputs with a missing score", run_body(inputs=decision_inputs(options=[
            {"id": "pg", "label": "PostgreSQL", "scores": {"cost": 9}},
            {"id": "my", "label": "MySQL", "scores": {"cost": 8, "ops": 6}}])), {}, 422, "validation-error"),
        ("inputs with a bad mode", run_body(inputs=decision_inputs(mode="long")), {}, 422, "validation-error"),
        ("unsupported media type", "pack_type=decision", {"content_type": "application/x-www-form-urlencoded"}, 415,
         "unsupported-media-type"),
        ("malformed json", b'{"pack_type": ', {"content_type": "application/json"}, 400, "malformed-request"),
    ]
    return cases


class TestMalformedRequests:
    @pytest.mark.parametrize(("case", "body", "headers", "status", "slug"), _bad_requests(),
                             ids=[c[0] for c in _bad_requests()])
    def test_each_answers_its_problem_and_moves_no_money(self, auth_client, tenant, case, body, headers, status, slug):
        before = ledger_snapshot(tenant)
        headers = dict(headers)
        key = headers.pop("HTTP_IDEMPOTENCY_KEY", new_key())
        content_type = headers.pop("content_type", None)
        if content_type:
            response = auth_client.generic("POST", "/v1/runs", body, content_type=content_type,
                                           HTTP_IDEMPOTENCY_KEY=key)
        else:
            response = auth_client.post("/v1/runs", body, format="json", HTTP_IDEMPOTENCY_KEY=key)

        assert response.status_code == status, response.content
        assert response["Content-Type"] == PROBLEM
        problem = response.json()
        assert problem["type"] == f"/problems/{slug}"
        assert problem["status"] == status
        assert problem["request_id"] == response["X-Request-ID"]
        assert problem["instance"] == "/v1/runs"
        assert ledger_snapshot(tenant) == before
        assert not Run.objects.exists()

    def test_a_422_names_the_offending_input_field(self, auth_client):
        body = run_body(inputs=decision_inputs(options=[
            {"id": "pg", "label": "PostgreSQL", "scores": {"cost": 9}},
            {"id": "my", "label": "MySQL", "scores": {"cost": 8, "ops": 6}}]))
        response = post_run(auth_client, body)
        assert response.status_code == 422
        assert response.json()["detail"].startswith("inputs.options.0.scores.ops")

    def test_a_body_over_the_limit_is_a_413(self, auth_client, tenant):
        before = ledger_snapshot(tenant)
        with override_settings(DPP_MAX_BODY_BYTES=2048):
            response = post_run(auth_client, run_body(inputs=decision_inputs(context="x" * 4096)))
        assert response.status_code == 413
        assert response["Content-Type"] == PROBLEM
        assert ledger_snapshot(tenant) == before

    def test_without_a_key_it_is_a_401_problem(self, api_client):
        response = post_run(api_client)
        assert response.status_code == 401
        assert response["Content-Type"] == PROBLEM
        assert response["WWW-Authenticate"].startswith("Bearer")

    def test_get_and_delete_on_a_run_are_405_problems(self, auth_client):
        run_id = post_run(auth_client).json()["run_id"]
        response = auth_client.delete(f"/v1/runs/{run_id}")
        assert response.status_code == 405
        assert response["Content-Type"] == PROBLEM


class TestRedisDown:
    def test_post_answers_503_and_moves_no_money(self, auth_client, tenant):
        before = ledger_snapshot(tenant)
        with override_settings(REDIS_URL="redis://127.0.0.1:1/0"):
            response = post_run(auth_client)
        assert response.status_code == 503
        assert response["Content-Type"] == PROBLEM
        assert response.json()["type"] == "/problems/service-unavailable"
        assert ledger_snapshot(tenant) == before
        assert not Run.objects.exists()


class TestTheHotWalletRow:
    def test_the_wallet_update_is_the_last_statement_before_the_commit(self, auth_client, tenant):
        from django.db import connection
        from django.test.utils import CaptureQueriesContext

        post_run(auth_client)  # warm the caches (key lookup, ledger account ids)
        with CaptureQueriesContext(connection) as queries:
            response = post_run(auth_client)

        assert response.status_code == 202
        statements = [q["sql"].strip() for q in queries.captured_queries]
        # The reservation's journal, legs and wallet UPDATE are one statement (a WITH query).
        wallet_updates = [i for i, sql in enumerate(statements) if re.search(r'UPDATE "?billing_wallet"?', sql)]
        assert len(wallet_updates) == 1
        # (The test's transaction turns the commit into a savepoint release.)
        writes_after = [sql for sql in statements[wallet_updates[0] + 1:]
                        if sql.startswith(("INSERT", "UPDATE", "DELETE", "WITH"))]
        assert writes_after == [], writes_after
        assert "active_runs" in statements[wallet_updates[0]]
        # The run and its history row were written before it.
        assert any('INSERT INTO "runs_run"' in sql for sql in statements[:wallet_updates[0]])
        assert not [sql for sql in statements if "FOR UPDATE" in sql]  # no lock taken earlier

    def test_a_refused_submission_holds_no_slot_and_moves_nothing(self):
        tenant = TenantFactory(balance_micros=40_000)
        post_run(client_for(tenant), run_body("0.0500"))
        assert Wallet.objects.get(tenant=tenant).active_runs == 0
