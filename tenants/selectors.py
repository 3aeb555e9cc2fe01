"""Reads for tenants and API keys.

The key lookup of authentication is cached in-process for ``DPP_AUTH_CACHE_SECONDS`` (1 s by
default, at most 2): a GET then costs no database round trip for its key, and a revoked key, a
suspended tenant or a plan change takes effect in every process within that time (at once in
the process that made the change, whose services call ``api_key_cache_clear``). Only found keys
are cached, by their HMAC (the plaintext is never kept), in a bounded dict.
"""

from __future__ import annotations

import hmac
import time

from django.conf import settings
from django.core.signals import setting_changed

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
    ttl = settings.DPP_AUTH_CACHE_SECONDS
    if ttl > 0:
        hit = _cache.get(digest)
        if hit is not None and hit[0] > time.monotonic():
            return hit[1]
    api_key = (
        ApiKey.objects.select_related("tenant", "tenant__plan")
        .filter(key_hash=digest, revoked_at__isnull=True)
        .first()
    )
    if api_key is None or not hmac.compare_digest(api_key.key_hash, digest):
        return None
    if api_key.tenant.status != Tenant.Status.ACTIVE:
        return None
    if ttl > 0:
        if len(_cache) >= CACHE_MAX_ENTRIES:
            _cache.clear()
        _cache[digest] = (time.monotonic() + ttl, api_key)
    return api_key


CACHE_MAX_ENTRIES = 10_000
_cache: dict[str, tuple[float, ApiKey]] = {}


def api_key_cache_clear() -> None:
    """Forget this process's cached key lookups (after a revocation, suspension or plan change)."""
    _cache.clear()


def _on_setting_changed(*, setting, **kwargs) -> None:
    if setting in ("DPP_KEY_PEPPER", "DPP_AUTH_CACHE_SECONDS"):
        api_key_cache_clear()


setting_changed.connect(_on_setting_changed, dispatch_uid="tenants.selectors.api_key_cache")


def tenant_get(*, tenant_id) -> Tenant | None:
    return Tenant.objects.select_related("plan").filter(pk=tenant_id).first()
