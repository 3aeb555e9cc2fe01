"""Authentication by API key on a real endpoint: every refusal is the same 401 problem."""

from datetime import timedelta

import pytest
from django.utils import timezone

from tenants.models import ApiKey, Tenant
from tenants.selectors import api_key_get_active
from tenants.services import api_key_issue, api_key_revoke, tenant_set_status

pytestmark = pytest.mark.django_db

PROBLEM = "application/problem+json"


def get_balance(client, authorization=None):
    headers = {"HTTP_AUTHORIZATION": authorization} if authorization is not None else {}
    return client.get("/v1/balance", **headers)


class TestApiKeyAuthentication:
    def test_a_valid_key_authenticates_its_tenant(self, api_client, api_key, tenant):
        response = get_balance(api_client, f"Bearer {api_key}")
        assert response.status_code == 200
        assert response.json()["plan"]["code"] == tenant.plan.code

    @pytest.mark.parametrize("authorization", [
        None, "", "Basic dXNlcjpwYXNz", "Bearer", "Bearer a b", "Token {key}", "Bearer dpp_live_short",
        "Bearer {wrong_checksum}", "Bearer {unknown}",
    ])
    def test_refusals_are_401_problems_with_a_bearer_challenge(self, api_client, api_key, authorization):
        from tenants import keys

        unknown = keys.generate()
        wrong_checksum = api_key[:-1] + ("0" if api_key[-1] != "0" else "1")
        if authorization is not None:
            authorization = authorization.format(key=api_key, unknown=unknown, wrong_checksum=wrong_checksum)
        response = get_balance(api_client, authorization)
        assert response.status_code == 401
        assert response["Content-Type"] == PROBLEM
        assert response["WWW-Authenticate"].startswith("Bearer")
        assert response.json()["type"] == "/problems/unauthorized"

    def test_a_revoked_key_is_refused(self, api_client, api_key):
        api_key_revoke(api_key=ApiKey.objects.get())
        assert get_balance(api_client, f"Bearer {api_key}").status_code == 401

    def test_a_suspended_tenant_is_refused(self, api_client, api_key, tenant):
        tenant_set_status(tenant=tenant, status=Tenant.Status.SUSPENDED)
        assert get_balance(api_client, f"Bearer {api_key}").status_code == 401

    def test_a_mistyped_key_is_refused_before_any_query(self, api_key, django_assert_num_queries):
        mistyped = api_key[:-1] + ("0" if api_key[-1] != "0" else "1")
        with django_assert_num_queries(0):
            assert api_key_get_active(raw_key=mistyped) is None

    def test_last_used_is_written_at_most_once_per_debounce_window(self, api_client, api_key):
        get_balance(api_client, f"Bearer {api_key}")
        first = ApiKey.objects.get().last_used_at
        get_balance(api_client, f"Bearer {api_key}")
        assert ApiKey.objects.get().last_used_at == first
        ApiKey.objects.update(last_used_at=timezone.now() - timedelta(minutes=5))
        get_balance(api_client, f"Bearer {api_key}")
        assert ApiKey.objects.get().last_used_at > first - timedelta(minutes=1)


class TestApiKeyStorage:
    def test_only_the_hash_and_a_display_prefix_are_stored(self, tenant):
        issued = api_key_issue(tenant=tenant, label="ci")
        row = ApiKey.objects.get(pk=issued.api_key.pk)
        assert issued.plaintext not in (row.key_hash, row.prefix, row.label)
        assert issued.plaintext.startswith(row.prefix) and len(row.prefix) == 13

    def test_revoking_twice_revokes_once(self, tenant):
        issued = api_key_issue(tenant=tenant)
        assert api_key_revoke(api_key=issued.api_key) is True
        assert api_key_revoke(api_key=issued.api_key) is False
