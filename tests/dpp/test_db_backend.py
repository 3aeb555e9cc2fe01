"""dpp.db: Django's PostgreSQL backend, minus the health check of a connection that has just
served a request without error."""

from __future__ import annotations

import pytest
from django.core.signals import request_finished
from django.db import connection, connections

import dpp.db.base as backend

pytestmark = pytest.mark.django_db


@pytest.fixture
def checks(monkeypatch):
    """Counts the health checks (``is_usable``, the ``SELECT 1`` round trip) Django asks for."""
    calls = []
    connection.ensure_connection()
    connection.errors_occurred = False  # whatever an earlier test left behind
    monkeypatch.setattr(connection, "is_usable", lambda: calls.append("SELECT 1") or True)
    yield calls
    connection.errors_occurred = False


def _next_request_uses_the_connection() -> None:
    connection.health_check_done = False  # what Django's request_started receiver does
    connection.close_if_health_check_failed()


def test_the_settings_select_this_backend():
    assert isinstance(connections["default"], backend.DatabaseWrapper)
    assert connection.vendor == "postgresql"


def test_a_connection_that_just_ended_a_request_without_error_is_not_checked_again(checks):
    request_finished.send(sender=None)
    _next_request_uses_the_connection()
    assert checks == []


def test_an_idle_connection_is_checked_as_django_does(checks, monkeypatch):
    request_finished.send(sender=None)
    monkeypatch.setattr(backend, "HEALTH_CHECK_SKIP_SECONDS", 0)  # the window has passed
    _next_request_uses_the_connection()
    assert checks == ["SELECT 1"]


def test_a_connection_that_saw_an_error_is_checked(checks):
    connection.healthy_at = float("-inf")
    connection.errors_occurred = True  # e.g. the server closed it mid-request
    request_finished.send(sender=None)
    _next_request_uses_the_connection()
    assert checks == ["SELECT 1"]


def test_a_new_connection_is_not_taken_for_healthy(checks):
    request_finished.send(sender=None)
    connection.healthy_at = float("-inf")  # what close() does
    _next_request_uses_the_connection()
    assert checks == ["SELECT 1"]
