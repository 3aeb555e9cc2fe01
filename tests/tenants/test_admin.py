"""Operators manage tenants, plans and keys in admin; keys are shown once, history is kept."""

import pytest
from django.contrib.auth.models import User

from tenants.models import ApiKey, Plan, PlanAssignment, Tenant

pytestmark = pytest.mark.django_db


@pytest.fixture
def admin(client):
    client.force_login(User.objects.create_superuser("root", "root@example.com", "pw"))
    return client


class TestApiKeyAdmin:
    def test_issuing_shows_the_key_once_and_stores_only_its_hash(self, admin, tenant):
        response = admin.post("/admin/tenants/apikey/add/", {"tenant": tenant.pk, "label": "from admin"}, follow=True)
        page = response.content.decode()
        key = ApiKey.objects.get(label="from admin")
        assert "dpp_live_" in page and key.prefix in page
        shown = page[page.index("dpp_live_"):][:50]
        assert key.key_hash not in page and shown not in key.key_hash
        listing = admin.get("/admin/tenants/apikey/").content.decode()
        assert shown.split("<")[0] not in listing  # not shown again

    def test_revoke_action(self, admin, tenant, api_key):
        key = ApiKey.objects.get(tenant=tenant)
        admin.post("/admin/tenants/apikey/", {"action": "revoke", "_selected_action": [key.pk]})
        assert ApiKey.objects.get(pk=key.pk).revoked_at is not None


class TestTenantAdmin:
    def test_a_plan_change_writes_history(self, admin, tenant):
        premium = Plan.objects.get(code="premium")
        response = admin.post(f"/admin/tenants/tenant/{tenant.pk}/change/", {
            "name": tenant.name, "status": "ACTIVE", "plan": premium.pk,
            "plan_assignments-TOTAL_FORMS": "0", "plan_assignments-INITIAL_FORMS": "0",
        })
        assert response.status_code == 302, response.content[:2000]
        assert Tenant.objects.get(pk=tenant.pk).plan == premium
        assert PlanAssignment.objects.filter(tenant=tenant, plan=premium, previous_plan__code="unlimited").exists()

    def test_a_tenant_added_in_admin_gets_its_wallet(self, admin):
        basic = Plan.objects.get(code="basic")
        admin.post("/admin/tenants/tenant/add/", {
            "name": "via-admin", "status": "ACTIVE", "plan": basic.pk,
            "plan_assignments-TOTAL_FORMS": "0", "plan_assignments-INITIAL_FORMS": "0",
        })
        tenant = Tenant.objects.get(name="via-admin")
        assert tenant.wallet.available_micros == 0
