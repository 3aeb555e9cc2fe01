"""The problem responses of the OpenAPI schema, from the catalogue (dpp/errors.py).

``ProblemAutoSchema`` adds to every operation of a view one ``application/problem+json``
response per status it can answer, describing the slugs of that status: those every tenant
endpoint can answer (``COMMON_PROBLEMS``, and ``BODY_PROBLEMS`` for methods with a body) and
those the view names in ``problem_slugs`` for each method.
"""

from __future__ import annotations

from collections import defaultdict

from drf_spectacular.openapi import AutoSchema
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from dpp.errors import PROBLEM_TYPES
from dpp.problems import PROBLEM_CONTENT_TYPE

COMMON_PROBLEMS = ("unauthorized", "method-not-allowed", "not-acceptable", "rate-limit-exceeded", "internal-error", "service-unavailable")
BODY_PROBLEMS = ("malformed-request", "unsupported-media-type", "payload-too-large", "validation-error")


@extend_schema_field({"type": "string", "format": "uri-reference",
                     "enum": [f"/problems/{slug}" for slug in PROBLEM_TYPES]})
class ProblemTypeField(serializers.CharField):
    """``/problems/<slug>``, one of the catalogue's slugs (inline, not an extracted enum)."""


class ProblemOutput(serializers.Serializer):
    """RFC 9457 problem details; ``type`` is ``/problems/<slug>`` (a page documents each slug)."""

    type = ProblemTypeField()
    title = serializers.CharField()
    status = serializers.IntegerField()
    detail = serializers.CharField()
    instance = serializers.CharField(allow_null=True)
    request_id = serializers.CharField(allow_null=True)


class ProblemAutoSchema(AutoSchema):
    def problem_slugs(self) -> list[str]:
        slugs = list(COMMON_PROBLEMS)
        if self.method in ("POST", "PUT", "PATCH"):
            slugs += BODY_PROBLEMS
        slugs += getattr(self.view, "problem_slugs", {}).get(self.method.lower(), ())
        return slugs

    def _get_response_bodies(self, direction="response"):
        responses = super()._get_response_bodies(direction)
        by_status: dict[int, list[str]] = defaultdict(list)
        for slug in dict.fromkeys(self.problem_slugs()):
            by_status[PROBLEM_TYPES[slug].status].append(slug)
        for status, slugs in sorted(by_status.items()):
            response = self._get_response_for_code(ProblemOutput, str(status), [PROBLEM_CONTENT_TYPE], direction)
            response["description"] = "; ".join(
                f"`/problems/{slug}`: {PROBLEM_TYPES[slug].title}" for slug in slugs
            )
            responses.setdefault(str(status), response)
        return responses
