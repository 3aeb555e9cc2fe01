"""Authentication by API key, on a throwaway view that uses the project's default DRF settings.

Every refusal is the same 401 problem with a Bearer challenge, whatever the reason, and a
mistyped key is refused before any database query.
"""

import time
from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from rest_framework.exceptions import AuthenticationFailed
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.test import APIRequestFactory
from rest_framework.views import APIView

from dpp.context import current_tenant_id
from tenants import keys
from tenants.authentication import ApiKeyAuthentication
from tenants.models import ApiKey, Tenant
from tenants.services import api_key_issue, api_key_revoke, tenant_set_status

pytestmark = [pytest.mark.django_db, pytest.mark.urls("tests.tenants.urls_for_auth")]

PROBLEM = "application/problem+json"


class WhoAmI(APIView):
    """Default authentication and permission classes, as every tenant-facing view has."""

    def get(self, request):
        return Response({
            "user_type": type(request.user).__name__,
            "tenant_id": str(request.user.pk),
            "api_key_id": request.auth.pk,
            "logged_tenant_id": current_tenant_id(),
        })


def whoami(client, authorization=None):
    headers = {} if authorization is None else {"HTTP_AUTHORIZATION": authorization}
    return client.get("/whoami", **headers)


def with_other_checksum(key: str) -> str:
    return key[:-1] + ("0" if key[-1] != "0" else "1")


def assert_unauthorized(response):
    assert response.status_code == 401, response.content
    assert response["Content-Type"] == PROBLEM
    assert response["WWW-Authenticate"].startswith("Bearer")
    body = response.json()
    assert body["type"] == "/problems/unauthorized"
    assert body["status"] == 401 and body["instance"] == "/whoami"
    return body


class TestApiKeyAuthentication:
    def test_a_valid_key_authenticates_its_tenant(self, client, api_key, tenant):
        response = whoami(client, f"Bearer {api_key}")

        assert response.status_code == 200
        body = response.json()
        assert body["user_type"] == "Tenant" and body["tenant_id"] == str(tenant.pk)
        assert body["api_key_id"] == ApiKey.objects.get(tenant=tenant).pk
        assert body["logged_tenant_id"] == str(tenant.pk)  # log lines of the request name the tenant

    def test_the_scheme_is_case_insensitive(self, client, api_key):
        assert whoami(client, f"bearer {api_key}").status_code == 200

    @pytest.mark.parametrize("authorization", [
        pytest.param(None, id="missing header"),
        pytest.param("", id="empty header"),
        pytest.param("Basic dXNlcjpwYXNz", id="basic scheme"),
        pytest.param("Token {key}", id="token scheme"),
        pytest.param("{key}", id="no scheme"),
        pytest.param("Bearer", id="no key"),
        pytest.param("Bearer {key} {key}", id="two keys"),
        pytest.param("Bearer dpp_live_short", id="malformed key"),
        pytest.param("Bearer {wrong_checksum}", id="wrong checksum"),
        pytest.param("Bearer {unknown}", id="unknown well-formed key"),
    ])
    def test_refuses_with_a_401_problem_and_a_bearer_challenge(self, client, api_key, authorization):
        if authorization is not None:
            authorization = authorization.format(
                key=api_key, wrong_checksum=with_other_checksum(api_key), unknown=keys.generate())

        assert_unauthorized(whoami(client, authorization))

    def test_refuses_a_revoked_key(self, client, api_key):
        api_key_revoke(api_key=ApiKey.objects.get())

        assert_unauthorized(whoami(client, f"Bearer {api_key}"))

    def test_refuses_the_key_of_a_suspended_tenant(self, client, api_key, tenant):
        tenant_set_status(tenant=tenant, status=Tenant.Status.SUSPENDED)

        assert_unauthorized(whoami(client, f"Bearer {api_key}"))

    def test_says_the_same_thing_whatever_is_wrong_with_a_presented_key(self, client, api_key, tenant, other_tenant):
        other_key = keys.generate()
        suspended_key = api_key_issue(tenant=other_tenant).plaintext
        tenant_set_status(tenant=other_tenant, status=Tenant.Status.SUSPENDED)

        details = {
            assert_unauthorized(whoami(client, f"Bearer {presented}"))["detail"]
            for presented in (with_other_checksum(api_key), other_key, suspended_key, "x")
        }

        assert len(details) == 1

    def test_a_mistyped_key_costs_no_query(self, api_key, django_assert_num_queries):
        request = Request(APIRequestFactory().get("/", HTTP_AUTHORIZATION=f"Bearer {with_other_checksum(api_key)}"))

        with django_assert_num_queries(0), pytest.raises(AuthenticationFailed):
            ApiKeyAuthentication().authenticate(request)

    def test_an_unknown_key_costs_one_indexed_lookup(self, api_key, django_assert_num_queries):
        request = Request(APIRequestFactory().get("/", HTTP_AUTHORIZATION=f"Bearer {keys.generate()}"))

        with django_assert_num_queries(1), pytest.raises(AuthenticationFailed):
            ApiKeyAuthentication().authenticate(request)


