"""Runs in admin: read-only rows, the AUDIT_REQUIRED queue with its operator decisions, and an
ops overview. Money moves only through runs.services.run_resolve_audit (which writes the audit
row); only staff holding ``runs.resolve_audit`` may act."""

from __future__ import annotations

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.shortcuts import get_object_or_404, redirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join

from billing.models import JournalLeg
from billing.money import MoneyFormatError, micros_to_usd, usd_to_micros
from dpp.admin import ReadOnlyInline
from runs import storage
from runs.models import AuditRequiredRun, Run, RunEvent
from runs.ops import ops_overview
from runs.services import AuditResolutionRefused, run_resolve_audit


class RunEventInline(ReadOnlyInline):
    model = RunEvent
    fields = ("created_at", "kind", "actor", "from_status", "to_status", "money_state", "amount_micros", "reason")


class ResolveAuditForm(forms.Form):
    ACTIONS = [
        ("settle_receipt", "Settle at the S3 receipt's cost (run COMPLETED)"),
        ("settle_amount", "Settle at the amount below (run FAILED, charged that amount)"),
        ("release", "Release everything (run FAILED, refunded)"),
    ]
    action = forms.ChoiceField(choices=ACTIONS, widget=forms.RadioSelect)
    amount_usd = forms.CharField(required=False, help_text="For 'settle at amount': e.g. 0.0104 (at most the reservation)")
    reason = forms.CharField(widget=forms.Textarea(attrs={"rows": 3}), help_text="Required: why this decision.")
    acknowledge_receipt_mismatch = forms.BooleanField(
        required=False, label="I acknowledge the receipt's token is not the claim's",
        help_text="Required to settle at a receipt written under another finalize token (shown above).")

    def clean(self):
        data = super().clean()
        if data.get("action") == "settle_amount":
            try:
                data["amount_micros"] = usd_to_micros(data.get("amount_usd") or "")
            except MoneyFormatError as error:
                self.add_error("amount_usd", str(error))
        return data


class RunAdminBase(admin.ModelAdmin):
    list_display = ("id", "tenant", "pack_type", "status", "money_state", "finalize_stage", "reserved_usd",
                    "charged_usd", "created_at")
    list_filter = ("status", "money_state", "finalize_stage", "pack_type")
    search_fields = ("=id", "=tenant__id", "idempotency_key", "trace_id")
    list_select_related = ("tenant",)
    inlines = [RunEventInline]
    readonly_fields_extra = ("ledger_legs", "receipt", "decide")

    def get_readonly_fields(self, request, obj=None):
        return [field.name for field in Run._meta.fields] + list(self.readonly_fields_extra)

    def has_add_permission(self, request):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        # Viewing only; the change form is read-only and saving is refused.
        return request.method in ("GET", "HEAD") and self.has_view_permission(request, obj)

    @admin.display(description="reserved (USD)")
    def reserved_usd(self, run):
        return micros_to_usd(run.reserved_micros)

    @admin.display(description="charged (USD)")
    def charged_usd(self, run):
        return "" if run.actual_cost_micros is None else micros_to_usd(run.actual_cost_micros)

    @admin.display(description="ledger legs")
    def ledger_legs(self, run):
        legs = (JournalLeg.objects.filter(journal__run_id=run.pk).select_related("journal", "account")
                .order_by("journal_id", "id"))
        rows = format_html_join(
            "", "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            ((leg.journal.kind, leg.account.kind, micros_to_usd(leg.amount_micros), leg.journal.created_at)
             for leg in legs),
        )
        return format_html("<table><tr><th>journal</th><th>account</th><th>USD</th><th>at</th></tr>{}</table>", rows)

    @admin.display(description="S3 receipt")
    def receipt(self, run):
        if not run.result_key:
            return "no result object was ever claimed"
        url = reverse("admin:runs_run_receipt", args=[run.pk])
        return format_html('<a href="{}">fetch the receipt from S3</a> (s3://{}/{})', url, run.result_bucket,
                           run.result_key)

    @admin.display(description="decision")
    def decide(self, run):
        if run.money_state != Run.MoneyState.AUDIT_REQUIRED:
            return "-"
        return format_html('<a class="button" href="{}">Resolve…</a>', reverse("admin:runs_run_resolve",
                                                                              args=[run.pk]))


