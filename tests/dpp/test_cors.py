"""CORS from an allowlist: an allowed origin is echoed (never `*`), credentials are never
allowed, a foreign origin gets no CORS header at all."""

import pytest
from django.test import override_settings

ALLOWED = "https://app.example.com"
pytestmark = pytest.mark.usefixtures("allowlist")


@pytest.fixture
def allowlist():
    with override_settings(CORS_ALLOWED_ORIGINS=[ALLOWED]):
        yield


def preflight(client, origin: str, path: str = "/v1/runs"):
    return client.options(path, HTTP_ORIGIN=origin, HTTP_ACCESS_CONTROL_REQUEST_METHOD="POST",
                          HTTP_ACCESS_CONTROL_REQUEST_HEADERS="authorization, content-type, idempotency-key")


class TestAnAllowedOrigin:
    def test_gets_its_origin_echoed_on_a_request(self, client):
        response = client.get("/health", HTTP_ORIGIN=ALLOWED)

        assert response["Access-Control-Allow-Origin"] == ALLOWED
        assert response.get("Access-Control-Allow-Credentials") != "true"
        assert "X-Request-ID" in response["Access-Control-Expose-Headers"]

    def test_gets_a_preflight_answer_without_wildcard_or_credentials(self, client):
        response = preflight(client, ALLOWED)

        assert response.status_code == 200
        assert response["Access-Control-Allow-Origin"] == ALLOWED != "*"
        assert "Access-Control-Allow-Credentials" not in response
        allowed_headers = response["Access-Control-Allow-Headers"].lower()
        assert {"authorization", "content-type", "idempotency-key"} <= {h.strip() for h in allowed_headers.split(",")}


class TestAForeignOrigin:
    @pytest.mark.parametrize("origin", ["https://evil.example.net", "https://app.example.com.evil.net", "null"])
    def test_gets_no_cors_header(self, client, origin):
        for response in (client.get("/health", HTTP_ORIGIN=origin), preflight(client, origin)):
            assert "Access-Control-Allow-Origin" not in response
            assert "Access-Control-Allow-Credentials" not in response