class TestLastUsedAt:
    @staticmethod
    def key_updates(queries) -> int:
        return sum(1 for q in queries if q["sql"].startswith('UPDATE "tenants_apikey"'))

    def test_two_requests_within_the_window_write_once(self, client, api_key):
        with CaptureQueriesContext(connection) as queries:
            assert whoami(client, f"Bearer {api_key}").status_code == 200
            first = ApiKey.objects.get().last_used_at
            assert whoami(client, f"Bearer {api_key}").status_code == 200

        assert self.key_updates(queries.captured_queries) == 1
        assert first is not None and ApiKey.objects.get().last_used_at == first

    def test_a_request_after_the_window_writes_again(self, client, api_key, settings):
        long_ago = timezone.now() - timedelta(seconds=settings.DPP_LAST_USED_DEBOUNCE_SECONDS + 60)
        ApiKey.objects.update(last_used_at=long_ago)

        with CaptureQueriesContext(connection) as queries:
            assert whoami(client, f"Bearer {api_key}").status_code == 200

        assert self.key_updates(queries.captured_queries) == 1
        assert ApiKey.objects.get().last_used_at > long_ago + timedelta(seconds=60)


class TestTheKeyLookupCache:
    def test_a_cached_key_costs_no_database_query(self, client, api_key):
        assert whoami(client, f"Bearer {api_key}").status_code == 200

        with CaptureQueriesContext(connection) as queries:
            response = whoami(client, f"Bearer {api_key}")

        assert response.status_code == 200
        assert not [q for q in queries.captured_queries if "tenants_apikey" in q["sql"] and "SELECT" in q["sql"]]

    def test_a_revocation_made_elsewhere_takes_effect_within_the_cache_lifetime(self, client, api_key, settings):
        settings.DPP_AUTH_CACHE_SECONDS = 0.5
        assert whoami(client, f"Bearer {api_key}").status_code == 200
        # Revoked by another process: this process's cache is not told.
        ApiKey.objects.update(revoked_at=timezone.now())

        assert whoami(client, f"Bearer {api_key}").status_code == 200  # still cached
        time.sleep(0.6)
        assert whoami(client, f"Bearer {api_key}").status_code == 401

    def test_a_suspension_made_elsewhere_takes_effect_within_the_cache_lifetime(self, client, api_key, tenant,
                                                                                settings):
        settings.DPP_AUTH_CACHE_SECONDS = 0.5
        assert whoami(client, f"Bearer {api_key}").status_code == 200
        Tenant.objects.filter(pk=tenant.pk).update(status=Tenant.Status.SUSPENDED)
        time.sleep(0.6)
        assert whoami(client, f"Bearer {api_key}").status_code == 401

    def test_a_revocation_in_this_process_takes_effect_at_once(self, client, api_key):
        assert whoami(client, f"Bearer {api_key}").status_code == 200
        api_key_revoke(api_key=ApiKey.objects.get())
        assert whoami(client, f"Bearer {api_key}").status_code == 401
