"""A plan's allowed_pack_types fails closed: a list of registered pack types or ["*"], checked
by the admin, the model and the database; anything unreadable allows nothing."""

from __future__ import annotations

import pytest
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction

from runs.models import Run
from tenants.models import Plan
from tenants.pack_types import allowed_pack_types_validate
from tests.factories import TenantFactory
from tests.runs.helpers import ledger_snapshot, post_run

pytestmark = pytest.mark.django_db


def plan_with(packs) -> Plan:
    return Plan.objects.create(code=f"p{abs(hash(repr(packs))) % 10**8}", name="P", allowed_pack_types=packs,
                               post_runs_per_minute=10, get_requests_per_minute=10, max_concurrent_runs=5,
                               max_cost_per_run_micros=500_000)


def client_for(tenant):
    from rest_framework.test import APIClient

    from tenants.services import api_key_issue

    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {api_key_issue(tenant=tenant).plaintext}")
    return client


class TestAllowsPack:
    @pytest.mark.parametrize(("packs", "allowed"), [
        (["decision"], True),
        (["*"], True),
        ([], False),  # was: every pack
        (["other"], False),
        (["decisions"], False),
    ])
    def test_only_a_list_naming_the_pack_or_the_wildcard_allows_it(self, packs, allowed):
        assert Plan(allowed_pack_types=packs).allows_pack("decision") is allowed

    @pytest.mark.parametrize("value", ["decision-and-more", {"decision": True}, None, 1, [["decision"]]])
    def test_a_value_that_is_not_a_list_of_names_allows_nothing(self, value):
        # "decision-and-more" used to allow "decision" (a substring match).
        assert Plan(allowed_pack_types=value).allows_pack("decision") is False

    def test_an_empty_list_refuses_submissions_and_moves_no_money(self):
        tenant = TenantFactory(plan=plan_with([]), balance_micros=1_000_000)
        before = ledger_snapshot(tenant)
        response = post_run(client_for(tenant))
        assert response.status_code == 422
        assert response.json()["errors"] == {"pack_type": "not available on this plan"}
        assert ledger_snapshot(tenant) == before and not Run.objects.exists()

    def test_the_pack_list_shows_no_pack_for_an_empty_list_and_the_limits_say_so(self):
        client = client_for(TenantFactory(plan=plan_with([]), balance_micros=1_000_000))
        assert client.get("/v1/packs").json() == {"packs": []}
        assert client.get("/v1/balance").json()["plan"]["limits"]["allowed_pack_types"] == []


class TestValidation:
    @pytest.mark.parametrize("value", [["decision"], ["*"], []])
    def test_registered_names_the_wildcard_or_nothing_are_accepted(self, value):
        allowed_pack_types_validate(value)

    @pytest.mark.parametrize("value", ["decision", {"decision": 1}, None, [1], ["nope"], ["decision", "decision"],
                                       ["*", "decision"], [["decision"]]])
    def test_anything_else_is_refused(self, value):
        with pytest.raises(ValidationError):
            allowed_pack_types_validate(value)

    def test_the_model_refuses_an_unregistered_pack_on_full_clean(self):
        plan = Plan(code="x", name="X", allowed_pack_types=["nope"], post_runs_per_minute=1,
                    get_requests_per_minute=1, max_concurrent_runs=1, max_cost_per_run_micros=1)
        with pytest.raises(ValidationError) as error:
            plan.full_clean()
        assert "allowed_pack_types" in error.value.message_dict

    @pytest.mark.parametrize("value", ["decision", {"decision": 1}])
    def test_the_database_refuses_anything_but_a_list(self, value):
        with pytest.raises(IntegrityError), transaction.atomic():
            plan_with(value)

    def test_the_admin_refuses_an_object(self, admin_client):
        basic = Plan.objects.get(code="basic")
        page = admin_client.get(f"/admin/tenants/plan/{basic.pk}/change/")
        data = {name: value for name, value in page.context["adminform"].form.initial.items()
                if name in page.context["adminform"].form.fields}
        data.update(allowed_pack_types='{"decision": true}')
        response = admin_client.post(f"/admin/tenants/plan/{basic.pk}/change/", data)
        assert response.status_code == 200  # the form again, with the error
        assert "Give a JSON list of pack type names" in str(response.context["adminform"].form.errors)
        assert Plan.objects.get(pk=basic.pk).allowed_pack_types == ["decision"]


class TestMigration:
    def test_the_rewrite_makes_an_empty_list_explicit_and_an_unreadable_value_empty(self):
        from importlib import import_module

        from django.apps import apps

        rewrite = import_module("tenants.migrations.0004_plan_pack_types_issue15").rewrite
        empty = plan_with([])
        rewrite(apps, None)
        assert Plan.objects.get(pk=empty.pk).allowed_pack_types == ["*"]
        assert Plan.objects.get(code="basic").allowed_pack_types == ["decision"]
