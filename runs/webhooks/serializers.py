"""Input and output shapes of the webhook API (validation and shaping only)."""

from __future__ import annotations

from rest_framework import serializers

from dpp.serializers import StrictFieldsMixin
from runs.webhooks.models import DEFAULT_EVENT_TYPES, SUBSCRIBABLE_EVENT_TYPES


class WebhookEndpointCreateInput(StrictFieldsMixin, serializers.Serializer):
    url = serializers.CharField(max_length=2048)
    event_types = serializers.ListField(child=serializers.ChoiceField(choices=SUBSCRIBABLE_EVENT_TYPES),
                                        required=False, default=list, max_length=len(SUBSCRIBABLE_EVENT_TYPES))
    description = serializers.CharField(max_length=500, required=False, default="", allow_blank=True)


class WebhookEndpointUpdateInput(WebhookEndpointCreateInput):
    url = serializers.CharField(max_length=2048, required=False)
    event_types = serializers.ListField(child=serializers.ChoiceField(choices=SUBSCRIBABLE_EVENT_TYPES),
                                        required=False, max_length=len(SUBSCRIBABLE_EVENT_TYPES))
    description = serializers.CharField(max_length=500, required=False, allow_blank=True)
    enabled = serializers.BooleanField(required=False)


class WebhookEndpointOutput(serializers.Serializer):
    id = serializers.UUIDField()
    url = serializers.CharField()
    description = serializers.CharField()
    event_types = serializers.ListField(child=serializers.CharField())
    enabled = serializers.BooleanField()
    disabled_reason = serializers.CharField()
    previous_secret_expires_at = serializers.DateTimeField(allow_null=True)
    created_at = serializers.DateTimeField()
    updated_at = serializers.DateTimeField()


class WebhookEndpointCreatedOutput(WebhookEndpointOutput):
    secret = serializers.CharField(help_text="whsec_...; shown once")


class WebhookSecretOutput(serializers.Serializer):
    key = serializers.CharField(help_text="whsec_...")


class WebhookDeliveryOutput(serializers.Serializer):
    id = serializers.UUIDField()
    event_id = serializers.CharField()
    event_type = serializers.CharField(source="event.type")
    endpoint_id = serializers.UUIDField(allow_null=True)
    status = serializers.SerializerMethodField()
    attempts = serializers.IntegerField(source="attempts_count")
    next_attempt_at = serializers.DateTimeField(allow_null=True)
    last_status_code = serializers.IntegerField(allow_null=True)
    last_error = serializers.CharField()
    created_at = serializers.DateTimeField()
    finished_at = serializers.DateTimeField(allow_null=True)

    def get_status(self, delivery) -> str:
        return delivery.status.lower()


class WebhookDeliveryListQuery(serializers.Serializer):
    status = serializers.ChoiceField(choices=["pending", "succeeded", "failed", "dead"], required=False)


class RunWebhookInput(StrictFieldsMixin, serializers.Serializer):
    """The ``webhook`` object of POST /v1/runs (the runs serializer nests it); ``events``
    defaults to the three terminal events."""

    url = serializers.CharField(max_length=2048)
    events = serializers.ListField(child=serializers.ChoiceField(choices=SUBSCRIBABLE_EVENT_TYPES), required=False,
                                   min_length=1, max_length=len(SUBSCRIBABLE_EVENT_TYPES))

    def validate(self, attrs):
        attrs["events"] = [str(item) for item in dict.fromkeys(attrs.get("events") or DEFAULT_EVENT_TYPES)]
        return attrs
