"""python manage.py create_tenant NAME [--plan CODE] [--topup-usd AMOUNT]: prints the tenant id last."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from billing.money import MoneyFormatError, usd_to_micros
from billing.services import wallet_top_up
from dpp.errors import DomainError
from tenants.services import tenant_create


class Command(BaseCommand):
    help = "Create a tenant (with its wallet) on a plan, optionally topped up through the ledger."

    def add_arguments(self, parser):
        parser.add_argument("name")
        parser.add_argument("--plan", default="basic", help="plan code (basic, premium, unlimited, ...)")
        parser.add_argument("--topup-usd", default=None, help='initial credit, a decimal string such as "10.0000"')

    def handle(self, *args, name: str, plan: str, topup_usd: str | None, **options):
        amount = None
        if topup_usd is not None:
            try:
                amount = usd_to_micros(topup_usd)
            except MoneyFormatError as error:
                raise CommandError(f"--topup-usd {error}") from None
            if amount <= 0:
                raise CommandError("--topup-usd must be more than 0")
        try:
            # An entry point: the tenant, its wallet and its first credit commit together or not at all.
            with transaction.atomic(durable=True):
                tenant = tenant_create(name=name, plan_code=plan)
                if amount:
                    wallet_top_up(tenant=tenant, amount_micros=amount, memo="create_tenant --topup-usd")
        except DomainError as error:
            raise CommandError(error.detail) from None
        credited = f", credited {topup_usd} USD" if amount else ""
        self.stdout.write(f"created tenant {tenant.name!r} on plan {plan}{credited}: {tenant.pk}")
