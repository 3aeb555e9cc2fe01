"""Shapes of the billing API, and the one DRF field for money on the wire (billing/money.py
does the formatting; this field is how every serializer uses it)."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from billing.money import MoneyFormatError, micros_to_usd, usd_to_micros


@extend_schema_field({"type": "string", "pattern": r"^\d{1,5}(\.\d{1,4})?$", "example": "0.0500"})
class UsdField(serializers.Field):
    """A 4-decimal USD string on the wire, integer micros inside: the source attribute (output)
    and the validated value (input) are micros, so name them ``*_micros``. JSON numbers are
    refused (no floats)."""

    def to_internal_value(self, data):
        try:
            return usd_to_micros(data)
        except MoneyFormatError as error:
            raise serializers.ValidationError(str(error)) from None

    def to_representation(self, value):
        return micros_to_usd(value)


class BalanceOutput(serializers.Serializer):
    """GET /v1/balance, from {"tenant_id", "available_micros", "held_micros", "plan"}. The tenant
    id is the key's own (what GET /v1/tenants/{id}/usage needs, for a client holding only a key)."""

    tenant_id = serializers.UUIDField()
    available_usd = UsdField(source="available_micros")
    held_usd = UsdField(source="held_micros")
    currency = serializers.SerializerMethodField()
    plan = serializers.DictField()

    def get_currency(self, _) -> str:
        return "USD"
