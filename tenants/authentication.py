"""DRF authentication by API key: ``Authorization: Bearer dpp_live_...``.

``request.user`` is the Tenant and ``request.auth`` the ApiKey. Every failure is the same 401
problem (with ``WWW-Authenticate: Bearer``), whatever the reason, so a caller learns nothing
about which keys or tenants exist.
"""

from __future__ import annotations

from rest_framework import authentication, exceptions

from dpp.context import set_tenant_id
from tenants.selectors import api_key_get_active
from tenants.services import api_key_touch

_FAILED = "Missing, malformed, unknown or revoked API key, or suspended tenant."


class ApiKeyAuthentication(authentication.BaseAuthentication):
    keyword = "Bearer"

    def authenticate(self, request):
        header = request.META.get("HTTP_AUTHORIZATION", "")
        if not header:
            return None  # IsAuthenticated answers 401 NotAuthenticated
        parts = header.split()
        if len(parts) != 2 or parts[0].lower() != "bearer":
            raise exceptions.AuthenticationFailed(_FAILED)
        api_key = api_key_get_active(raw_key=parts[1])
        if api_key is None:
            raise exceptions.AuthenticationFailed(_FAILED)
        api_key_touch(api_key=api_key)
        set_tenant_id(api_key.tenant_id)
        return api_key.tenant, api_key

    def authenticate_header(self, request):
        return 'Bearer realm="dpp"'
