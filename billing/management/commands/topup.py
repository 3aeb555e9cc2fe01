"""python manage.py topup TENANT_ID --usd AMOUNT [--reference REF]: credit through the ledger."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from billing.money import MoneyFormatError, micros_to_usd, usd_to_micros
from billing.selectors import wallet_get
from billing.services import wallet_top_up
from dpp.errors import DomainError
from tenants.management.commands.issue_api_key import tenant_or_error


class Command(BaseCommand):
    help = "Credit a tenant's available balance (FUNDING -> AVAILABLE). A --reference makes a retry a no-op."

    def add_arguments(self, parser):
        parser.add_argument("tenant_id")
        parser.add_argument("--usd", required=True, help='a decimal string such as "10.0000"')
        parser.add_argument("--reference", default=None, help="idempotency reference (e.g. an invoice number)")

    def handle(self, *args, tenant_id: str, usd: str, reference: str | None, **options):
        tenant = tenant_or_error(tenant_id)
        try:
            amount = usd_to_micros(usd)
            journal = wallet_top_up(tenant=tenant, amount_micros=amount, reference=reference, memo="manage.py topup")
        except MoneyFormatError as error:
            raise CommandError(f"--usd {error}") from None
        except DomainError as error:
            raise CommandError(error.detail) from None
        available = wallet_get(tenant_id=tenant.pk).available_micros
        self.stdout.write(f"journal {journal.pk}: available balance is now {micros_to_usd(available)} USD")
