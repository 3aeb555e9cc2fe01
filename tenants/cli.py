"""Helpers for the management commands that name a tenant on their command line (tenants' and
billing's commands share them)."""

from __future__ import annotations

import uuid

from django.core.management.base import CommandError

from tenants.models import Tenant
from tenants.selectors import tenant_get


def tenant_or_error(tenant_id: str) -> Tenant:
    """The tenant named on a command line, or a CommandError for a malformed or unknown id."""
    try:
        uuid.UUID(tenant_id)
    except ValueError:
        raise CommandError(f"{tenant_id!r} is not a tenant id (a UUID)") from None
    tenant = tenant_get(tenant_id=tenant_id)
    if tenant is None:
        raise CommandError(f"no tenant {tenant_id}")
    return tenant
