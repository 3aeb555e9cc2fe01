"""Shapes of the billing API."""

from __future__ import annotations

from rest_framework import serializers


class BalanceOutput(serializers.Serializer):
    available_usd = serializers.CharField()
    held_usd = serializers.CharField()
    currency = serializers.CharField()
    plan = serializers.DictField()
