"""The events DPP sends, documented as OpenAPI 3.1 webhooks (SPECTACULAR_SETTINGS["WEBHOOKS"])."""

from __future__ import annotations

from drf_spectacular.utils import OpenApiWebhook, extend_schema
from rest_framework import serializers

_SIGNATURE_HELP = (
    "Standard Webhooks v1. Headers: `webhook-id` (the event id, the same on every attempt), "
    "`webhook-timestamp` (unix seconds of this attempt), `webhook-signature` (`v1,<base64 HMAC-SHA256 of "
    "\"{webhook-id}.{webhook-timestamp}.{body}\">` keyed by the base64-decoded part of the `whsec_` secret; two "
    "space-separated entries during a secret rotation). Verify against the raw body bytes, refuse timestamps "
    "more than 5 minutes away, and answer 2xx quickly. Anything else is retried after 5 s, 5 min, 30 min, 2 h, "
    "5 h, 10 h, 10 h (Retry-After honoured); 410 disables a registered endpoint; redirects are not followed."
)


class RunEventData(serializers.Serializer):
    run = serializers.DictField(help_text="The run as GET /v1/runs/{id} shows it, without result.presigned_url.")
    version = serializers.IntegerField(help_text="The run's version: drop an event older than one already seen.")


class RunEventEnvelope(serializers.Serializer):
    id = serializers.CharField(help_text="evt_...; equals the webhook-id header")
    type = serializers.ChoiceField(choices=["run.completed", "run.failed", "run.canceled", "run.started"])
    timestamp = serializers.DateTimeField(help_text="When the event was recorded (with the transition).")
    data = RunEventData()


class TestEventData(serializers.Serializer):
    endpoint_id = serializers.UUIDField()
    message = serializers.CharField()


class TestEventEnvelope(serializers.Serializer):
    id = serializers.CharField()
    type = serializers.ChoiceField(choices=["webhook.test"])
    timestamp = serializers.DateTimeField()
    data = TestEventData()



def _webhook(name: str, summary: str, envelope) -> OpenApiWebhook:
    return OpenApiWebhook(name=name, decorator=extend_schema(
        summary=summary, description=_SIGNATURE_HELP, request={"application/json": envelope},
        responses={200: None},
    ))


run_completed = _webhook("run.completed", "A run completed (settled at its actual cost)", RunEventEnvelope)
run_failed = _webhook("run.failed", "A run failed (minimum fee or refund)", RunEventEnvelope)
run_canceled = _webhook("run.canceled", "A run was canceled", RunEventEnvelope)
run_started = _webhook("run.started", "A worker started the run (opt-in)", RunEventEnvelope)
webhook_test = _webhook("webhook.test", "POST /v1/webhook_endpoints/{id}/test", TestEventEnvelope)
