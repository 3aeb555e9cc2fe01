"""dpp_client against the real stack: the API on a real port (live_server), a real Celery worker,
PostgreSQL, S3 and SQS on the emulator. Exact micros throughout."""

from __future__ import annotations

import uuid
from urllib.parse import urlsplit

import dpp_client
import pytest
from django.core.management import call_command

from billing.models import Journal, Wallet
from runs.models import Run
from tenants.models import Plan
from tenants.services import api_key_issue
from tests.clients.conftest import INITIAL_MICROS, decision_inputs
from tests.clients.proxy import LosingProxy
from tests.factories import TenantFactory

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow, pytest.mark.emulator]

DECISION_COST_MICROS = 10_400  # base 0.0100 + 2 options x 2 criteria x 0.0001


def ledger_is_green() -> bool:
    try:
        call_command("check_ledger")
    except SystemExit as exit_:
        raise AssertionError(f"check_ledger failed with {exit_.code}") from None
    return True


def client_for(live_server, key: str, **kwargs) -> dpp_client.Client:
    return dpp_client.Client(live_server.url, key, **kwargs)


class TestRunToResult:
    def test_create_wait_result_returns_the_checked_envelope_and_charges_the_actual_cost(
            self, live_server, worker, result_bucket, funded):
        tenant, key = funded
        with client_for(live_server, key) as client:
            created = client.runs.create("decision", decision_inputs(), max_cost_usd="0.0500", timebox_sec=30)
            assert created.status == "QUEUED" and created.replayed is False

            finished = client.runs.wait(created.run_id, timeout=60)
            envelope = client.runs.result(finished)

        assert finished.status == "COMPLETED" and finished.money_state == "SETTLED"
        assert finished.cost.used_usd == "0.0104"
        assert envelope.run_id == created.run_id and envelope.status == "COMPLETED"
        assert envelope.data.winner.id == "pg"
        assert envelope.cost == {"reserved_usd": "0.0500", "used_usd": "0.0104", "minimum_fee_usd": "0.0050"}
        wallet = Wallet.objects.get(tenant=tenant)
        assert (wallet.available_micros, wallet.held_micros) == (INITIAL_MICROS - DECISION_COST_MICROS, 0)
        assert ledger_is_green()

    def test_run_is_one_call_and_the_async_client_does_the_same(self, live_server, worker, result_bucket, funded):
        import anyio

        _, key = funded
        with client_for(live_server, key) as client:
            envelope = client.run("decision", decision_inputs(), max_cost_usd="0.0500", timebox_sec=30)

        async def async_run():
            async with dpp_client.AsyncClient(live_server.url, key) as client:
                return await client.run("decision", decision_inputs("Async?"), max_cost_usd="0.0500", timebox_sec=30)

        async_envelope = anyio.run(async_run)
        assert envelope.data.winner.id == async_envelope.data.winner.id == "pg"
        assert async_envelope.data.question == "Async?"
        assert Run.objects.filter(status="COMPLETED").count() == 2


    def test_a_failed_run_ends_the_wait_and_its_result_raises_run_not_completed(
            self, live_server, worker, result_bucket, funded):
        tenant, key = funded
        inputs = {"seconds": 0.1, "cost_micros": 20_000, "fail": True}
        with client_for(live_server, key) as client:
            with pytest.raises(dpp_client.RunNotCompleted, match="PACK_FAILED") as raised:
                client.run("test_slow", inputs, max_cost_usd="0.0500", timebox_sec=30)

        assert raised.value.run["status"] == "FAILED" and raised.value.run["money_state"] == "SETTLED"
        assert raised.value.run["cost"]["used_usd"] == "0.0050"  # the minimum fee
        assert Wallet.objects.get(tenant=tenant).available_micros == INITIAL_MICROS - 5_000
        assert ledger_is_green()


class TestLostResponse:
    def test_a_lost_post_response_is_retried_with_the_same_key_and_replays_the_same_run(
            self, live_server, worker, result_bucket, funded):
        tenant, key = funded
        upstream = urlsplit(live_server.url)
        with LosingProxy(upstream.hostname, upstream.port, drop_posts=1) as proxy:
            with dpp_client.Client(proxy.url, key, backoff_base=0.05) as client:
                created = client.runs.create("decision", decision_inputs(), max_cost_usd="0.0500")

        assert len(proxy.dropped_responses) == 1
        assert proxy.dropped_responses[0].startswith(b"HTTP/1.1 202")  # the server did answer: the answer was lost
        assert created.replayed is True  # the second attempt replayed the first one's run
        runs = list(Run.objects.filter(tenant=tenant))
        assert [str(run.pk) for run in runs] == [created.run_id]
        assert Journal.objects.filter(tenant=tenant, kind="RESERVE").count() == 1
        # The one run executes once and is charged once.
        with client_for(live_server, key) as client:
            finished = client.runs.wait(created.run_id, timeout=60)
        assert finished.status == "COMPLETED"
        assert Journal.objects.filter(tenant=tenant, kind="SETTLE").count() == 1
        wallet = Wallet.objects.get(tenant=tenant)
        assert (wallet.available_micros, wallet.held_micros) == (INITIAL_MICROS - DECISION_COST_MICROS, 0)
        assert ledger_is_green()


