"""Reads for tenants and API keys."""

from __future__ import annotations

import hmac

from django.conf import settings

from tenants import keys
from tenants.models import ApiKey, Tenant


def api_key_get_active(*, raw_key: str) -> ApiKey | None:
    """The active key for a presented secret, or None.

    The checksum is verified first (no lookup for a mistyped key); the lookup is by the HMAC,
    an indexed unique column; the final comparison is constant-time.
    """
    try:
        parsed = keys.parse(raw_key)
    except keys.InvalidKeyFormat:
        return None
    digest = keys.hash_key(parsed.raw, pepper=settings.DPP_KEY_PEPPER)
    api_key = (
        ApiKey.objects.select_related("tenant", "tenant__plan")
        .filter(key_hash=digest, revoked_at__isnull=True)
        .first()
    )
    if api_key is None or not hmac.compare_digest(api_key.key_hash, digest):
        return None
    if api_key.tenant.status != Tenant.Status.ACTIVE:
        return None
    return api_key


def tenant_get(*, tenant_id) -> Tenant | None:
    return Tenant.objects.select_related("plan").filter(pk=tenant_id).first()
