"""Validation and shaping of the run API. No business rules: plan limits, balance and
idempotency live in runs/services.py."""

from __future__ import annotations

import hashlib
import json
import re
from datetime import timedelta
from decimal import Decimal

from django.conf import settings
from django.utils import timezone
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from billing.money import micros_to_usd
from billing.serializers import UsdField
from dpp.context import sane_or_none
from dpp.serializers import OutputSerializer, StrictFieldsMixin
from runs.models import Run
from runs.packs import PackInputError, pack_get
from runs.reasons import reason_text
from runs.webhooks.serializers import RunWebhookInput

IDEMPOTENCY_KEY = re.compile(r"^[\x21-\x7e]{8,64}$")
POLL_INTERVAL_MS = 1500


def payload_hash(data) -> str:
    """SHA-256 of the canonical JSON of a body: key order and whitespace do not matter."""
    canonical = json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


class RunReservationInput(StrictFieldsMixin, serializers.Serializer):
    max_cost_usd = UsdField(source="max_cost_micros")  # validated as micros
    timebox_sec = serializers.IntegerField(min_value=1, max_value=settings.DPP_MAX_TIMEBOX_SECONDS,
                                           default=settings.DPP_MAX_TIMEBOX_SECONDS)
    min_reliability_score = serializers.DecimalField(
        max_digits=5, decimal_places=4, min_value=Decimal("0"), max_value=Decimal("1"), required=False,
        allow_null=True,
    )


class RunMetaInput(StrictFieldsMixin, serializers.Serializer):
    trace_id = serializers.CharField(max_length=128, required=False, allow_blank=False)

    def validate_trace_id(self, value):
        if sane_or_none(value) is None:
            raise serializers.ValidationError("Use 1 to 128 characters from A-Z a-z 0-9 . _ : -")
        return value


class RunCreateInput(StrictFieldsMixin, serializers.Serializer):
    pack_type = serializers.CharField(max_length=64)
    inputs = serializers.JSONField()
    reservation = RunReservationInput()
    meta = RunMetaInput(required=False)
    webhook = RunWebhookInput(required=False)

    def validate_pack_type(self, value):
        if pack_get(value) is None:
            raise serializers.ValidationError(f"Unknown pack type '{value}'. See GET /v1/packs.")
        return value

    def validate(self, attrs):
        pack = pack_get(attrs["pack_type"])
        try:
            attrs["inputs"] = pack.validate(attrs["inputs"])
        except PackInputError as error:
            raise serializers.ValidationError({"inputs": {error.field: [error.message]}}) from None
        return attrs


class StrictCharField(serializers.CharField):
    """A JSON string only: a number or a boolean is refused, not turned into text."""

    def to_internal_value(self, data):
        if not isinstance(data, str):
            self.fail("invalid")
        return super().to_internal_value(data)


class RunCancelInput(StrictFieldsMixin, serializers.Serializer):
    """The optional body of POST /v1/runs/{id}/cancel."""

    REASON_MAX_LENGTH = 200

    reason = StrictCharField(max_length=REASON_MAX_LENGTH, required=False, allow_blank=True,
                             help_text="Why the run is canceled (shown as error.detail); at most 200 characters.")

    def validate_reason(self, value):
        if any(not character.isprintable() for character in value):
            raise serializers.ValidationError("Use printable characters only (no control characters).")
        return value


class RunIdentityOutput(OutputSerializer):
    """What every run document starts with."""

    run_id = serializers.UUIDField(source="id")
    status = serializers.ChoiceField(choices=Run.Status.choices)


class RunCostOutput(OutputSerializer):
    """The run's money, from the run (``source="*"``); ``budget_remaining_usd`` only when the
    view passes ``budget_remaining_micros`` in the context (the detail view)."""

    reserved_usd = UsdField(source="reserved_micros")
    used_usd = UsdField(source="actual_cost_micros", allow_null=True)
    minimum_fee_usd = UsdField(source="minimum_fee_micros")
    budget_remaining_usd = serializers.SerializerMethodField()

    @extend_schema_field({"type": "string", "example": "9.9500"})
    def get_budget_remaining_usd(self, run: Run) -> str | None:
        remaining = self.context.get("budget_remaining_micros")
        return None if remaining is None else micros_to_usd(remaining)

    def to_representation(self, run: Run) -> dict:
        data = super().to_representation(run)
        if data["budget_remaining_usd"] is None:
            del data["budget_remaining_usd"]  # the list view does not show it
        return data


class RunResultOutput(OutputSerializer):
    presigned_url = serializers.URLField()
    sha256 = serializers.CharField()
    expires_at = serializers.DateTimeField()


