"""Operators manage plans, tenants and keys in admin through the services: a key's plaintext is
shown once, plan changes keep their history, status changes and revocations are logged."""

import hashlib
import hmac
import re

import pytest
from django.contrib.admin.models import LogEntry
from django.contrib.auth.models import User

from tenants.models import ApiKey, Plan, PlanAssignment, Tenant
from tenants.services import api_key_issue, api_key_revoke

pytestmark = pytest.mark.django_db

FULL_KEY = re.compile(r"dpp_live_[0-9A-Za-z]{32}_[0-9A-Za-z]{8}")


@pytest.fixture
def superuser():
    return User.objects.create_superuser("root", "root@example.com", password=None)  # no hashing: fast


@pytest.fixture
def admin_client(client, superuser):
    client.force_login(superuser)
    return client


def messages_of(response) -> list[str]:
    return [str(message) for message in response.context["messages"]]


def tenant_change_form(tenant, **changes) -> dict:
    existing = PlanAssignment.objects.filter(tenant=tenant).count()
    data = {
        "name": tenant.name, "plan": tenant.plan_id, "plan_change_reason": "",
        "plan_assignments-TOTAL_FORMS": str(existing), "plan_assignments-INITIAL_FORMS": str(existing),
        "plan_assignments-MIN_NUM_FORMS": "0", "plan_assignments-MAX_NUM_FORMS": "0",
    }
    data.update(changes)
    return data


class TestApiKeyAdmin:
    def test_adding_a_key_shows_it_once_and_stores_only_its_hash(self, admin_client, tenant, settings):
        response = admin_client.post("/admin/tenants/apikey/add/", {"tenant": tenant.pk, "label": "from admin"})

        assert response.status_code == 200  # rendered on the answer itself, not after a redirect
        shown = FULL_KEY.findall(response.content.decode())
        assert len(shown) == 1
        plaintext = shown[0]
        assert "no-store" in response["Cache-Control"]
        assert all(plaintext not in morsel.value for morsel in response.cookies.values())  # not in the messages cookie
        assert not [m for m in messages_of(admin_client.get("/admin/tenants/apikey/")) if plaintext in m]
        row = ApiKey.objects.get(label="from admin")
        assert row.tenant == tenant and row.prefix == plaintext[:13]
        assert row.key_hash == hmac.new(settings.DPP_KEY_PEPPER.encode(), plaintext.encode(), hashlib.sha256).hexdigest()
        assert response.content.decode().count(plaintext) == 1
        for page in ("/admin/tenants/apikey/", f"/admin/tenants/apikey/{row.pk}/change/"):
            content = admin_client.get(page).content.decode()
            assert plaintext not in content and row.key_hash not in content

    def test_the_add_form_asks_only_for_tenant_and_label(self, admin_client):
        form = admin_client.get("/admin/tenants/apikey/add/").context["adminform"].form

        assert set(form.fields) == {"tenant", "label"}

    def test_revoke_action_revokes_the_selected_keys_once_and_logs_it(self, admin_client, tenant, superuser):
        first, second = api_key_issue(tenant=tenant).api_key, api_key_issue(tenant=tenant).api_key
        api_key_revoke(api_key=second)
        second_revoked_at = ApiKey.objects.get(pk=second.pk).revoked_at

        response = admin_client.post("/admin/tenants/apikey/",
                                     {"action": "revoke", "_selected_action": [first.pk, second.pk]}, follow=True)

        assert "1 key(s) revoked." in messages_of(response)
        assert ApiKey.objects.get(pk=first.pk).revoked_at is not None
        assert ApiKey.objects.get(pk=second.pk).revoked_at == second_revoked_at
        assert LogEntry.objects.get(object_id=str(first.pk)).user == superuser

    def test_keys_cannot_be_deleted(self, admin_client, tenant):
        key = api_key_issue(tenant=tenant).api_key

        assert admin_client.get(f"/admin/tenants/apikey/{key.pk}/delete/").status_code == 403

    def test_the_list_filters_and_searches(self, admin_client, tenant):
        api_key_issue(tenant=tenant, label="findme")

        assert admin_client.get("/admin/tenants/apikey/?q=findme").status_code == 200
        assert admin_client.get("/admin/tenants/apikey/?revoked_at__isnull=True").status_code == 200


