"""Tenants, plans and API keys in admin. Plan changes go through tenant_assign_plan (history);
keys are issued through api_key_issue and their plaintext is shown once, never stored."""

from __future__ import annotations

from django import forms
from django.contrib import admin, messages

from tenants.models import ApiKey, Plan, PlanAssignment, Tenant
from tenants.services import api_key_issue, api_key_revoke, tenant_assign_plan, tenant_set_status


@admin.register(Plan)
class PlanAdmin(admin.ModelAdmin):
    list_display = ("code", "name", "post_runs_per_minute", "get_requests_per_minute", "max_concurrent_runs",
                    "max_cost_per_run_micros", "retention_days")


class PlanAssignmentInline(admin.TabularInline):
    model = PlanAssignment
    fk_name = "tenant"
    fields = ("assigned_at", "previous_plan", "plan", "assigned_by", "reason")
    readonly_fields = fields
    extra = 0
    can_delete = False

    def has_add_permission(self, request, obj=None):
        return False


@admin.register(Tenant)
class TenantAdmin(admin.ModelAdmin):
    list_display = ("name", "id", "plan", "status", "created_at")
    list_filter = ("status", "plan")
    search_fields = ("name", "=id")
    inlines = [PlanAssignmentInline]
    actions = ["suspend", "activate"]

    def save_model(self, request, obj, form, change):
        if change and "plan" in form.changed_data:
            new_plan = obj.plan
            obj.plan_id = form.initial["plan"]  # the service records the change and its history
            super().save_model(request, obj, form, change)
            tenant_assign_plan(tenant=obj, plan_code=new_plan.code, actor=request.user, reason="changed in admin")
            return
        if not change:
            # A tenant created here gets its wallet and first plan assignment like any other.
            from tenants.services import tenant_create

            created = tenant_create(name=obj.name, plan_code=obj.plan.code, actor=request.user)
            obj.pk = created.pk
            obj._state.adding = False
            return
        super().save_model(request, obj, form, change)

    @admin.action(description="Suspend selected tenants (their keys stop working)")
    def suspend(self, request, queryset):
        for tenant in queryset:
            tenant_set_status(tenant=tenant, status=Tenant.Status.SUSPENDED)

    @admin.action(description="Activate selected tenants")
    def activate(self, request, queryset):
        for tenant in queryset:
            tenant_set_status(tenant=tenant, status=Tenant.Status.ACTIVE)


class ApiKeyIssueForm(forms.ModelForm):
    class Meta:
        model = ApiKey
        fields = ("tenant", "label")


@admin.register(ApiKey)
class ApiKeyAdmin(admin.ModelAdmin):
    list_display = ("prefix", "label", "tenant", "created_at", "last_used_at", "revoked_at")
    list_filter = ("revoked_at",)
    search_fields = ("prefix", "label", "=tenant__id")
    actions = ["revoke"]
    list_select_related = ("tenant",)

    def get_form(self, request, obj=None, **kwargs):
        if obj is None:
            kwargs["form"] = ApiKeyIssueForm
        return super().get_form(request, obj, **kwargs)

    def get_fields(self, request, obj=None):
        if obj is None:
            return ("tenant", "label")
        return ("prefix", "label", "tenant", "created_at", "last_used_at", "revoked_at")

    def get_readonly_fields(self, request, obj=None):
        return () if obj is None else ("prefix", "tenant", "created_at", "last_used_at", "revoked_at")

    def save_model(self, request, obj, form, change):
        if change:
            super().save_model(request, obj, form, change)
            return
        issued = api_key_issue(tenant=obj.tenant, label=obj.label)
        obj.pk = issued.api_key.pk
        obj._state.adding = False
        messages.warning(request, f"New API key (copy it now, it is not shown again): {issued.plaintext}")

    def has_delete_permission(self, request, obj=None):
        return False  # revoke instead: keys stay for the audit trail

    @admin.action(description="Revoke selected keys")
    def revoke(self, request, queryset):
        revoked = sum(api_key_revoke(api_key=key) for key in queryset)
        messages.info(request, f"{revoked} key(s) revoked.")
