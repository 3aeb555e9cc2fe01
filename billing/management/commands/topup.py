"""python manage.py topup TENANT_ID --usd AMOUNT [--reference REF]: credit through the ledger and
print the new available balance last."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from billing.models import Account
from billing.money import MoneyFormatError, micros_to_usd, usd_to_micros
from billing.selectors import wallet_get
from billing.services import wallet_top_up
from dpp.errors import DomainError
from tenants.cli import tenant_or_error


class Command(BaseCommand):
    help = "Credit a tenant's available balance (FUNDING -> AVAILABLE). A --reference makes a retry a no-op."

    def add_arguments(self, parser):
        parser.add_argument("tenant_id")
        parser.add_argument("--usd", required=True, help='a decimal string with at most 4 decimals, e.g. "10.0000"')
        parser.add_argument("--reference", default=None, help="idempotency reference (e.g. an invoice number)")

    def handle(self, *args, tenant_id: str, usd: str, reference: str | None, **options):
        try:
            amount_micros = usd_to_micros(usd)
        except MoneyFormatError as error:
            raise CommandError(f"--usd {error}") from None
        tenant = tenant_or_error(tenant_id)
        started_at = timezone.now()
        try:
            journal = wallet_top_up(tenant=tenant, amount_micros=amount_micros, reference=reference,
                                    memo="manage.py topup")
        except DomainError as error:
            raise CommandError(error.detail) from None
        if journal.created_at < started_at:  # the reference was used before: nothing was credited now
            credited = journal.legs.get(account__kind=Account.Kind.AVAILABLE).amount_micros
            if credited != amount_micros:
                raise CommandError(f"reference {reference!r} already credited {micros_to_usd(credited)} USD "
                                   f"(journal {journal.pk}); nothing credited now")
            self.stdout.write(f"reference {reference!r} already credited (journal {journal.pk}); nothing credited now")
        else:
            self.stdout.write(f"credited {micros_to_usd(amount_micros)} USD to {tenant.pk} (journal {journal.pk})")
        available = wallet_get(tenant_id=tenant.pk).available_micros
        self.stdout.write(f"available balance (USD): {micros_to_usd(available)}")
