"""Every error path answers RFC 9457 application/problem+json; no HTML error page anywhere."""

import pytest
from django.test import Client, override_settings

PROBLEM = "application/problem+json"


def assert_problem(response, status, slug=None):
    assert response.status_code == status, response.content[:500]
    assert response["Content-Type"] == PROBLEM
    body = response.json()
    assert set(body) >= {"type", "title", "status", "detail", "instance", "request_id"}
    assert body["status"] == status
    assert body["request_id"] == response["X-Request-ID"]
    if slug:
        assert body["type"] == f"/problems/{slug}"
    return body


@pytest.mark.urls("tests.dpp.urls_for_tests")
class TestProblemDetails:
    def test_an_unknown_url_is_a_404_problem(self, client):
        assert_problem(client.get("/nowhere"), 404, "not-found")

    def test_a_wrong_method_on_a_plain_view_is_a_405_problem(self, client):
        response = client.post("/health")
        assert_problem(response, 405, "method-not-allowed")
        assert response["Allow"] == "GET, HEAD"

    def test_a_body_over_the_limit_is_a_413_problem(self, client):
        with override_settings(DPP_MAX_BODY_BYTES=1024):
            response = client.post("/boom", data="x" * 4096, content_type="application/json")
        assert_problem(response, 413, "payload-too-large")

    def test_malformed_json_is_a_400_problem(self, client):
        assert_problem(client.post("/boom", data="{nope", content_type="application/json"), 400, "malformed-request")

    def test_an_unsupported_media_type_is_a_415_problem(self, client):
        response = client.post("/boom", data="a=1", content_type="application/x-www-form-urlencoded")
        assert_problem(response, 415, "unsupported-media-type")

    def test_an_unexpected_error_in_an_api_view_is_a_500_problem(self):
        client = Client(raise_request_exception=False)
        body = assert_problem(client.get("/boom"), 500, "internal-error")
        assert "RuntimeError" not in body["detail"]  # no internals leak

    def test_an_unexpected_error_in_a_plain_view_is_a_500_problem(self):
        client = Client(raise_request_exception=False)
        assert_problem(client.get("/plain-boom"), 500, "internal-error")

    def test_a_domain_error_keeps_its_status_and_extras(self, client):
        body = assert_problem(client.get("/domain-boom"), 418)
        assert body["title"] == "I am a teapot" and body["errors"] == {"spout": "missing"}

    def test_problem_type_pages_exist_for_known_slugs_only(self, client):
        page = client.get("/problems/insufficient-balance")
        assert page.status_code == 200 and page["Content-Type"].startswith("text/html")
        assert b"Insufficient balance" in page.content
        assert_problem(client.get("/problems/no-such-problem"), 404, "not-found")

    def test_every_problem_slug_used_by_the_code_has_a_page(self, client):
        from dpp.problems import PROBLEM_TYPES

        for slug in PROBLEM_TYPES:
            assert client.get(f"/problems/{slug}").status_code == 200


class TestRequestId:
    def test_a_sane_client_request_id_is_echoed(self, client):
        response = client.get("/health", HTTP_X_REQUEST_ID="agent-42.req:7")
        assert response["X-Request-ID"] == "agent-42.req:7"

    @pytest.mark.parametrize("insane", ["a" * 129, "has space", "new\nline", "semi;colon", ""])
    def test_an_insane_one_is_replaced(self, client, insane):
        response = client.get("/health", HTTP_X_REQUEST_ID=insane)
        assert response["X-Request-ID"] != insane and len(response["X-Request-ID"]) == 32

    def test_errors_carry_it_in_the_body_too(self, client):
        response = client.get("/nowhere", HTTP_X_REQUEST_ID="trace-me-1")
        assert response.json()["request_id"] == "trace-me-1"
