"""Every response carries X-Request-ID: the client's when it is sane, else a generated one, and
a problem body names the same id."""

import re

import pytest
from django.test import Client

GENERATED = re.compile(r"^[0-9a-f]{32}$")


class TestRequestId:
    @pytest.mark.parametrize("sane", ["agent-42.req:7", "a", "A" * 128, "0af7651916cd43dd8448eb211c80319c"])
    def test_a_sane_client_id_is_echoed(self, client, sane):
        assert client.get("/health", HTTP_X_REQUEST_ID=sane)["X-Request-ID"] == sane

    @pytest.mark.parametrize("insane", [
        pytest.param("a" * 129, id="too long"),
        pytest.param("has space", id="space"),
        pytest.param("new\nline", id="newline"),
        pytest.param("semi;colon", id="semicolon"),
        pytest.param("<script>", id="markup"),
        pytest.param("", id="empty"),
    ])
    def test_an_insane_one_is_replaced_by_a_generated_one(self, client, insane):
        echoed = client.get("/health", HTTP_X_REQUEST_ID=insane)["X-Request-ID"]

        assert echoed != insane and GENERATED.match(echoed)

    def test_each_request_without_one_gets_a_fresh_one(self, client):
        ids = {client.get("/health")["X-Request-ID"] for _ in range(5)}

        assert len(ids) == 5 and all(GENERATED.match(i) for i in ids)


@pytest.mark.urls("tests.dpp.urls_for_tests")
class TestEveryResponseCarriesIt:
    def test_a_200(self, client):
        assert client.get("/plain-ok", HTTP_X_REQUEST_ID="ok-1")["X-Request-ID"] == "ok-1"

    @pytest.mark.parametrize(("method", "path", "status"), [
        ("get", "/nowhere", 404),
        ("post", "/health", 405),
        ("get", "/echo", 500),
        ("get", "/plain-boom", 500),
        ("get", "/domain-error", 409),
    ])
    def test_an_error_names_it_in_the_header_and_the_body(self, method, path, status):
        client = Client(raise_request_exception=False)

        response = getattr(client, method)(path, HTTP_X_REQUEST_ID="trace-me-1")

        assert response.status_code == status
        assert response["X-Request-ID"] == "trace-me-1" and response.json()["request_id"] == "trace-me-1"

    def test_a_generated_one_is_in_the_body_too(self):
        response = Client(raise_request_exception=False).get("/plain-boom")

        assert GENERATED.match(response["X-Request-ID"])
        assert response.json()["request_id"] == response["X-Request-ID"]
