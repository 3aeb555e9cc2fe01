"""CORS from an allowlist, structured JSON logs with redaction, and the OpenAPI schema."""

import json
import logging

import pytest
from django.test import override_settings

from dpp.context import bound_context
from dpp.logging import ContextFilter, JsonFormatter


class TestCors:
    @override_settings(CORS_ALLOWED_ORIGINS=["https://app.example.com"])
    def test_an_allowed_origin_is_echoed_never_a_wildcard_nor_credentials(self, client):
        response = client.options("/health", HTTP_ORIGIN="https://app.example.com",
                                  HTTP_ACCESS_CONTROL_REQUEST_METHOD="GET")
        assert response["Access-Control-Allow-Origin"] == "https://app.example.com"
        assert "Access-Control-Allow-Credentials" not in response

    @override_settings(CORS_ALLOWED_ORIGINS=["https://app.example.com"])
    def test_a_foreign_origin_gets_nothing(self, client):
        response = client.get("/health", HTTP_ORIGIN="https://evil.example.net")
        assert "Access-Control-Allow-Origin" not in response


class TestJsonLogs:
    def record(self, message: str) -> dict:
        record = logging.makeLogRecord({"name": "dpp.test", "levelname": "INFO", "levelno": 20, "msg": message})
        ContextFilter().filter(record)
        return json.loads(JsonFormatter().format(record))

    def test_a_line_is_one_json_object_with_the_bound_ids(self):
        with bound_context(request_id="req-1", trace_id="trace-1", tenant_id="tenant-1", run_id="run-1"):
            line = self.record("hello")
        assert line["message"] == "hello" and line["level"] == "INFO"
        assert (line["request_id"], line["trace_id"], line["tenant_id"], line["run_id"]) == (
            "req-1", "trace-1", "tenant-1", "run-1")

    def test_api_keys_are_redacted(self):
        from tenants import keys

        key = keys.generate()
        line = self.record(f"client sent {key} in a header")
        assert key not in json.dumps(line) and "dpp_live_[REDACTED]" in line["message"]


@pytest.mark.django_db
class TestOpenApi:
    def test_the_schema_renders_with_every_run_endpoint_and_no_warning(self, client, capsys):
        response = client.get("/api/schema/", HTTP_ACCEPT="application/json")
        assert "Warning" not in capsys.readouterr().err
        assert response.status_code == 200
        schema = json.loads(response.content)
        assert schema["openapi"].startswith("3.")
        assert {"/v1/runs", "/v1/runs/{run_id}", "/v1/balance", "/v1/packs",
                "/v1/tenants/{tenant_id}/usage"} <= set(schema["paths"])
        components = schema["components"]
        assert {"RunCreateInputRequest", "RunOutput", "RunCreatedOutput"} <= set(components["schemas"])
        assert components["securitySchemes"]["ApiKey"]["scheme"] == "bearer"

    def test_the_docs_page_renders(self, client):
        assert client.get("/api/docs/").status_code == 200
