"""The webhook API of DESIGN section 7: endpoints CRUD, secrets, test, deliveries, retry; another
tenant's endpoint or delivery is the same 404 as a missing one; SSRF refused at registration."""

from __future__ import annotations

import uuid

import pytest
from rest_framework.test import APIClient

from runs.webhooks import services
from runs.webhooks.crypto import secret_decrypt
from runs.webhooks.models import TenantWebhookSecret, WebhookDelivery, WebhookEndpoint

pytestmark = pytest.mark.django_db


@pytest.fixture
def other_client(other_api_key):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {other_api_key}")
    return client


def create(client, url, **body):
    return client.post("/v1/webhook_endpoints", {"url": url, **body}, format="json")


class TestDefaultSecret:
    def test_is_created_on_first_use_and_stable(self, auth_client, tenant):
        first = auth_client.get("/v1/webhooks/default/secret")
        second = auth_client.get("/v1/webhooks/default/secret")

        assert first.status_code == 200 and first.json()["key"].startswith("whsec_")
        assert second.json() == first.json()
        stored = TenantWebhookSecret.objects.get(tenant=tenant).secret_encrypted
        assert first.json()["key"] not in stored and secret_decrypt(stored) == first.json()["key"]

    def test_rotate_returns_a_new_one_and_keeps_the_old_for_24_hours(self, auth_client, tenant):
        old = auth_client.get("/v1/webhooks/default/secret").json()["key"]

        rotated = auth_client.post("/v1/webhooks/default/secret/rotate")

        assert rotated.status_code == 200 and rotated.json()["key"] != old
        assert auth_client.get("/v1/webhooks/default/secret").json()["key"] == rotated.json()["key"]
        row = TenantWebhookSecret.objects.get(tenant=tenant)
        assert secret_decrypt(row.previous_secret_encrypted) == old
        assert 23.9 * 3600 < (row.previous_secret_expires_at - row.rotated_at).total_seconds() <= 24 * 3600

    def test_each_tenant_has_its_own(self, auth_client, other_client):
        assert auth_client.get("/v1/webhooks/default/secret").json() != other_client.get(
            "/v1/webhooks/default/secret").json()

    def test_needs_an_api_key(self, api_client):
        assert api_client.get("/v1/webhooks/default/secret").status_code == 401


class TestEndpointCreate:
    def test_answers_201_with_the_secret_shown_once(self, auth_client, local_receivers, receiver):
        response = create(auth_client, receiver.url(), event_types=["run.completed"], description="ci")

        assert response.status_code == 201
        body = response.json()
        assert body["secret"].startswith("whsec_") and body["event_types"] == ["run.completed"]
        assert response["Location"] == f"/v1/webhook_endpoints/{body['id']}"
        shown_again = auth_client.get(f"/v1/webhook_endpoints/{body['id']}").json()
        assert "secret" not in shown_again and body["secret"] not in str(shown_again)
        assert body["secret"] not in WebhookEndpoint.objects.get(pk=body["id"]).secret_encrypted

    @pytest.mark.parametrize("url", ["https://169.254.169.254/", "https://10.0.0.1/x", "https://[::ffff:127.0.0.1]/",
                                     "https://2130706433/", "ftp://example.com/", "not a url"])
    def test_refuses_a_url_that_is_not_a_public_receiver(self, auth_client, settings, url):
        settings.DPP_WEBHOOK_ALLOW_PRIVATE_CIDRS = []

        response = create(auth_client, url)

        assert response.status_code == 422 and response["Content-Type"] == "application/problem+json"
        assert response.json()["errors"]["url"] and not WebhookEndpoint.objects.exists()

    def test_refuses_an_unknown_event_type_and_unknown_fields(self, auth_client, local_receivers, receiver):
        assert create(auth_client, receiver.url(), event_types=["run.exploded"]).status_code == 422
        assert create(auth_client, receiver.url(), secret="whsec_mine").status_code == 422
        assert create(auth_client, receiver.url(), event_types=["webhook.test"]).status_code == 422

    def test_the_plan_limits_the_number_of_endpoints(self, auth_client, tenant, local_receivers, receiver):
        tenant.plan.max_webhook_endpoints = 2
        tenant.plan.save()

        answers = [create(auth_client, receiver.url(f"/{n}")).status_code for n in range(3)]

        assert answers == [201, 201, 409]
        refused = create(auth_client, receiver.url("/x")).json()
        assert refused["type"] == "/problems/webhook-endpoint-limit-exceeded"
        endpoint_id = auth_client.get("/v1/webhook_endpoints").json()["results"][0]["id"]
        assert auth_client.delete(f"/v1/webhook_endpoints/{endpoint_id}").status_code == 204
        assert create(auth_client, receiver.url("/again")).status_code == 201


