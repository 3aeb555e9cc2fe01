"""Every error path answers RFC 9457 application/problem+json; no HTML error page anywhere."""

import logging

import pytest
from django.test import Client, override_settings

PROBLEM = "application/problem+json"


def assert_problem(response, status: int, slug: str, instance: str | None = None) -> dict:
    assert response.status_code == status, response.content[:500]
    assert response["Content-Type"] == PROBLEM
    body = response.json()
    assert set(body) >= {"type", "title", "status", "detail", "instance", "request_id"}
    assert body["type"] == f"/problems/{slug}"
    assert body["status"] == status
    assert body["title"] and body["detail"]
    assert body["request_id"] == response["X-Request-ID"]
    if instance is not None:
        assert body["instance"] == instance
    return body


class TestProblemsOnTheProjectRoutes:
    def test_an_unknown_url_is_a_404_problem(self, client):
        assert_problem(client.get("/v1/nowhere"), 404, "not-found", instance="/v1/nowhere")

    def test_a_wrong_method_on_health_is_a_405_problem(self, client):
        response = client.post("/health")

        assert_problem(response, 405, "method-not-allowed", instance="/health")
        assert response["Allow"] == "GET, HEAD"

    def test_a_body_over_the_limit_is_a_413_problem_before_anything_reads_it(self, client, settings):
        too_big = b"x" * (settings.DPP_MAX_BODY_BYTES + 1)

        body = assert_problem(client.post("/v1/anything", data=too_big, content_type="application/json"),
                              413, "payload-too-large")

        assert str(settings.DPP_MAX_BODY_BYTES) in body["detail"]
        assert_problem(client.post("/health", data=too_big, content_type="application/json"), 413, "payload-too-large")

    def test_a_known_problem_type_has_a_page(self, client):
        page = client.get("/problems/not-found")

        assert page.status_code == 200 and page["Content-Type"].startswith("text/html")
        assert b"Not found" in page.content and b"404" in page.content

    def test_every_problem_type_has_a_page(self, client):
        from dpp.problems import PROBLEM_TYPES

        assert {slug: client.get(f"/problems/{slug}").status_code for slug in PROBLEM_TYPES} == dict.fromkeys(
            PROBLEM_TYPES, 200)

    def test_an_unknown_problem_type_is_a_404_problem(self, client):
        assert_problem(client.get("/problems/no-such-problem"), 404, "not-found")

    def test_a_problem_page_answers_only_get(self, client):
        assert_problem(client.post("/problems/not-found"), 405, "method-not-allowed")


@pytest.mark.urls("tests.dpp.urls_for_tests")
class TestProblemsFromViews:
    def test_an_unexpected_error_in_an_api_view_is_a_500_problem_and_is_logged(self, caplog):
        client = Client(raise_request_exception=False)

        with caplog.at_level(logging.ERROR):
            response = client.get("/echo")

        body = assert_problem(response, 500, "internal-error", instance="/echo")
        assert "secret internals" not in response.content.decode()  # no internals leak
        logged = [r for r in caplog.records if r.levelno >= logging.ERROR and r.exc_info]
        assert logged and logged[0].request_id == body["request_id"]

    def test_an_unexpected_error_in_a_plain_view_is_a_500_problem(self):
        client = Client(raise_request_exception=False)

        response = client.get("/plain-boom")

        assert_problem(response, 500, "internal-error", instance="/plain-boom")
        assert b"unexpected in a plain view" not in response.content

    def test_malformed_json_is_a_400_malformed_request(self, client):
        assert_problem(client.post("/echo", data="{nope", content_type="application/json"), 400, "malformed-request")

    def test_a_wrong_content_type_is_a_415_problem(self, client):
        response = client.post("/echo", data="a=1", content_type="application/x-www-form-urlencoded")

        assert_problem(response, 415, "unsupported-media-type")

    def test_a_wrong_method_on_an_api_view_is_a_405_problem(self, client):
        response = client.post("/get-only", data={}, content_type="application/json")

        assert_problem(response, 405, "method-not-allowed")
        assert "GET" in response["Allow"]

    def test_a_domain_error_keeps_its_status_slug_headers_and_extras(self, client):
        response = client.get("/domain-error")

        body = assert_problem(response, 409, "idempotency-key-reused", instance="/domain-error")
        assert body["title"] == "Idempotency-Key reused" and body["detail"] == "Another body used this key."
        assert body["errors"] == {"body": "differs"}
        assert response["X-Example"] == "yes"

    def test_invalid_input_is_a_422_naming_the_field(self, client):
        response = client.post("/validates", data={"name": "too long"}, content_type="application/json")

        body = assert_problem(response, 422, "validation-error")
        assert body["detail"].startswith("name:") and "name" in body["errors"]

    def test_http404_in_an_api_view_is_a_404_problem(self, client):
        assert_problem(client.get("/http404"), 404, "not-found")

    def test_django_permission_denied_in_an_api_view_is_a_403_problem(self, client):
        assert_problem(client.get("/permission-denied"), 403, "forbidden")

    def test_the_body_limit_applies_to_api_views(self, client):
        with override_settings(DPP_MAX_BODY_BYTES=1024):
            response = client.post("/echo", data="x" * 4096, content_type="application/json")

        assert_problem(response, 413, "payload-too-large")

    def test_a_body_under_the_limit_is_served(self, client):
        response = client.post("/echo", data={"a": 1}, content_type="application/json")

        assert response.status_code == 200 and response.json() == {"received": {"a": 1}}
