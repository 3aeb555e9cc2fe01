"""Validation and shaping of the run API. No business rules: plan limits, balance and
idempotency live in runs/services.py."""

from __future__ import annotations

import hashlib
import json
import re
from datetime import timedelta
from decimal import Decimal

from django.utils import timezone
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from billing.money import MoneyFormatError, micros_to_usd, usd_to_micros
from dpp.context import sane_or_none
from runs.models import Run
from runs.packs import PackInputError, pack_get

IDEMPOTENCY_KEY = re.compile(r"^[\x21-\x7e]{8,64}$")


def payload_hash(data) -> str:
    """SHA-256 of the canonical JSON of a body: key order and whitespace do not matter."""
    canonical = json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


class StrictFieldsMixin:
    """Refuse unknown fields instead of silently dropping them."""

    def to_internal_value(self, data):
        if isinstance(data, dict):
            unknown = sorted(set(data) - set(self.fields))
            if unknown:
                raise serializers.ValidationError({name: ["Unknown field."] for name in unknown})
        return super().to_internal_value(data)


@extend_schema_field({"type": "string", "pattern": r"^\d{1,5}(\.\d{1,4})?$", "example": "0.0500"})
class UsdAmountField(serializers.Field):
    """A 4-decimal USD string in, integer micros out. JSON numbers are refused (no floats)."""

    def to_internal_value(self, data):
        try:
            return usd_to_micros(data)
        except MoneyFormatError as error:
            raise serializers.ValidationError(str(error)) from None

    def to_representation(self, value):
        return micros_to_usd(value)


class RunReservationInput(StrictFieldsMixin, serializers.Serializer):
    max_cost_usd = UsdAmountField()
    timebox_sec = serializers.IntegerField(min_value=1, max_value=90, default=90)
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


class RunCostOutput(serializers.Serializer):
    reserved_usd = serializers.CharField()
    used_usd = serializers.CharField(allow_null=True)
    minimum_fee_usd = serializers.CharField()
    budget_remaining_usd = serializers.CharField(required=False)


class RunResultOutput(serializers.Serializer):
    presigned_url = serializers.URLField()
    sha256 = serializers.CharField()
    expires_at = serializers.DateTimeField()


class RunErrorOutput(serializers.Serializer):
    reason_code = serializers.CharField()
    detail = serializers.CharField()


class RunMetaOutput(serializers.Serializer):
    created_at = serializers.DateTimeField()
    updated_at = serializers.DateTimeField()
    finished_at = serializers.DateTimeField(allow_null=True)
    trace_id = serializers.CharField()
    pack_type = serializers.CharField()


class RunOutput(serializers.Serializer):
    """GET /v1/runs/{id}. The view passes ``budget_remaining_micros`` and ``result`` in context."""

    run_id = serializers.UUIDField(source="id")
    status = serializers.ChoiceField(choices=Run.Status.choices)
    money_state = serializers.ChoiceField(choices=Run.MoneyState.choices)
    cost = serializers.SerializerMethodField()
    result = serializers.SerializerMethodField()
    error = serializers.SerializerMethodField()
    meta = serializers.SerializerMethodField()

    @extend_schema_field(RunCostOutput)
    def get_cost(self, run: Run) -> dict:
        cost = {
            "reserved_usd": micros_to_usd(run.reserved_micros),
            "used_usd": None if run.actual_cost_micros is None else micros_to_usd(run.actual_cost_micros),
            "minimum_fee_usd": micros_to_usd(run.minimum_fee_micros),
        }
        remaining = self.context.get("budget_remaining_micros")
        if remaining is not None:
            cost["budget_remaining_usd"] = micros_to_usd(remaining)
        return cost

    @extend_schema_field(RunResultOutput(allow_null=True))
    def get_result(self, run: Run) -> dict | None:
        return self.context.get("results", {}).get(run.pk)

    @extend_schema_field(RunErrorOutput(allow_null=True))
    def get_error(self, run: Run) -> dict | None:
        if not run.error_reason:
            return None
        return {"reason_code": run.error_reason, "detail": run.error_detail}

    @extend_schema_field(RunMetaOutput)
    def get_meta(self, run: Run) -> dict:
        return {
            "created_at": serializers.DateTimeField().to_representation(run.created_at),
            "updated_at": serializers.DateTimeField().to_representation(run.updated_at),
            "finished_at": serializers.DateTimeField().to_representation(run.finished_at) if run.finished_at else None,
            "trace_id": run.trace_id,
            "pack_type": run.pack_type,
        }


class RunPollOutput(serializers.Serializer):
    href = serializers.CharField()
    recommended_interval_ms = serializers.IntegerField()
    max_wait_sec = serializers.IntegerField()


class RunReservationOutput(serializers.Serializer):
    max_cost_usd = serializers.CharField()
    currency = serializers.CharField()


class RunCreatedMetaOutput(serializers.Serializer):
    created_at = serializers.DateTimeField()
    trace_id = serializers.CharField()


class RunCreatedOutput(serializers.Serializer):
    """The 202 answer of POST /v1/runs."""

    run_id = serializers.UUIDField(source="id")
    status = serializers.ChoiceField(choices=Run.Status.choices)
    poll = serializers.SerializerMethodField()
    reservation = serializers.SerializerMethodField()
    meta = serializers.SerializerMethodField()

    @extend_schema_field(RunPollOutput)
    def get_poll(self, run: Run) -> dict:
        return {"href": f"/v1/runs/{run.pk}", "recommended_interval_ms": 1500, "max_wait_sec": run.timebox_sec}

    @extend_schema_field(RunReservationOutput)
    def get_reservation(self, run: Run) -> dict:
        return {"max_cost_usd": micros_to_usd(run.reserved_micros), "currency": "USD"}

    @extend_schema_field(RunCreatedMetaOutput)
    def get_meta(self, run: Run) -> dict:
        return {"created_at": serializers.DateTimeField().to_representation(run.created_at), "trace_id": run.trace_id}


class RunListQuery(serializers.Serializer):
    status = serializers.ChoiceField(choices=Run.Status.choices, required=False)


class PackOutput(serializers.Serializer):
    pack_type = serializers.CharField()
    title = serializers.CharField()
    description = serializers.CharField()
    input_schema = serializers.DictField()
    pricing = serializers.DictField()


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
    cost_usd_micros_sum = serializers.IntegerField()
    reserved_usd_micros_sum = serializers.IntegerField()


class UsageOutput(serializers.Serializer):
    tenant_id = serializers.UUIDField()
    from_date = serializers.DateField()
    to_date = serializers.DateField()
    daily_usage = DailyUsageOutput(many=True)
