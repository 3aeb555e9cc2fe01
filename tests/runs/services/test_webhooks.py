"""Run transitions record their webhook events in the same transaction: the webhook object of
POST /v1/runs (validated, SSRF-checked, part of the idempotency fingerprint, stored on the run),
run.completed / run.failed / run.started (opt-in), an event if and only if its transition
committed, the body carrying the run as GET /v1/runs/{id} shows it without the presigned URL."""

from __future__ import annotations

import json
import uuid
from datetime import timedelta

import pytest
from django.core.management import call_command
from django.db import transaction
from django.test import override_settings
from django.utils import timezone

from runs.models import Run
from runs.services import (
    RunSubmission,
    run_claim_lease,
    run_create,
    run_fail_by_worker,
    run_finalize_claim,
    run_finalize_commit,
    run_reap_zombie,
    run_resolve_audit,
)
from runs.webhooks import services as webhooks
from runs.webhooks.models import WebhookDelivery, WebhookEvent
from tests.runs.helpers import decision_inputs, ledger_snapshot, new_key, post_run, run_body

pytestmark = pytest.mark.emulator

HOOK = "https://hooks.example/dpp"


@pytest.fixture(autouse=True)
def _public_hooks_example(monkeypatch):
    """hooks.example resolves to a public address (no DNS in tests); nothing is sent."""
    monkeypatch.setattr("runs.webhooks.ssrf._system_resolve",
                        lambda host, port: ["93.184.216.34"] if host == "hooks.example" else ["10.0.0.7"])


def make_run(tenant, *, webhook=None) -> Run:
    submission = RunSubmission(
        idempotency_key=uuid.uuid4().hex, payload_hash="0" * 64, pack_type="decision", inputs=decision_inputs(),
        max_cost_micros=500_000, timebox_sec=30, min_reliability_score=None, trace_id="trace-webhooks",
        webhook=webhook,
    )
    return run_create(tenant=tenant, submission=submission).run


def events_of(run) -> list[str]:
    return list(WebhookEvent.objects.filter(run_id=run.pk).order_by("created_at").values_list("type", flat=True))


@pytest.mark.django_db
class TestTheWebhookObjectOfPostRuns:
    def test_is_stored_on_the_run_with_its_default_events(self, auth_client, no_broker):
        response = post_run(auth_client, run_body(webhook={"url": HOOK}))

        assert response.status_code == 202
        run = Run.objects.get(pk=response.json()["run_id"])
        assert run.webhook == {"url": HOOK, "events": ["run.completed", "run.failed", "run.canceled"]}

    def test_keeps_the_events_named(self, auth_client, no_broker):
        response = post_run(auth_client, run_body(webhook={"url": HOOK, "events": ["run.started", "run.failed"]}))

        assert Run.objects.get(pk=response.json()["run_id"]).webhook["events"] == ["run.started", "run.failed"]

    @pytest.mark.parametrize("webhook", [
        {"url": "https://10.0.0.1/x"},
        {"url": "https://169.254.169.254/latest"},
        {"url": "https://internal.example/x"},  # resolves to 10.0.0.7
        {"url": HOOK, "events": ["run.exploded"]},
        {"url": HOOK, "events": []},
        {"url": HOOK, "secret": "whsec_x"},
        {"events": ["run.completed"]},
    ])
    def test_a_bad_webhook_is_a_422_that_creates_nothing_and_moves_no_money(self, auth_client, tenant, no_broker,
                                                                          settings, webhook):
        settings.DPP_WEBHOOK_ALLOW_PRIVATE_CIDRS = []
        before = ledger_snapshot(tenant)
        key = new_key()

        response = post_run(auth_client, run_body(webhook=webhook), key=key)

        assert response.status_code == 422 and response.json()["errors"]["webhook"]
        assert not Run.objects.exists() and ledger_snapshot(tenant) == before
        assert post_run(auth_client, run_body(), key=key).status_code == 202  # the key was not consumed

    def test_is_part_of_the_idempotency_fingerprint(self, auth_client, no_broker):
        key = new_key()
        first = post_run(auth_client, run_body(webhook={"url": HOOK}), key=key)

        same = post_run(auth_client, run_body(webhook={"url": HOOK}), key=key)
        other = post_run(auth_client, run_body(webhook={"url": "https://hooks.example/other"}), key=key)
        none = post_run(auth_client, run_body(), key=key)

        assert (first.status_code, same.status_code, same["Idempotent-Replayed"]) == (202, 202, "true")
        assert other.status_code == none.status_code == 409


