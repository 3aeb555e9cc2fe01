"""Reads of webhooks. Every selector takes ``tenant`` and filters by it: a foreign id and a
missing id are the same None (the API answers the same 404)."""

from __future__ import annotations

import uuid

from runs.webhooks.models import WebhookDelivery, WebhookEndpoint


def _as_uuid(value) -> uuid.UUID | None:
    try:
        return value if isinstance(value, uuid.UUID) else uuid.UUID(str(value))
    except (ValueError, TypeError, AttributeError):
        return None


def webhook_endpoints_list_for_tenant(*, tenant):
    return WebhookEndpoint.objects.filter(tenant=tenant, deleted_at__isnull=True).order_by("-created_at", "-id")


def webhook_endpoint_get_for_tenant(*, tenant, endpoint_id) -> WebhookEndpoint | None:
    parsed = _as_uuid(endpoint_id)
    if parsed is None:
        return None
    return webhook_endpoints_list_for_tenant(tenant=tenant).filter(pk=parsed).first()


def webhook_deliveries_list_for_endpoint(*, tenant, endpoint: WebhookEndpoint, status: str | None = None):
    queryset = WebhookDelivery.objects.filter(tenant=tenant, endpoint=endpoint).select_related("event").defer(
        "event__body")  # a list shows event.type; the bodies stay in the database
    if status:
        queryset = queryset.filter(status=status.upper())
    return queryset.order_by("-created_at", "-id")


def webhook_delivery_get_for_tenant(*, tenant, delivery_id) -> WebhookDelivery | None:
    parsed = _as_uuid(delivery_id)
    if parsed is None:
        return None
    return WebhookDelivery.objects.filter(tenant=tenant, pk=parsed).select_related("event").defer(
        "event__body").first()
