"""Tenants, plans and API keys in admin.

Every write goes through a service, so admin keeps the same invariants as the API and the
commands: a tenant is created with its wallet (``tenant_create``), a plan change writes its
history (``tenant_assign_plan``), a key is issued by ``api_key_issue`` and its plaintext shown
once on the answer to the add form itself, with ``Cache-Control: no-store`` (never in a message:
messages travel in a cookie; only its HMAC is stored), and keys are revoked, never deleted. Status
changes and revocations also write an admin LogEntry naming the operator.
Money is not managed here (see billing/admin.py).
"""

from __future__ import annotations

from django import forms
from django.contrib import admin, messages
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils import timezone
from django.utils.cache import add_never_cache_headers, patch_cache_control

from tenants.models import ApiKey, Plan, PlanAssignment, Tenant
from tenants.services import api_key_issue, api_key_revoke, tenant_assign_plan, tenant_create, tenant_set_status


@admin.register(Plan)
class PlanAdmin(admin.ModelAdmin):
    list_display = ("code", "name", "post_runs_per_minute", "get_requests_per_minute", "max_concurrent_runs",
                    "max_cost_per_run_micros", "retention_days", "updated_at")
    search_fields = ("code", "name")
    readonly_fields = ("created_at", "updated_at")


class PlanAssignmentInline(admin.TabularInline):
    """The tenant's plan history, newest last; written only by tenant_assign_plan."""

    model = PlanAssignment
    fk_name = "tenant"
    fields = ("assigned_at", "previous_plan", "plan", "assigned_by", "reason")
    readonly_fields = fields
    extra = 0
    can_delete = False
    verbose_name_plural = "plan history"

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False


class TenantForm(forms.ModelForm):
    plan_change_reason = forms.CharField(
        required=False, max_length=500, label="Reason for a plan change",
        help_text="Recorded in the plan history with your name.",
    )

    class Meta:
        model = Tenant
        fields = ("name", "plan")


@admin.register(Tenant)
class TenantAdmin(admin.ModelAdmin):
    form = TenantForm
    list_display = ("name", "id", "plan", "status", "created_at")
    list_filter = ("status", "plan")
    list_select_related = ("plan",)
    search_fields = ("name", "=id")
    inlines = [PlanAssignmentInline]
    actions = ["suspend", "activate"]

    def get_fields(self, request, obj=None):
        if obj is None:
            return ("name", "plan")
        return ("id", "name", "status", "plan", "plan_change_reason", "created_at", "updated_at")

    def get_readonly_fields(self, request, obj=None):
        # The status changes only through the suspend/activate actions.
        return () if obj is None else ("id", "status", "created_at", "updated_at")

    def get_inlines(self, request, obj):
        return self.inlines if obj is not None else []

    def save_model(self, request, obj, form, change):
        if not change:
            # Created like any other tenant: first plan assignment and wallet in one transaction.
            created = tenant_create(name=obj.name, plan_code=obj.plan.code, actor=request.user)
            obj.pk, obj.created_at, obj.updated_at = created.pk, created.created_at, created.updated_at
            obj._state.adding = False
            return
        # Write only what the operator changed, so a plan or status changed meanwhile elsewhere
        # is not overwritten with this form's stale copy.
        other_fields = [name for name in form.changed_data if name in ("name",)]
        if other_fields:
            obj.save(update_fields=[*other_fields, "updated_at"])
        if "plan" in form.changed_data:
            reason = form.cleaned_data.get("plan_change_reason") or "changed in admin"
            updated = tenant_assign_plan(tenant=obj, plan_code=obj.plan.code, actor=request.user, reason=reason)
            obj.plan, obj.updated_at = updated.plan, updated.updated_at

    def _set_status(self, request, queryset, status: str, verb: str) -> None:
        changed = 0
        for tenant in queryset:
            if tenant.status == status:
                continue
            tenant_set_status(tenant=tenant, status=status)
            self.log_change(request, tenant, f"{verb} by admin action")
            changed += 1
        self.message_user(request, f"{changed} tenant(s) {verb.lower()}.", messages.SUCCESS)

    @admin.action(description="Suspend selected tenants (their keys stop working)")
    def suspend(self, request, queryset):
        self._set_status(request, queryset, Tenant.Status.SUSPENDED, "Suspended")

    @admin.action(description="Activate selected tenants")
    def activate(self, request, queryset):
        self._set_status(request, queryset, Tenant.Status.ACTIVE, "Activated")


class ApiKeyIssueForm(forms.ModelForm):
    """Adding a key asks only whose it is and what it is for; the key itself is generated."""

    class Meta:
        model = ApiKey
        fields = ("tenant", "label")


@admin.register(ApiKey)
class ApiKeyAdmin(admin.ModelAdmin):
    # key_hash is never listed, shown nor editable.
    list_display = ("prefix", "label", "tenant", "created_at", "last_used_at", "revoked_at")
    list_filter = (("revoked_at", admin.EmptyFieldListFilter),)
    list_select_related = ("tenant",)
    search_fields = ("prefix", "label", "tenant__name")
    autocomplete_fields = ("tenant",)
    actions = ["revoke"]

    def get_form(self, request, obj=None, change=False, **kwargs):
        if obj is None:
            kwargs["form"] = ApiKeyIssueForm
        return super().get_form(request, obj, change=change, **kwargs)

    def get_fields(self, request, obj=None):
        if obj is None:
            return ("tenant", "label")
        return ("prefix", "label", "tenant", "created_at", "last_used_at", "revoked_at")

    def get_readonly_fields(self, request, obj=None):
        return () if obj is None else ("prefix", "tenant", "created_at", "last_used_at", "revoked_at")

    def save_model(self, request, obj, form, change):
        if change:
            obj.save(update_fields=["label"])
            return
        issued = api_key_issue(tenant=obj.tenant, label=obj.label)
        obj.pk, obj.prefix, obj.created_at = issued.api_key.pk, issued.api_key.prefix, issued.api_key.created_at
        obj._state.adding = False
        # The only time the plaintext exists outside the client: kept on this request only, for
        # response_add to render; never stored, never in a message (the messages cookie).
        request._dpp_issued_key = issued.plaintext

    def response_add(self, request, obj, post_url_continue=None):
        plaintext = getattr(request, "_dpp_issued_key", None)
        if plaintext is None:
            return super().response_add(request, obj, post_url_continue)
        response = TemplateResponse(request, "admin/tenants/apikey/issued.html", {
            **self.admin_site.each_context(request),
            "title": "New API key",
            "opts": self.opts,
            "api_key": obj,
            "tenant": obj.tenant,
            "plaintext": plaintext,
            "changelist_url": reverse("admin:tenants_apikey_changelist", current_app=self.admin_site.name),
        })
        add_never_cache_headers(response)
        patch_cache_control(response, no_store=True, private=True)
        return response

    def has_delete_permission(self, request, obj=None):
        return False  # revoke instead: keys stay for the audit trail

    @admin.action(description="Revoke selected keys")
    def revoke(self, request, queryset):
        now = timezone.now()
        revoked = 0
        for api_key in queryset:
            if api_key_revoke(api_key=api_key, now=now):
                self.log_change(request, api_key, "Revoked by admin action")
                revoked += 1
        self.message_user(request, f"{revoked} key(s) revoked.", messages.SUCCESS)