@pytest.mark.django_db
class TestTransitionsRecordTheirEvents:
    def test_completed_records_run_completed_with_the_run_document_without_the_presigned_url(
            self, auth_client, tenant, no_broker, enqueued):
        run = make_run(tenant, webhook={"url": HOOK, "events": ["run.completed"]})
        run = run_claim_lease(run_id=run.pk)
        token = run_finalize_claim(run=run)

        assert run_finalize_commit(run=run, finalize_token=token, charge_micros=12_300, sha256="a" * 64)

        [event] = WebhookEvent.objects.filter(run_id=run.pk)
        body = json.loads(event.body)
        shown = auth_client.get(f"/v1/runs/{run.pk}").json()
        assert body["type"] == "run.completed" and body["id"] == event.id
        assert body["data"]["version"] == Run.objects.get(pk=run.pk).version
        document = body["data"]["run"]
        assert document["result"] == {"sha256": "a" * 64} and "presigned_url" not in json.dumps(document)
        shown_result = shown.pop("result")
        assert shown_result["sha256"] == "a" * 64 and document.pop("result")
        assert document == shown
        [delivery] = WebhookDelivery.objects.filter(event=event)
        assert (delivery.target, delivery.url) == ("RUN", HOOK) and enqueued == []  # sent on commit only

    @pytest.mark.parametrize("claimed", [False, True], ids=["queued", "processing"])
    def test_a_cancel_records_run_canceled_once_with_the_canceled_run(self, auth_client, tenant, no_broker, enqueued,
                                                                      claimed):
        run = make_run(tenant, webhook={"url": HOOK})
        if claimed:
            run_claim_lease(run_id=run.pk)

        first = auth_client.post(f"/v1/runs/{run.pk}/cancel", {"reason": "not needed"}, format="json")
        again = auth_client.post(f"/v1/runs/{run.pk}/cancel", {"reason": "twice"}, format="json")

        assert (first.status_code, again.status_code) == (200, 200)
        [event] = WebhookEvent.objects.filter(run_id=run.pk)
        document = json.loads(event.body)["data"]["run"]
        assert (event.type, document["status"], document["error"]) == (
            "run.canceled", "CANCELED", {"reason_code": "CANCELED", "detail": "not needed"})
        assert document["cost"]["used_usd"] == ("0.0100" if claimed else "0.0000")
        assert WebhookDelivery.objects.filter(event=event).count() == 1

    def test_a_refused_cancel_records_no_event(self, auth_client, tenant, no_broker, enqueued):
        run = run_claim_lease(run_id=make_run(tenant, webhook={"url": HOOK}).pk)
        run_finalize_claim(run=run)

        assert auth_client.post(f"/v1/runs/{run.pk}/cancel").status_code == 409
        assert events_of(run) == []

    def test_a_worker_failure_records_run_failed(self, tenant, no_broker, enqueued):
        run = run_claim_lease(run_id=make_run(tenant, webhook={"url": HOOK}).pk)

        assert run_fail_by_worker(run=run, reason="PACK_ERROR", detail="boom")

        [event] = WebhookEvent.objects.filter(run_id=run.pk)
        document = json.loads(event.body)["data"]["run"]
        assert (event.type, document["status"], document["error"]["reason_code"]) == ("run.failed", "FAILED",
                                                                                     "PACK_ERROR")

    def test_the_reaper_failure_records_run_failed(self, tenant, no_broker, enqueued):
        run = run_claim_lease(run_id=make_run(tenant, webhook={"url": HOOK}).pk,
                              now=timezone.now() - timedelta(hours=1))

        assert run_reap_zombie(run=run, now=timezone.now())

        assert events_of(run) == ["run.failed"]

    def test_run_started_only_where_named(self, tenant, no_broker, enqueued):
        silent = make_run(tenant, webhook={"url": HOOK})
        named = make_run(tenant, webhook={"url": HOOK, "events": ["run.started", "run.completed"]})

        run_claim_lease(run_id=silent.pk)
        run_claim_lease(run_id=named.pk)

        assert events_of(silent) == [] and events_of(named) == ["run.started"]

    def test_a_registered_endpoint_hears_runs_submitted_without_a_webhook(self, tenant, no_broker, enqueued):
        endpoint, _ = webhooks.webhook_endpoint_create(tenant=tenant, url=HOOK, event_types=[])
        run = run_claim_lease(run_id=make_run(tenant).pk)

        run_fail_by_worker(run=run, reason="PACK_ERROR", detail="boom")

        [delivery] = WebhookDelivery.objects.filter(event__run_id=run.pk)
        assert delivery.endpoint_id == endpoint.pk

    def test_no_subscriber_no_event(self, tenant, no_broker, enqueued):
        run = run_claim_lease(run_id=make_run(tenant).pk)

        run_fail_by_worker(run=run, reason="PACK_ERROR", detail="boom")

        assert events_of(run) == []

    def test_a_lost_transition_records_nothing(self, tenant, no_broker, enqueued):
        run = run_claim_lease(run_id=make_run(tenant, webhook={"url": HOOK}).pk)
        assert run_fail_by_worker(run=run, reason="PACK_ERROR", detail="first")

        assert not run_fail_by_worker(run=run, reason="PACK_ERROR", detail="again")  # another actor won

        assert events_of(run) == ["run.failed"]

    def test_an_operator_resolution_records_the_terminal_event(self, tenant, no_broker, enqueued):
        run = run_claim_lease(run_id=make_run(tenant, webhook={"url": HOOK}).pk)
        Run.objects.filter(pk=run.pk).update(money_state=Run.MoneyState.AUDIT_REQUIRED)

        run_resolve_audit(run_id=run.pk, action="release", actor="admin:op", reason="no receipt")

        assert events_of(run) == ["run.failed"]