class TestEndpointReadUpdateDelete:
    def test_lists_own_endpoints_newest_first(self, auth_client, other_client, local_receivers, receiver):
        first = create(auth_client, receiver.url("/1")).json()["id"]
        second = create(auth_client, receiver.url("/2")).json()["id"]
        create(other_client, receiver.url("/other"))

        listed = auth_client.get("/v1/webhook_endpoints").json()["results"]

        assert [item["id"] for item in listed] == [second, first]

    def test_patch_changes_url_event_types_and_enabled(self, auth_client, local_receivers, receiver):
        endpoint_id = create(auth_client, receiver.url("/1")).json()["id"]

        response = auth_client.patch(f"/v1/webhook_endpoints/{endpoint_id}", {
            "url": receiver.url("/2"), "event_types": ["run.failed"], "enabled": False}, format="json")

        assert response.status_code == 200
        assert (response.json()["url"], response.json()["event_types"], response.json()["enabled"]) == (
            receiver.url("/2"), ["run.failed"], False)

    def test_patch_checks_the_new_url(self, auth_client, local_receivers, receiver, settings):
        endpoint_id = create(auth_client, receiver.url("/1")).json()["id"]
        settings.DPP_WEBHOOK_ALLOW_PRIVATE_CIDRS = []

        response = auth_client.patch(f"/v1/webhook_endpoints/{endpoint_id}", {"url": "https://10.1.2.3/"},
                                     format="json")

        assert response.status_code == 422
        assert WebhookEndpoint.objects.get(pk=endpoint_id).url == receiver.url("/1")

    def test_delete_hides_it_and_ends_its_pending_deliveries(self, auth_client, tenant, local_receivers, receiver,
                                                              enqueued):
        endpoint_id = create(auth_client, receiver.url()).json()["id"]
        delivery = services.webhook_endpoint_test(tenant=tenant, endpoint_id=endpoint_id)

        assert auth_client.delete(f"/v1/webhook_endpoints/{endpoint_id}").status_code == 204

        assert auth_client.get(f"/v1/webhook_endpoints/{endpoint_id}").status_code == 404
        assert WebhookDelivery.objects.get(pk=delivery.pk).status == "FAILED"

    def test_rotate_secret_returns_the_new_secret_once(self, auth_client, local_receivers, receiver):
        created = create(auth_client, receiver.url()).json()

        rotated = auth_client.post(f"/v1/webhook_endpoints/{created['id']}/rotate_secret")

        assert rotated.status_code == 200
        assert rotated.json()["secret"] != created["secret"] and rotated.json()["previous_secret_expires_at"]


