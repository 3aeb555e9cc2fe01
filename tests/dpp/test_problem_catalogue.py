"""One problem catalogue (dpp/errors.py): every slug the code can answer is declared there once,
has its page, and appears in the OpenAPI schema; DomainError subclasses take status and title
from it; a LedgerError is a 500 logged at ERROR with its traceback."""

from __future__ import annotations

import ast
import json
import logging
from pathlib import Path

import pytest
from django.test import Client
from django.urls import path
from rest_framework.exceptions import APIException

from billing.services import LedgerError
from dpp.errors import PROBLEM_TYPES, DomainError
from runs.services import AuditResolutionRefused, IdempotencyKeyReused
from tests.dpp.urls_for_tests import OpenAPIView

REPO = Path(__file__).resolve().parents[2]
APPS = ("dpp", "tenants", "billing", "runs")


def slugs_in_code() -> dict[str, set[str]]:
    """Every slug literal the application code names: ``slug = "..."`` in an exception class
    (raised by views and services) and ``slug="..."`` passed to ``problem_response``."""
    found: dict[str, set[str]] = {"classes": set(), "calls": set()}
    for app in APPS:
        for source in (REPO / app).rglob("*.py"):
            for node in ast.walk(ast.parse(source.read_text())):
                if isinstance(node, ast.ClassDef):
                    for statement in node.body:
                        if (isinstance(statement, ast.Assign) and isinstance(statement.value, ast.Constant)
                                and any(getattr(t, "id", None) == "slug" for t in statement.targets)):
                            found["classes"].add(statement.value.value)
                elif isinstance(node, ast.Call):
                    for keyword in node.keywords:
                        if keyword.arg == "slug" and isinstance(keyword.value, ast.Constant):
                            found["calls"].add(keyword.value.value)
    return found


SLUGS = slugs_in_code()


@pytest.fixture(scope="module")
def schema(django_db_blocker):
    with django_db_blocker.unblock():
        return json.loads(Client().get("/api/schema/", HTTP_ACCEPT="application/json").content)


def operation_problem_slugs(schema) -> set[str]:
    slugs = set()
    for operations in schema["paths"].values():
        for operation in operations.values():
            for response in operation.get("responses", {}).values():
                if "application/problem+json" in response.get("content", {}):
                    slugs.update(part.split("`")[0] for part in response["description"].split("`/problems/")[1:])
    return slugs


class TestTheCatalogue:
    def test_the_scan_finds_slugs_of_classes_and_of_calls(self):
        assert {"idempotency-key-reused", "audit-resolution-refused", "insufficient-balance"} <= SLUGS["classes"]
        assert {"payload-too-large", "method-not-allowed", "internal-error"} <= SLUGS["calls"]

    def test_every_slug_the_code_names_is_declared_in_the_catalogue(self):
        assert SLUGS["classes"] | SLUGS["calls"] <= set(PROBLEM_TYPES)

    def test_every_slug_the_code_names_has_a_page(self, client):
        named = sorted(SLUGS["classes"] | SLUGS["calls"])

        assert {slug: client.get(f"/problems/{slug}").status_code for slug in named} == dict.fromkeys(named, 200)

    def test_every_slug_api_code_raises_is_a_response_of_an_operation(self, schema):
        raised_by_the_api = {slug for slug in SLUGS["classes"] if PROBLEM_TYPES[slug].api}

        assert raised_by_the_api - operation_problem_slugs(schema) == set()

    def test_every_catalogued_slug_is_a_documented_problem_type_in_the_schema(self, schema):
        documented = schema["components"]["schemas"]["ProblemOutput"]["properties"]["type"]
        for reference in documented.get("allOf", []):  # drf-spectacular extracts enums to components
            documented = schema["components"]["schemas"][reference["$ref"].rpartition("/")[2]]

        assert {f"/problems/{slug}" for slug in PROBLEM_TYPES} <= set(documented.get("enum", []))

    def test_a_subclass_takes_status_and_title_from_its_slug(self):
        assert (IdempotencyKeyReused.status, IdempotencyKeyReused.title) == (409, "Idempotency-Key reused")
        assert (AuditResolutionRefused.status, AuditResolutionRefused.slug) == (409, "audit-resolution-refused")

    def test_a_subclass_naming_an_undeclared_slug_fails_when_it_is_defined(self):
        with pytest.raises(KeyError, match="no-such-slug"):
            type("Broken", (DomainError,), {"slug": "no-such-slug"})

    def test_only_one_slug_is_the_generic_one_of_each_status(self):
        generic = [problem.status for problem in PROBLEM_TYPES.values() if problem.generic]

        assert len(generic) == len(set(generic))


class RaisesLedgerError(OpenAPIView):
    def get(self, request):
        raise LedgerError("journal would not balance")


class RaisesConflict(OpenAPIView):
    def get(self, request):
        error = APIException("conflict")
        error.status_code = 409
        raise error


urlpatterns = [path("ledger-error", RaisesLedgerError.as_view()), path("conflict", RaisesConflict.as_view())]


@pytest.mark.urls(__name__)
class TestAnswers:
    def test_a_ledger_error_is_a_500_logged_at_error_with_its_traceback(self, client, caplog):
        with caplog.at_level(logging.ERROR):
            response = client.get("/ledger-error")

        assert response.status_code == 500 and response.json()["type"] == "/problems/internal-error"
        logged = [record for record in caplog.records if record.levelno >= logging.ERROR]
        assert logged and logged[0].exc_info and logged[0].exc_info[0] is LedgerError

    def test_a_409_without_a_slug_of_its_own_is_a_conflict_not_a_reused_key(self, client):
        response = client.get("/conflict")

        assert response.status_code == 409 and response.json()["type"] == "/problems/conflict"
