"""Runs in admin: read-only; money moves only through services (operator actions on
AUDIT_REQUIRED runs write an audit row)."""

from __future__ import annotations

from django.contrib import admin

from billing.money import micros_to_usd
from runs.models import Run, RunEvent


class RunEventInline(admin.TabularInline):
    model = RunEvent
    fields = ("created_at", "kind", "actor", "from_status", "to_status", "money_state", "amount_micros", "reason")
    readonly_fields = fields
    extra = 0
    can_delete = False

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False


@admin.register(Run)
class RunAdmin(admin.ModelAdmin):
    list_display = ("id", "tenant", "pack_type", "status", "money_state", "finalize_stage", "reserved_usd",
                    "charged_usd", "created_at")
    list_filter = ("status", "money_state", "finalize_stage", "pack_type")
    search_fields = ("=id", "=tenant__id", "idempotency_key", "trace_id")
    list_select_related = ("tenant",)
    date_hierarchy = "created_at"
    inlines = [RunEventInline]

    def get_readonly_fields(self, request, obj=None):
        return [field.name for field in Run._meta.fields]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return request.method in ("GET", "HEAD") and super().has_view_permission(request, obj)

    def has_delete_permission(self, request, obj=None):
        return False

    @admin.display(description="reserved (USD)")
    def reserved_usd(self, run):
        return micros_to_usd(run.reserved_micros)

    @admin.display(description="charged (USD)")
    def charged_usd(self, run):
        return "" if run.actual_cost_micros is None else micros_to_usd(run.actual_cost_micros)