class TestTypedErrors:
    def test_an_unknown_key_is_authentication_failed(self, live_server, funded):
        with client_for(live_server, "dpp_live_" + "0" * 32 + "_00000000") as client:
            with pytest.raises(dpp_client.AuthenticationFailed) as raised:
                client.balance()
        assert raised.value.status == 401 and raised.value.request_id

    def test_a_cap_above_the_balance_is_insufficient_balance_and_moves_no_money(self, live_server):
        tenant = TenantFactory(balance_micros=40_000)
        key = api_key_issue(tenant=tenant).plaintext
        with client_for(live_server, key) as client:
            with pytest.raises(dpp_client.InsufficientBalance) as raised:
                client.runs.create("decision", decision_inputs(), max_cost_usd="0.0500")
        assert raised.value.status == 402 and raised.value.type == "/problems/insufficient-balance"
        assert Wallet.objects.get(tenant=tenant).available_micros == 40_000

    def test_a_cap_above_the_plan_is_max_cost_exceeded(self, live_server):
        tenant = TenantFactory(plan=Plan.objects.get(code="basic"), balance_micros=1_000_000)
        key = api_key_issue(tenant=tenant).plaintext
        with client_for(live_server, key) as client:
            with pytest.raises(dpp_client.MaxCostExceeded):
                client.runs.create("decision", decision_inputs(), max_cost_usd="0.0600")

    def test_a_run_that_does_not_exist_is_not_found(self, live_server, funded):
        with client_for(live_server, funded[1]) as client:
            with pytest.raises(dpp_client.NotFound) as raised:
                client.runs.get(str(uuid.uuid4()))
        assert raised.value.status == 404 and raised.value.type == "/problems/not-found"

    def test_another_tenants_run_is_the_same_not_found(self, live_server, funded):
        other = TenantFactory(balance_micros=1_000_000)
        with client_for(live_server, api_key_issue(tenant=other).plaintext) as client:
            run_id = client.runs.create("decision", decision_inputs(), max_cost_usd="0.0500").run_id
        with client_for(live_server, funded[1]) as client:
            with pytest.raises(dpp_client.NotFound):
                client.runs.get(run_id)

    def test_the_same_key_with_another_body_is_idempotency_key_reused(self, live_server, funded):
        with client_for(live_server, funded[1]) as client:
            client.runs.create("decision", decision_inputs(), max_cost_usd="0.0500", idempotency_key="reused-key-1")
            with pytest.raises(dpp_client.IdempotencyKeyReused) as raised:
                client.runs.create("decision", decision_inputs("Another?"), max_cost_usd="0.0500",
                                   idempotency_key="reused-key-1")
        assert raised.value.status == 409

    def test_invalid_inputs_are_validation_failed_naming_the_field(self, live_server, funded):
        inputs = decision_inputs()
        inputs["options"] = inputs["options"][:1]
        with client_for(live_server, funded[1]) as client:
            with pytest.raises(dpp_client.ValidationFailed) as raised:
                client.runs.create("decision", inputs, max_cost_usd="0.0500")
        assert raised.value.status == 422 and "options" in raised.value.detail
        assert "inputs" in raised.value.errors

    def test_over_the_rate_limit_is_rate_limited_with_retry_after(self, live_server):
        plan = Plan.objects.create(code="one-per-minute", name="One", allowed_pack_types=["decision"], post_runs_per_minute=1,
                                   get_requests_per_minute=100, max_concurrent_runs=10, max_cost_per_run_micros=50_000)
        tenant = TenantFactory(plan=plan, balance_micros=1_000_000)
        key = api_key_issue(tenant=tenant).plaintext
        # The server asks for up to a minute; a client that will wait at most 1 s raises at once.
        with client_for(live_server, key, max_retry_wait=1) as client:
            client.runs.create("decision", decision_inputs(), max_cost_usd="0.0500")
            with pytest.raises(dpp_client.RateLimited) as raised:
                client.runs.create("decision", decision_inputs("Second?"), max_cost_usd="0.0500")
        assert raised.value.status == 429 and raised.value.type == "/problems/rate-limit-exceeded"
        assert raised.value.retry_after and raised.value.retry_after >= 1
        assert Run.objects.filter(tenant=tenant).count() == 1