@pytest.mark.django_db(transaction=True)
class TestEventIfAndOnlyIfTheTransitionCommitted:
    def test_a_rolled_back_transition_leaves_no_event_and_sends_nothing(self, tenant, no_broker, enqueued):
        run = run_claim_lease(run_id=make_run(tenant, webhook={"url": HOOK}).pk)

        with pytest.raises(RuntimeError):
            with transaction.atomic():
                assert run_fail_by_worker(run=run, reason="PACK_ERROR", detail="boom")
                raise RuntimeError("the transaction around the transition fails")

        assert Run.objects.get(pk=run.pk).status == "PROCESSING"
        assert events_of(run) == [] and enqueued == []

    def test_a_committed_transition_has_its_event_and_its_send(self, tenant, no_broker, enqueued):
        run = run_claim_lease(run_id=make_run(tenant, webhook={"url": HOOK}).pk)

        assert run_fail_by_worker(run=run, reason="PACK_ERROR", detail="boom")

        assert events_of(run) == ["run.failed"]
        assert enqueued == [WebhookDelivery.objects.get(event__run_id=run.pk).pk]
        call_command("check_ledger", "--skip-s3")


@pytest.mark.django_db(transaction=True)
@pytest.mark.slow
class TestEndToEnd:
    def test_a_run_submitted_with_a_webhook_is_delivered_signed_after_it_completes(
            self, local_receivers, receiver, result_bucket):
        from rest_framework.test import APIClient
        from standardwebhooks import Webhook

        from tenants.services import api_key_issue
        from tests.factories import TenantFactory
        from tests.workers import TEST_PACKS, WorkerProcess, wait_until

        runs_queue, hooks_queue = f"dpp-runs-{uuid.uuid4().hex[:8]}", f"dpp-webhooks-{uuid.uuid4().hex[:8]}"
        tenant = TenantFactory(balance_micros=10_000_000)
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {api_key_issue(tenant=tenant).plaintext}")
        with override_settings(DPP_QUEUE_NAME=runs_queue, DPP_WEBHOOK_QUEUE_NAME=hooks_queue,
                               DPP_PACKS=TEST_PACKS.split(",")):
            worker = WorkerProcess(queue_name=runs_queue, queues=[runs_queue, hooks_queue], relay=True, env={
                "DPP_WEBHOOK_QUEUE_NAME": hooks_queue, "DPP_WEBHOOK_ALLOW_PRIVATE_CIDRS": "127.0.0.0/8"}).start()
            try:
                response = post_run(client, run_body(webhook={"url": receiver.url("/dpp")}))
                assert response.status_code == 202, response.content
                run_id = response.json()["run_id"]

                [request] = receiver.wait_for(1, timeout=60)
                wait_until(lambda: WebhookDelivery.objects.get(event__run_id=run_id).status == "SUCCEEDED",
                           timeout=30, message="the delivery recorded")
            finally:
                worker.stop()

        secret = client.get("/v1/webhooks/default/secret").json()["key"]
        event = Webhook(secret).verify(request.body, request.headers)
        assert (event["type"], event["data"]["run"]["run_id"], event["data"]["run"]["status"]) == (
            "run.completed", run_id, "COMPLETED")
        assert event["data"]["run"]["cost"] == client.get(f"/v1/runs/{run_id}").json()["cost"]
        call_command("check_ledger")
