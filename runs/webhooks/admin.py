"""Webhooks in admin: endpoints and deliveries (read-only rows) with the operator actions
"retry" and "disable", each through a service that writes an audit row. Secrets are never shown."""

from __future__ import annotations

from django.contrib import admin, messages

from dpp.admin import ReadOnlyInline
from runs.webhooks.models import WebhookAttempt, WebhookAuditEntry, WebhookDelivery, WebhookEndpoint
from runs.webhooks.services import WebhookEndpointDisabled, webhook_delivery_retry, webhook_endpoint_disable


class _ReadOnly(admin.ModelAdmin):
    exclude_from_view: tuple = ()

    def get_readonly_fields(self, request, obj=None):
        return [f.name for f in self.model._meta.fields if f.name not in self.exclude_from_view]

    def has_add_permission(self, request):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return request.method in ("GET", "HEAD") and self.has_view_permission(request, obj)


def _actor(request) -> str:
    return f"admin:{request.user.get_username()}"


@admin.register(WebhookEndpoint)
class WebhookEndpointAdmin(_ReadOnly):
    list_display = ("id", "tenant", "url", "enabled", "disabled_reason", "created_at", "deleted_at")
    list_filter = ("enabled",)
    search_fields = ("=id", "=tenant__id", "url")
    list_select_related = ("tenant",)
    exclude = ("secret_encrypted", "previous_secret_encrypted")
    exclude_from_view = ("secret_encrypted", "previous_secret_encrypted")
    actions = ["disable_endpoints"]

    def has_operate_permission(self, request):
        return request.user.has_perm("webhooks.change_webhookendpoint")

    @admin.action(permissions=["operate"], description="Disable the selected endpoints (ends their pending deliveries)")
    def disable_endpoints(self, request, queryset):
        done = sum(webhook_endpoint_disable(endpoint_id=endpoint.pk, actor=_actor(request),
                                            reason="disabled from admin") for endpoint in queryset[:100])
        messages.info(request, f"{done} endpoint(s) disabled.")


class WebhookAttemptInline(ReadOnlyInline):
    model = WebhookAttempt
    fields = ("number", "started_at", "duration_ms", "status_code", "error_class", "error_detail")


@admin.register(WebhookDelivery)
class WebhookDeliveryAdmin(_ReadOnly):
    list_display = ("id", "tenant", "event", "target", "url", "status", "attempts_count", "next_attempt_at",
                    "last_status_code", "created_at")
    list_filter = ("status", "target")
    search_fields = ("=id", "=tenant__id", "=event__id", "url")
    list_select_related = ("tenant", "event")
    inlines = [WebhookAttemptInline]
    actions = ["retry_deliveries"]

    def get_queryset(self, request):
        # Rows show the event as "type id": its body (up to the whole run document) stays unread.
        return super().get_queryset(request).select_related("event").defer("event__body")

    def has_operate_permission(self, request):
        return request.user.has_perm("webhooks.change_webhookdelivery")

    @admin.action(permissions=["operate"], description="Retry the selected deliveries now (same event id and body)")
    def retry_deliveries(self, request, queryset):
        done, refused = 0, 0
        for delivery in queryset[:100]:
            try:
                webhook_delivery_retry(delivery_id=delivery.pk, actor=_actor(request), reason="retried from admin")
                done += 1
            except WebhookEndpointDisabled:
                refused += 1
        messages.info(request, f"{done} delivery(ies) scheduled now; {refused} refused (endpoint disabled).")


@admin.register(WebhookAuditEntry)
class WebhookAuditEntryAdmin(_ReadOnly):
    list_display = ("created_at", "actor", "action", "tenant", "endpoint", "delivery", "reason")
    list_filter = ("action",)
