"""Tenant, plan and API key services: wallets and plan history are written with the tenant,
and a key's plaintext is never stored."""

import hashlib
import hmac
from datetime import timedelta

import pytest
from django.contrib.auth.models import User
from django.utils import timezone

from billing.models import Account, Wallet
from dpp.errors import ValidationProblem
from tenants import keys
from tenants.models import ApiKey, Plan, PlanAssignment, Tenant
from tenants.selectors import api_key_get_active
from tenants.services import (
    PlanNotFound,
    api_key_issue,
    api_key_revoke,
    api_key_touch,
    tenant_assign_plan,
    tenant_create,
    tenant_set_status,
)

pytestmark = pytest.mark.django_db


def history(tenant) -> list[tuple[str | None, str]]:
    return list(PlanAssignment.objects.filter(tenant=tenant).values_list("previous_plan__code", "plan__code"))


class TestTenantCreate:
    def test_writes_the_first_plan_assignment_and_an_empty_wallet(self):
        operator = User.objects.create_user("ops")

        tenant = tenant_create(name="  Acme  ", plan_code="premium", actor=operator)

        assert tenant.name == "Acme" and tenant.status == Tenant.Status.ACTIVE
        assert history(tenant) == [(None, "premium")]
        assert PlanAssignment.objects.get(tenant=tenant).assigned_by == operator
        wallet = Wallet.objects.get(tenant=tenant)
        assert (wallet.available_micros, wallet.held_micros) == (0, 0)
        assert set(Account.objects.filter(tenant=tenant).values_list("kind", flat=True)) == {"AVAILABLE", "HELD"}

    def test_refuses_a_blank_name_and_creates_nothing(self):
        with pytest.raises(ValidationProblem):
            tenant_create(name="   ")

        assert not Tenant.objects.exists()

    def test_refuses_an_unknown_plan_and_creates_nothing(self):
        with pytest.raises(PlanNotFound):
            tenant_create(name="Acme", plan_code="gold")

        assert not Tenant.objects.exists()


class TestTenantAssignPlan:
    def test_records_each_change_with_its_predecessor_actor_and_reason(self):
        operator = User.objects.create_user("ops")
        tenant = tenant_create(name="Acme", plan_code="basic")

        updated = tenant_assign_plan(tenant=tenant, plan_code="premium", actor=operator, reason="upgrade")

        assert updated.plan.code == "premium"
        assert Tenant.objects.get(pk=tenant.pk).plan.code == "premium"
        assert history(tenant) == [(None, "basic"), ("basic", "premium")]
        latest = PlanAssignment.objects.filter(tenant=tenant).last()
        assert (latest.assigned_by, latest.reason) == (operator, "upgrade")

    def test_assigning_the_current_plan_writes_nothing(self):
        tenant = tenant_create(name="Acme", plan_code="basic")

        tenant_assign_plan(tenant=tenant, plan_code="basic")

        assert history(tenant) == [(None, "basic")]

    def test_refuses_an_unknown_plan(self, tenant):
        with pytest.raises(PlanNotFound):
            tenant_assign_plan(tenant=tenant, plan_code="gold")

        assert Tenant.objects.get(pk=tenant.pk).plan == Plan.objects.get(code="unlimited")


class TestTenantSetStatus:
    def test_a_suspended_tenant_keys_stop_working_until_it_is_activated(self, tenant, api_key):
        tenant_set_status(tenant=tenant, status=Tenant.Status.SUSPENDED)
        assert api_key_get_active(raw_key=api_key) is None

        tenant_set_status(tenant=tenant, status=Tenant.Status.ACTIVE)
        assert api_key_get_active(raw_key=api_key).tenant == tenant

    def test_refuses_an_unknown_status(self, tenant):
        with pytest.raises(ValidationProblem):
            tenant_set_status(tenant=tenant, status="DELETED")


class TestApiKeyIssue:
    def test_stores_only_the_peppered_hash_and_a_display_prefix(self, tenant, settings):
        issued = api_key_issue(tenant=tenant, label="ci")

        row = ApiKey.objects.get(pk=issued.api_key.pk)
        expected_hash = hmac.new(settings.DPP_KEY_PEPPER.encode(), issued.plaintext.encode(), hashlib.sha256).hexdigest()
        assert row.key_hash == expected_hash
        assert row.prefix == issued.plaintext[:13] == f"dpp_live_{issued.plaintext[9:13]}"
        stored = [str(getattr(row, field.attname)) for field in ApiKey._meta.concrete_fields]
        assert not any(issued.plaintext in value or issued.plaintext[13:] in value for value in stored)

    def test_returns_a_key_that_parses_and_authenticates(self, tenant):
        issued = api_key_issue(tenant=tenant)

        assert keys.parse(issued.plaintext).raw == issued.plaintext
        assert api_key_get_active(raw_key=issued.plaintext) == issued.api_key

    def test_a_different_pepper_finds_no_key(self, tenant, settings):
        issued = api_key_issue(tenant=tenant)

        settings.DPP_KEY_PEPPER = "another-pepper"

        assert api_key_get_active(raw_key=issued.plaintext) is None


class TestApiKeyRevoke:
    def test_is_idempotent_and_keeps_the_first_revocation_time(self, tenant):
        issued = api_key_issue(tenant=tenant)
        first_at = timezone.now() - timedelta(hours=1)

        assert api_key_revoke(api_key=issued.api_key, now=first_at) is True
        assert api_key_revoke(api_key=issued.api_key) is False

        assert ApiKey.objects.get(pk=issued.api_key.pk).revoked_at == first_at
        assert api_key_get_active(raw_key=issued.plaintext) is None


class TestApiKeyTouch:
    def test_writes_at_most_once_per_debounce_window(self, tenant, settings):
        settings.DPP_LAST_USED_DEBOUNCE_SECONDS = 60
        api_key = api_key_issue(tenant=tenant).api_key
        start = timezone.now()

        assert api_key_touch(api_key=api_key, now=start) is True
        assert api_key_touch(api_key=api_key, now=start + timedelta(seconds=59)) is False
        stale_copy = ApiKey.objects.get(pk=api_key.pk)
        stale_copy.last_used_at = None  # another process that has not seen the write
        assert api_key_touch(api_key=stale_copy, now=start + timedelta(seconds=30)) is False
        assert api_key_touch(api_key=api_key, now=start + timedelta(seconds=61)) is True

        assert ApiKey.objects.get(pk=api_key.pk).last_used_at == start + timedelta(seconds=61)
