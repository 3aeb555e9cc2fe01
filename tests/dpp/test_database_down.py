"""PostgreSQL down: every endpoint that needs it answers 503 service-unavailable with Retry-After,
logged at WARNING (an outage of a dependency, not a bug), never 500 internal-error.

The outage is real: the connection is pointed at a port where nothing listens, so psycopg itself
fails to connect."""

from __future__ import annotations

import logging

import pytest

from tests.database import postgres_unreachable
from tests.runs.helpers import post_run

pytestmark = pytest.mark.django_db(transaction=True)

PROBLEM = "application/problem+json"


def assert_database_503(response, caplog) -> None:
    assert response.status_code == 503, response.content[:500]
    assert response["Content-Type"] == PROBLEM
    assert response["Retry-After"] == "5"
    body = response.json()
    assert body["type"] == "/problems/service-unavailable"
    assert "127.0.0.1" not in body["detail"] and "port" not in body["detail"].lower()
    records = [r for r in caplog.records if r.getMessage().startswith("database unavailable")]
    assert records and all(r.levelno == logging.WARNING for r in records)
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


class TestPostgresDown:
    @pytest.mark.parametrize("path", ["/v1/balance", "/v1/runs", "/v1/packs"])
    def test_an_authenticated_read_answers_503_with_retry_after(self, auth_client, caplog, path):
        with postgres_unreachable(), caplog.at_level(logging.WARNING):
            response = auth_client.get(path)
        assert_database_503(response, caplog)

    def test_a_submission_answers_503_with_retry_after(self, auth_client, caplog):
        with postgres_unreachable(), caplog.at_level(logging.WARNING):
            response = post_run(auth_client)
        assert_database_503(response, caplog)

    @pytest.mark.urls("tests.dpp.urls_for_tests")
    def test_a_plain_django_view_answers_503_too(self, client, caplog):
        with postgres_unreachable(), caplog.at_level(logging.WARNING):
            response = client.get("/plain-db")
        assert_database_503(response, caplog)

    def test_the_api_answers_again_once_postgres_is_back(self, auth_client):
        with postgres_unreachable():
            assert auth_client.get("/v1/balance").status_code == 503
        assert auth_client.get("/v1/balance").status_code == 200