class TestTenantAdmin:
    def test_a_plan_change_goes_through_the_service_and_writes_history(self, admin_client, tenant, superuser):
        premium = Plan.objects.get(code="premium")

        response = admin_client.post(f"/admin/tenants/tenant/{tenant.pk}/change/",
                                     tenant_change_form(tenant, plan=premium.pk, plan_change_reason="bigger quota"))

        assert response.status_code == 302, response.content.decode()[:3000]
        assert Tenant.objects.get(pk=tenant.pk).plan == premium
        latest = PlanAssignment.objects.filter(tenant=tenant).last()
        assert (latest.previous_plan.code, latest.plan, latest.assigned_by, latest.reason) == (
            "unlimited", premium, superuser, "bigger quota")

    def test_a_rename_writes_no_plan_history(self, admin_client, tenant):
        history_before = PlanAssignment.objects.filter(tenant=tenant).count()

        response = admin_client.post(f"/admin/tenants/tenant/{tenant.pk}/change/",
                                     tenant_change_form(tenant, name="Renamed"))

        assert response.status_code == 302
        assert Tenant.objects.get(pk=tenant.pk).name == "Renamed"
        assert PlanAssignment.objects.filter(tenant=tenant).count() == history_before

    def test_the_change_page_shows_the_plan_history(self, admin_client, tenant):
        response = admin_client.get(f"/admin/tenants/tenant/{tenant.pk}/change/")

        assert response.status_code == 200
        assert "plan history" in response.content.decode().lower()

    def test_a_tenant_added_in_admin_gets_its_wallet_and_first_assignment(self, admin_client, superuser):
        basic = Plan.objects.get(code="basic")

        response = admin_client.post("/admin/tenants/tenant/add/", {"name": "via-admin", "plan": basic.pk})

        assert response.status_code == 302
        tenant = Tenant.objects.get(name="via-admin")
        assert tenant.wallet.available_micros == 0
        assert PlanAssignment.objects.get(tenant=tenant).assigned_by == superuser

    def test_suspend_and_activate_actions_change_the_status_and_log_it(self, admin_client, tenant, superuser):
        admin_client.post("/admin/tenants/tenant/", {"action": "suspend", "_selected_action": [tenant.pk]})
        assert Tenant.objects.get(pk=tenant.pk).status == Tenant.Status.SUSPENDED

        admin_client.post("/admin/tenants/tenant/", {"action": "activate", "_selected_action": [tenant.pk]})
        assert Tenant.objects.get(pk=tenant.pk).status == Tenant.Status.ACTIVE

        logged = list(LogEntry.objects.filter(object_id=str(tenant.pk)).values_list("user__username", flat=True))
        assert logged == ["root", "root"]


class TestPlanAdmin:
    def test_a_plan_is_editable(self, admin_client):
        basic = Plan.objects.get(code="basic")
        page = admin_client.get(f"/admin/tenants/plan/{basic.pk}/change/")
        data = {name: value for name, value in page.context["adminform"].form.initial.items()
                if name in page.context["adminform"].form.fields}
        data.update(post_runs_per_minute=20, allowed_pack_types='["decision"]')

        response = admin_client.post(f"/admin/tenants/plan/{basic.pk}/change/", data)

        assert response.status_code == 302, response.content.decode()[:3000]
        assert Plan.objects.get(pk=basic.pk).post_runs_per_minute == 20


class TestAdminPages:
    @pytest.mark.parametrize("page", [
        "/admin/tenants/plan/", "/admin/tenants/plan/add/", "/admin/tenants/tenant/", "/admin/tenants/tenant/add/",
        "/admin/tenants/apikey/", "/admin/tenants/apikey/add/", "/admin/tenants/tenant/?q=tenant",
    ])
    def test_render(self, admin_client, tenant, api_key, page):
        assert admin_client.get(page).status_code == 200

    def test_a_key_page_shows_its_prefix_never_its_hash(self, admin_client, tenant):
        key = api_key_issue(tenant=tenant).api_key

        content = admin_client.get(f"/admin/tenants/apikey/{key.pk}/change/").content.decode()

        assert key.prefix in content and key.key_hash not in content
