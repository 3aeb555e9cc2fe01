"""Operators: endpoints and deliveries in admin, retry and disable actions writing audit rows,
secrets never shown."""

from __future__ import annotations

import uuid

import pytest
from django.contrib.auth.models import Permission, User

from runs.webhooks import services
from runs.webhooks.models import WebhookAuditEntry, WebhookDelivery, WebhookEndpoint

pytestmark = pytest.mark.django_db


def operator(*codenames) -> User:
    user = User.objects.create_user(username=f"op-{uuid.uuid4().hex[:6]}", password="pw", is_staff=True)
    for codename in codenames:
        user.user_permissions.add(Permission.objects.get(codename=codename, content_type__app_label="webhooks"))
    return user


@pytest.fixture
def endpoint_with_delivery(tenant, local_receivers, receiver, enqueued):
    endpoint, secret = services.webhook_endpoint_create(tenant=tenant, url=receiver.url(), event_types=[])
    delivery = services.webhook_endpoint_test(tenant=tenant, endpoint_id=endpoint.pk)
    services.webhook_delivery_attempt(delivery_id=delivery.pk)
    return endpoint, WebhookDelivery.objects.get(pk=delivery.pk), secret


class TestWebhookEndpointAdmin:
    def test_lists_and_shows_endpoints_without_their_secrets(self, client, endpoint_with_delivery):
        endpoint, _, secret = endpoint_with_delivery
        client.force_login(operator("view_webhookendpoint"))

        listing = client.get("/admin/webhooks/webhookendpoint/")
        page = client.get(f"/admin/webhooks/webhookendpoint/{endpoint.pk}/change/")

        assert listing.status_code == 200 and endpoint.url in listing.content.decode()
        assert page.status_code == 200
        assert secret not in page.content.decode() and endpoint.secret_encrypted not in page.content.decode()

    def test_disable_writes_an_audit_row_naming_the_operator(self, client, endpoint_with_delivery):
        endpoint, _, _ = endpoint_with_delivery
        user = operator("view_webhookendpoint", "change_webhookendpoint")
        client.force_login(user)

        response = client.post("/admin/webhooks/webhookendpoint/", {
            "action": "disable_endpoints", "_selected_action": [str(endpoint.pk)]})

        assert response.status_code == 302
        endpoint.refresh_from_db()
        assert not endpoint.enabled and endpoint.disabled_reason.startswith("operator")
        audit = WebhookAuditEntry.objects.get()
        assert (audit.actor, audit.action, audit.endpoint_id) == (f"admin:{user.username}", "endpoint_disable",
                                                                  endpoint.pk)

    def test_an_operator_without_the_change_permission_cannot_disable(self, client, endpoint_with_delivery):
        endpoint, _, _ = endpoint_with_delivery
        client.force_login(operator("view_webhookendpoint"))

        client.post("/admin/webhooks/webhookendpoint/", {
            "action": "disable_endpoints", "_selected_action": [str(endpoint.pk)]})

        assert WebhookEndpoint.objects.get(pk=endpoint.pk).enabled
        assert not WebhookAuditEntry.objects.exists()


class TestWebhookDeliveryAdmin:
    def test_shows_a_delivery_with_its_attempts(self, client, endpoint_with_delivery):
        _, delivery, _ = endpoint_with_delivery
        client.force_login(operator("view_webhookdelivery", "view_webhookattempt"))

        page = client.get(f"/admin/webhooks/webhookdelivery/{delivery.pk}/change/")

        assert page.status_code == 200 and "204" in page.content.decode()

    def test_the_changelist_does_not_load_the_event_bodies(self, client, endpoint_with_delivery):
        from django.db import connection
        from django.test.utils import CaptureQueriesContext

        _, delivery, _ = endpoint_with_delivery
        client.force_login(operator("view_webhookdelivery"))

        with CaptureQueriesContext(connection) as queries:
            listing = client.get("/admin/webhooks/webhookdelivery/")

        assert listing.status_code == 200 and "webhook.test" in listing.content.decode()
        assert not [q["sql"] for q in queries.captured_queries if '"webhooks_webhookevent"."body"' in q["sql"]]

    def test_retry_makes_it_pending_now_and_writes_an_audit_row(self, client, endpoint_with_delivery,
                                                               django_capture_on_commit_callbacks, enqueued):
        _, delivery, _ = endpoint_with_delivery
        user = operator("view_webhookdelivery", "change_webhookdelivery")
        client.force_login(user)
        enqueued.clear()

        with django_capture_on_commit_callbacks(execute=True):
            client.post("/admin/webhooks/webhookdelivery/", {
                "action": "retry_deliveries", "_selected_action": [str(delivery.pk)]})

        delivery.refresh_from_db()
        assert delivery.status == "PENDING" and delivery.max_attempts == delivery.attempts_count + 1
        assert enqueued == [delivery.pk]
        audit = WebhookAuditEntry.objects.get()
        assert (audit.actor, audit.action, audit.delivery_id) == (f"admin:{user.username}", "delivery_retry",
                                                                  delivery.pk)