class RunErrorOutput(OutputSerializer):
    """A stable reason code and its fixed text (runs/reasons.py); never an operator's note or a
    diagnostic."""

    reason_code = serializers.CharField(source="error_reason")
    detail = serializers.SerializerMethodField()

    def get_detail(self, run: Run) -> str:
        return reason_text(run.error_reason, run.error_detail)


class RunMetaOutput(OutputSerializer):
    created_at = serializers.DateTimeField()
    updated_at = serializers.DateTimeField()
    finished_at = serializers.DateTimeField(allow_null=True)
    trace_id = serializers.CharField()
    pack_type = serializers.CharField()


class RunOutput(RunIdentityOutput):
    """GET /v1/runs and /v1/runs/{id}: the run document. The view passes ``results`` (run id ->
    presigned link) and, for one run, ``budget_remaining_micros`` in the context."""

    money_state = serializers.ChoiceField(choices=Run.MoneyState.choices)
    cost = RunCostOutput(source="*")
    result = serializers.SerializerMethodField()
    error = serializers.SerializerMethodField()
    meta = RunMetaOutput(source="*")

    @extend_schema_field(RunResultOutput(allow_null=True))
    def get_result(self, run: Run) -> dict | None:
        return self.context.get("results", {}).get(run.pk)

    @extend_schema_field(RunErrorOutput(allow_null=True))
    def get_error(self, run: Run) -> dict | None:
        if run.money_state == Run.MoneyState.AUDIT_REQUIRED:
            # The operators' reasons stay internal; the client learns what happens next.
            return {"reason_code": "AUDIT_REQUIRED", "detail": reason_text("AUDIT_REQUIRED")}
        return RunErrorOutput(run).data if run.error_reason else None


class RunPollOutput(OutputSerializer):
    href = serializers.SerializerMethodField()
    recommended_interval_ms = serializers.SerializerMethodField()
    max_wait_sec = serializers.IntegerField(source="timebox_sec")

    def get_href(self, run: Run) -> str:
        return f"/v1/runs/{run.pk}"

    def get_recommended_interval_ms(self, _) -> int:
        return POLL_INTERVAL_MS


class RunReservationOutput(OutputSerializer):
    max_cost_usd = UsdField(source="reserved_micros")
    currency = serializers.SerializerMethodField()

    def get_currency(self, _) -> str:
        return "USD"


class RunCreatedMetaOutput(OutputSerializer):
    created_at = serializers.DateTimeField()
    trace_id = serializers.CharField()


class RunCreatedOutput(RunIdentityOutput):
    """The 202 answer of POST /v1/runs."""

    poll = RunPollOutput(source="*")
    reservation = RunReservationOutput(source="*")
    meta = RunCreatedMetaOutput(source="*")


class RunListQuery(serializers.Serializer):
    status = serializers.ChoiceField(choices=Run.Status.choices, required=False)


class PackOutput(serializers.Serializer):
    pack_type = serializers.CharField()
    title = serializers.CharField()
    description = serializers.CharField()
    input_schema = serializers.DictField()
    pricing = serializers.DictField()


class PackListOutput(serializers.Serializer):
    """GET /v1/packs: the packs of the caller's plan."""

    packs = PackOutput(many=True)


class RunPageOutput(serializers.Serializer):
    """GET /v1/runs: one page of runs, newest first; ``next`` / ``previous`` are cursor links."""

    next = serializers.URLField(allow_null=True)
    previous = serializers.URLField(allow_null=True)
    results = RunOutput(many=True)


class UsageQuery(serializers.Serializer):
    """?from=YYYY-MM-DD&to=YYYY-MM-DD (UTC days, inclusive); defaults: the last 30 days."""

    MAX_DAYS = 366

    def get_fields(self):
        # "from" is a Python keyword, so the fields are declared here rather than as attributes.
        return {"from": serializers.DateField(required=False), "to": serializers.DateField(required=False)}

    def validate(self, attrs):
        end = attrs.get("to") or timezone.now().date()
        start = attrs.get("from") or (end - timedelta(days=30))
        if start > end:
            raise serializers.ValidationError({"from": ["Must not be after 'to'."]})
        if (end - start).days > self.MAX_DAYS:
            raise serializers.ValidationError({"to": [f"The range is at most {self.MAX_DAYS} days."]})
        return {"from_date": start, "to_date": end}


class DailyUsageOutput(serializers.Serializer):
    usage_date = serializers.DateField()
    runs_count = serializers.IntegerField()
    success_count = serializers.IntegerField()
    fail_count = serializers.IntegerField()
    canceled_count = serializers.IntegerField()
    cost_usd_micros_sum = serializers.IntegerField()
    reserved_usd_micros_sum = serializers.IntegerField()


class UsageOutput(serializers.Serializer):
    tenant_id = serializers.UUIDField()
    from_date = serializers.DateField()
    to_date = serializers.DateField()
    daily_usage = DailyUsageOutput(many=True)