class TestListingAndAccount:
    def test_list_iterates_past_the_first_page_newest_first(self, live_server, funded):
        with client_for(live_server, funded[1]) as client:  # no worker: the runs stay QUEUED
            created = [client.runs.create("decision", decision_inputs(f"Question {i}?"), max_cost_usd="0.0500").run_id
                       for i in range(5)]
            listed = [run.run_id for run in client.runs.list(limit=2)]
            queued = [run.run_id for run in client.runs.list(status="QUEUED", limit=2)]
            none_completed = list(client.runs.list(status="COMPLETED"))

        assert listed == list(reversed(created))  # three pages of 2, 2 and 1
        assert sorted(queued) == sorted(created) and none_completed == []

    def test_packs_balance_and_usage(self, live_server, worker, result_bucket, funded):
        tenant, key = funded
        with client_for(live_server, key) as client:
            client.run("decision", decision_inputs(), max_cost_usd="0.0500", timebox_sec=30)
            packs = client.packs()
            balance = client.balance()
            usage = client.usage(str(tenant.pk))
            own_usage = client.usage()  # the key's tenant, read from the balance

        assert "decision" in [pack.pack_type for pack in packs]
        decision = next(pack for pack in packs if pack.pack_type == "decision")
        assert decision.pricing.base_usd == "0.0100" and decision.input_schema["type"] == "object"
        assert balance.available_usd == "9.9896" and balance.held_usd == "0.0000" and balance.plan.code == "unlimited"
        assert usage.tenant_id == str(tenant.pk) and balance.tenant_id == str(tenant.pk)
        assert own_usage == usage
        assert sum(day.cost_usd_micros_sum for day in usage.daily_usage) == DECISION_COST_MICROS
        assert sum(day.success_count for day in usage.daily_usage) == 1


class TestCancelAndWebhooks:
    def test_cancel_refunds_a_queued_run_and_a_finished_run_is_not_cancelable(
            self, live_server, worker, result_bucket, funded):
        tenant, key = funded
        with client_for(live_server, key) as client:
            finished = client.run("decision", decision_inputs(), max_cost_usd="0.0500", timebox_sec=30)
            worker.stop()  # from here on nothing runs: the next run stays QUEUED
            queued = client.runs.create("decision", decision_inputs("Another?"), max_cost_usd="0.0500")
            canceled = client.runs.cancel(queued.run_id, reason="changed my mind")
            again = client.runs.cancel(queued.run_id)  # already CANCELED: 200, nothing moves
            with pytest.raises(dpp_client.errors.RunNotCancelable) as refused:
                client.runs.cancel(finished.run_id)

        assert (canceled.status, canceled.money_state) == ("CANCELED", "REFUNDED")
        assert (again.status, again.money_state) == ("CANCELED", "REFUNDED")
        assert refused.value.status == 409
        wallet = Wallet.objects.get(tenant=tenant)
        assert (wallet.available_micros, wallet.held_micros, wallet.active_runs) == (
            INITIAL_MICROS - DECISION_COST_MICROS, 0, 0)
        assert ledger_is_green()

    def test_an_endpoint_registered_by_the_client_gets_a_delivery_the_client_verifies(
            self, live_server, result_bucket, funded, queue_name, settings):
        from tests.runs.webhooks.receiver import Receiver
        from tests.workers import WorkerProcess

        hooks_queue = f"{queue_name}-webhooks"
        settings.DPP_WEBHOOK_QUEUE_NAME = hooks_queue
        settings.DPP_WEBHOOK_ALLOW_PRIVATE_CIDRS = ["127.0.0.0/8"]  # the receiver is on 127.0.0.1
        receiver = Receiver()
        process = WorkerProcess(queue_name=queue_name, queues=[queue_name, hooks_queue], relay=True, env={
            "DPP_WEBHOOK_QUEUE_NAME": hooks_queue, "DPP_WEBHOOK_ALLOW_PRIVATE_CIDRS": "127.0.0.0/8"}).start()
        try:
            with client_for(live_server, funded[1]) as client:
                endpoint = client.webhook_endpoints.create(receiver.url("/hooks"), event_types=["run.completed"])
                run = client.run("decision", decision_inputs(), max_cost_usd="0.0500", timebox_sec=30)
                [request] = receiver.wait_for(1, timeout=60)
                deliveries = list(client.webhook_endpoints.deliveries(endpoint.id))
        finally:
            process.stop()
            receiver.close()

        event = dpp_client.verify_webhook(request.body, request.headers, endpoint.secret)
        assert (event["type"], event["data"]["run"]["run_id"]) == ("run.completed", run.run_id)
        with pytest.raises(dpp_client.errors.WebhookVerificationError):
            dpp_client.verify_webhook(request.body + b" ", request.headers, endpoint.secret)
        assert len(deliveries) == 1
        assert ledger_is_green()
