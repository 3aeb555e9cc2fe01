"""python manage.py issue_api_key TENANT_ID [--label TEXT]: prints the new key last (shown once)."""

from __future__ import annotations

from django.core.management.base import BaseCommand

from tenants.cli import tenant_or_error
from tenants.services import api_key_issue


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
