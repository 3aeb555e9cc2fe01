"""Writes for tenants, plans and API keys.

Invariants kept here:
- every tenant is created with its wallet and ledger accounts, in one transaction;
- a plan change writes a PlanAssignment row in the same transaction;
- a key's plaintext is returned once by ``api_key_issue`` and never stored;
- a revocation, suspension or plan change clears this process's authentication cache (the
  other processes' entries expire within DPP_AUTH_CACHE_SECONDS);
- ``last_used_at`` is written at most once per DPP_LAST_USED_DEBOUNCE_SECONDS per key, by a
  conditional update, so authentication does not write on every request.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from billing.services import wallet_open  # the one upward import of tenants: see docs/ARCHITECTURE.md
from dpp.errors import ValidationProblem
from tenants import keys
from tenants.models import ApiKey, Plan, PlanAssignment, Tenant
from tenants.selectors import api_key_cache_clear


class PlanNotFound(ValidationProblem):
    pass


@dataclass(frozen=True)
class IssuedKey:
    api_key: ApiKey
    plaintext: str


def plan_get(*, code: str) -> Plan:
    try:
        return Plan.objects.get(code=code)
    except Plan.DoesNotExist:
        raise PlanNotFound(f"plan: unknown plan code {code!r}", errors={"plan": "unknown plan code"}) from None


def tenant_create(*, name: str, plan_code: str = "basic", actor=None) -> Tenant:
    name = (name or "").strip()
    if not name:
        raise ValidationProblem("name: must not be blank", errors={"name": "must not be blank"})
    plan = plan_get(code=plan_code)
    with transaction.atomic():
        tenant = Tenant.objects.create(name=name, plan=plan)
        PlanAssignment.objects.create(tenant=tenant, plan=plan, assigned_by=actor, reason="initial plan")
        wallet_open(tenant=tenant)
    return tenant


def tenant_assign_plan(*, tenant: Tenant, plan_code: str, actor=None, reason: str = "") -> Tenant:
    plan = plan_get(code=plan_code)
    with transaction.atomic():
        locked = Tenant.objects.select_for_update().get(pk=tenant.pk)
        if locked.plan_id == plan.pk:
            return locked
        PlanAssignment.objects.create(
            tenant=locked, plan=plan, previous_plan_id=locked.plan_id, assigned_by=actor, reason=reason
        )
        Tenant.objects.filter(pk=locked.pk).update(plan=plan, updated_at=timezone.now())
    api_key_cache_clear()  # this process at once; the others within DPP_AUTH_CACHE_SECONDS
    locked.refresh_from_db()
    return locked


def tenant_set_status(*, tenant: Tenant, status: str) -> None:
    if status not in Tenant.Status.values:
        raise ValidationProblem(f"status: must be one of {Tenant.Status.values}")
    Tenant.objects.filter(pk=tenant.pk).update(status=status, updated_at=timezone.now())
    api_key_cache_clear()  # this process at once; the others within DPP_AUTH_CACHE_SECONDS


def api_key_issue(*, tenant: Tenant, label: str = "") -> IssuedKey:
    plaintext = keys.generate()
    api_key = ApiKey.objects.create(
        tenant=tenant,
        prefix=plaintext[: keys.DISPLAY_PREFIX_LENGTH],
        key_hash=keys.hash_key(plaintext, pepper=settings.DPP_KEY_PEPPER),
        label=label[:200],
    )
    return IssuedKey(api_key=api_key, plaintext=plaintext)


def api_key_revoke(*, api_key: ApiKey, now: datetime | None = None) -> bool:
    """Revoke once; returns whether this call revoked it."""
    now = now or timezone.now()
    revoked = ApiKey.objects.filter(pk=api_key.pk, revoked_at__isnull=True).update(revoked_at=now) == 1
    api_key_cache_clear()  # this process at once; the others within DPP_AUTH_CACHE_SECONDS
    return revoked


def api_key_touch(*, api_key: ApiKey, now: datetime | None = None) -> bool:
    """Record use, at most once per debounce window (a conditional update, no read first)."""
    now = now or timezone.now()
    window = timedelta(seconds=settings.DPP_LAST_USED_DEBOUNCE_SECONDS)
    if api_key.last_used_at is not None and now - api_key.last_used_at < window:
        return False
    updated = ApiKey.objects.filter(
        Q(last_used_at__isnull=True) | Q(last_used_at__lt=now - window), pk=api_key.pk
    ).update(last_used_at=now)
    if updated:
        api_key.last_used_at = now
    return updated == 1
