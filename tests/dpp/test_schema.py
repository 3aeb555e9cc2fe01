"""The OpenAPI 3 schema renders without a single drf-spectacular warning, and the docs page."""

import json
from io import StringIO

import pytest
from django.core.management import call_command

pytestmark = pytest.mark.django_db


class TestOpenApiSchema:
    def test_generates_and_validates_with_warnings_as_errors(self, tmp_path):
        output = tmp_path / "schema.json"

        call_command("spectacular", "--fail-on-warn", "--validate", "--format", "openapi-json",
                     "--file", str(output), stderr=StringIO())

        schema = json.loads(output.read_text())
        assert schema["openapi"].startswith("3.")

    def test_is_served_at_api_schema(self, client):
        response = client.get("/api/schema/", HTTP_ACCEPT="application/json")

        assert response.status_code == 200
        schema = json.loads(response.content)
        assert schema["openapi"].startswith("3.")
        assert schema["components"]["securitySchemes"]["ApiKey"] == {
            "type": "http", "scheme": "bearer", "bearerFormat": "dpp_live_<32 base62>_<8 checksum>"}

    def test_describes_the_v1_endpoints_of_the_wire_contract(self, client):
        schema = json.loads(client.get("/api/schema/", HTTP_ACCEPT="application/json").content)

        assert {"/v1/runs", "/v1/runs/{run_id}", "/v1/balance", "/v1/packs",
                "/v1/tenants/{tenant_id}/usage"} <= set(schema["paths"])

    def test_the_docs_page_renders(self, client):
        response = client.get("/api/docs/")

        assert response.status_code == 200 and b"swagger" in response.content.lower()

    def test_documents_cancel_with_its_body_its_answer_and_its_problem_types(self, client):
        schema = json.loads(client.get("/api/schema/", HTTP_ACCEPT="application/json").content)

        operation = schema["paths"]["/v1/runs/{run_id}/cancel"]["post"]
        body = operation["requestBody"]["content"]["application/json"]["schema"]["$ref"].rsplit("/", 1)[-1]
        assert schema["components"]["schemas"][body]["properties"]["reason"]["maxLength"] == 200
        assert operation["responses"]["200"]["content"]["application/json"]["schema"]["$ref"].endswith("/RunOutput")
        assert "/problems/run-not-cancelable" in operation["responses"]["409"]["description"]
        assert "/problems/not-found" in operation["responses"]["404"]["description"]
        assert "CANCELED" in schema["components"]["schemas"]["StatusEnum"]["enum"]

    def test_declares_the_shapes_the_list_endpoints_really_answer(self, client, auth_client):
        """A generated client parses what the schema says: the run list is a cursor page and the
        pack list an object holding the packs, exactly as the views answer."""
        schema = json.loads(client.get("/api/schema/", HTTP_ACCEPT="application/json").content)
        components = schema["components"]["schemas"]

        def answer_properties(path: str) -> set[str]:
            ref = schema["paths"][path]["get"]["responses"]["200"]["content"]["application/json"]["schema"]["$ref"]
            return set(components[ref.rsplit("/", 1)[-1]]["properties"])

        assert answer_properties("/v1/runs") == set(auth_client.get("/v1/runs").json()) == {
            "next", "previous", "results"}
        assert answer_properties("/v1/packs") == set(auth_client.get("/v1/packs").json()) == {"packs"}
