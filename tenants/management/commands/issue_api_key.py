"""python manage.py issue_api_key TENANT_ID [--label TEXT]: prints the new key last (shown once)."""

from __future__ import annotations

import uuid

from django.core.management.base import BaseCommand, CommandError

from tenants.models import Tenant
from tenants.selectors import tenant_get
from tenants.services import api_key_issue


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


class Command(BaseCommand):
    help = "Issue an API key for a tenant. Only its HMAC is stored: copy the key now."

    def add_arguments(self, parser):
        parser.add_argument("tenant_id")
        parser.add_argument("--label", default="", help="what the key is for")

    def handle(self, *args, tenant_id: str, label: str, **options):
        tenant = tenant_or_error(tenant_id)
        issued = api_key_issue(tenant=tenant, label=label)
        if not tenant.is_active:
            self.stderr.write(f"warning: tenant {tenant.pk} is {tenant.status}; the key works once it is ACTIVE")
        self.stdout.write(f"API key {issued.api_key.prefix}... issued for {tenant.name!r} "
                          f"(copy it now, it is not shown again): {issued.plaintext}")