class TestEndpointTestAndDeliveries:
    def test_test_records_a_webhook_test_event_for_this_endpoint_only(
            self, auth_client, local_receivers, receiver, enqueued, django_capture_on_commit_callbacks):
        only_failed = create(auth_client, receiver.url("/a"), event_types=["run.failed"]).json()["id"]
        create(auth_client, receiver.url("/b"))

        with django_capture_on_commit_callbacks(execute=True):
            response = auth_client.post(f"/v1/webhook_endpoints/{only_failed}/test")

        assert response.status_code == 202
        body = response.json()
        assert (body["event_type"], body["endpoint_id"], body["status"]) == ("webhook.test", only_failed, "pending")
        assert WebhookDelivery.objects.count() == 1 and enqueued == [uuid.UUID(body["id"])]

    def test_deliveries_are_listed_and_filtered_by_status(self, auth_client, tenant, local_receivers, receiver,
                                                          enqueued):
        endpoint_id = create(auth_client, receiver.url()).json()["id"]
        done = services.webhook_endpoint_test(tenant=tenant, endpoint_id=endpoint_id)
        services.webhook_delivery_attempt(delivery_id=done.pk)
        waiting = services.webhook_endpoint_test(tenant=tenant, endpoint_id=endpoint_id)
        url = f"/v1/webhook_endpoints/{endpoint_id}/deliveries"

        every = auth_client.get(url).json()["results"]
        succeeded = auth_client.get(url, {"status": "succeeded"}).json()["results"]
        pending = auth_client.get(url, {"status": "pending"}).json()["results"]

        assert [d["id"] for d in every] == [str(waiting.pk), str(done.pk)]
        assert [(d["id"], d["attempts"], d["last_status_code"]) for d in succeeded] == [(str(done.pk), 1, 204)]
        assert [d["id"] for d in pending] == [str(waiting.pk)]
        assert auth_client.get(url, {"status": "exploded"}).status_code == 422

    def test_retry_makes_a_finished_delivery_due_now_with_one_more_attempt(self, auth_client, tenant,
                                                                           local_receivers, receiver, enqueued):
        endpoint_id = create(auth_client, receiver.url()).json()["id"]
        delivery = services.webhook_endpoint_test(tenant=tenant, endpoint_id=endpoint_id)
        services.webhook_delivery_attempt(delivery_id=delivery.pk)

        response = auth_client.post(f"/v1/webhook_deliveries/{delivery.pk}/retry")

        assert response.status_code == 202 and response.json()["status"] == "pending"
        assert services.webhook_delivery_attempt(delivery_id=delivery.pk) == "succeeded"
        first, second = receiver.requests
        assert first.body == second.body and first.headers["webhook-id"] == second.headers["webhook-id"]

    def test_deliveries_are_shown_without_loading_the_event_bodies(self, auth_client, tenant, local_receivers,
                                                                    receiver, enqueued):
        from django.db import connection
        from django.test.utils import CaptureQueriesContext

        endpoint_id = create(auth_client, receiver.url()).json()["id"]
        done = services.webhook_endpoint_test(tenant=tenant, endpoint_id=endpoint_id)
        services.webhook_delivery_attempt(delivery_id=done.pk)

        with CaptureQueriesContext(connection) as queries:
            tested = auth_client.post(f"/v1/webhook_endpoints/{endpoint_id}/test")
            listed = auth_client.get(f"/v1/webhook_endpoints/{endpoint_id}/deliveries")
            retried = auth_client.post(f"/v1/webhook_deliveries/{done.pk}/retry")

        assert tested.json()["event_type"] == retried.json()["event_type"] == "webhook.test"
        assert [d["event_type"] for d in listed.json()["results"]] == ["webhook.test", "webhook.test"]
        body_reads = [q["sql"] for q in queries.captured_queries
                      if q["sql"].startswith("SELECT") and '"webhooks_webhookevent"."body"' in q["sql"]]
        assert body_reads == []

    def test_test_of_a_disabled_endpoint_is_a_409(self, auth_client, local_receivers, receiver):
        endpoint_id = create(auth_client, receiver.url()).json()["id"]
        auth_client.patch(f"/v1/webhook_endpoints/{endpoint_id}", {"enabled": False}, format="json")

        response = auth_client.post(f"/v1/webhook_endpoints/{endpoint_id}/test")

        assert response.status_code == 409 and response.json()["type"] == "/problems/webhook-endpoint-disabled"


class TestTenantIsolation:
    @pytest.fixture
    def foreign(self, other_tenant, local_receivers, receiver, enqueued):
        endpoint, _ = services.webhook_endpoint_create(tenant=other_tenant, url=receiver.url(), event_types=[])
        delivery = services.webhook_endpoint_test(tenant=other_tenant, endpoint_id=endpoint.pk)
        return endpoint, delivery

    @pytest.mark.parametrize(("method", "path"), [
        ("get", "/v1/webhook_endpoints/{endpoint}"),
        ("patch", "/v1/webhook_endpoints/{endpoint}"),
        ("delete", "/v1/webhook_endpoints/{endpoint}"),
        ("post", "/v1/webhook_endpoints/{endpoint}/rotate_secret"),
        ("post", "/v1/webhook_endpoints/{endpoint}/test"),
        ("get", "/v1/webhook_endpoints/{endpoint}/deliveries"),
        ("post", "/v1/webhook_deliveries/{delivery}/retry"),
    ])
    def test_another_tenants_object_is_the_same_404_as_a_missing_one(self, auth_client, foreign, method, path):
        endpoint, delivery = foreign
        foreign_path = path.format(endpoint=endpoint.pk, delivery=delivery.pk)
        missing_path = path.format(endpoint=uuid.uuid4(), delivery=uuid.uuid4())

        foreign_answer = getattr(auth_client, method)(foreign_path, {"enabled": False}, format="json")
        missing_answer = getattr(auth_client, method)(missing_path, {"enabled": False}, format="json")
        garbage_answer = getattr(auth_client, method)(path.format(endpoint="nope", delivery="nope"),
                                                      {"enabled": False}, format="json")

        assert foreign_answer.status_code == missing_answer.status_code == garbage_answer.status_code == 404
        assert foreign_answer.json()["detail"] == missing_answer.json()["detail"]
        endpoint.refresh_from_db()
        assert endpoint.enabled and endpoint.deleted_at is None
        assert WebhookDelivery.objects.filter(endpoint=endpoint).count() == 1