@admin.register(Run)
class RunAdmin(RunAdminBase):
    date_hierarchy = "created_at"

    def get_urls(self):
        custom = [
            path("ops/", self.admin_site.admin_view(self.ops_view), name="runs_run_ops"),
            path("<uuid:run_id>/receipt/", self.admin_site.admin_view(self.receipt_view), name="runs_run_receipt"),
            path("<uuid:run_id>/resolve/", self.admin_site.admin_view(self.resolve_view), name="runs_run_resolve"),
        ]
        return custom + super().get_urls()

    def receipt_view(self, request, run_id):
        run = get_object_or_404(Run, pk=run_id)
        if not self.has_view_permission(request, run):
            raise PermissionDenied
        try:
            receipt = storage.receipt_get(bucket=run.result_bucket, key=run.result_key) if run.result_key else None
            text = "no object" if receipt is None else (
                f"actual cost {receipt.actual_cost_micros} micros, finalize token {receipt.finalize_token}, "
                f"sha256 {receipt.sha256} (claim token {run.finalize_token})")
        except Exception as error:  # S3 down: say so, do not fail the page
            text = f"S3 unavailable: {type(error).__name__}"
        messages.info(request, f"Receipt of run {run.pk}: {text}")
        return redirect(reverse("admin:runs_run_change", args=[run.pk]))

    def resolve_view(self, request, run_id):
        if not request.user.has_perm("runs.resolve_audit"):
            raise PermissionDenied
        run = get_object_or_404(Run, pk=run_id)
        form = ResolveAuditForm(request.POST or None)
        receipt, receipt_error = None, ""
        if run.result_key:
            try:
                receipt = storage.receipt_get(bucket=run.result_bucket, key=run.result_key)  # outside transactions
            except Exception as error:  # S3 down: say so, do not fail the page
                receipt_error = f"S3 unavailable: {type(error).__name__}"
        if request.method == "POST" and form.is_valid():
            try:
                run_resolve_audit(
                    run_id=run.pk, action=form.cleaned_data["action"], actor=f"admin:{request.user.get_username()}",
                    reason=form.cleaned_data["reason"], amount_micros=form.cleaned_data.get("amount_micros"),
                    receipt=receipt if form.cleaned_data["action"] == "settle_receipt" else None,
                    acknowledge_receipt_mismatch=form.cleaned_data["acknowledge_receipt_mismatch"],
                )
            except AuditResolutionRefused as error:
                messages.error(request, str(error.detail))
            else:
                messages.success(request, f"Run {run.pk} resolved: {form.cleaned_data['action']}.")
                return redirect(reverse("admin:runs_run_change", args=[run.pk]))
        mismatch = receipt is not None and receipt.finalize_token != str(run.finalize_token)
        context = {**self.admin_site.each_context(request), "title": f"Resolve run {run.pk}", "run": run,
                   "form": form, "reserved_usd": micros_to_usd(run.reserved_micros), "opts": self.model._meta,
                   "receipt": receipt, "receipt_error": receipt_error, "token_mismatch": mismatch}
        return TemplateResponse(request, "admin/runs/resolve_audit.html", context)

    def ops_view(self, request):
        if not self.has_view_permission(request):
            raise PermissionDenied
        context = {**self.admin_site.each_context(request), "title": "DPP operations", "ops": ops_overview(
            now=timezone.now()), "opts": self.model._meta}
        return TemplateResponse(request, "admin/runs/ops.html", context)


@admin.register(AuditRequiredRun)
class AuditRequiredRunAdmin(RunAdminBase):
    """Only the runs waiting for an operator, oldest first."""

    list_display = ("id", "tenant", "reserved_usd", "error_detail", "updated_at", "decide")
    list_filter = ()
    ordering = ("updated_at",)

    def get_queryset(self, request):
        return super().get_queryset(request).filter(money_state=Run.MoneyState.AUDIT_REQUIRED)

    def has_view_permission(self, request, obj=None):
        return request.user.has_perm("runs.view_run")

    def change_view(self, request, object_id, form_url="", extra_context=None):
        return redirect(reverse("admin:runs_run_change", args=[object_id]))

