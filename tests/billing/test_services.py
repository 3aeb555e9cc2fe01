"""Ledger stories told as worked examples with exact micros."""

import uuid

import pytest
from django.db import IntegrityError, transaction

from billing.models import Account, Journal, JournalLeg, Wallet
from billing.services import (
    InsufficientBalance,
    ReservationMissing,
    reservation_create,
    reservation_settle,
    wallet_top_up,
)
from tests.factories import TenantFactory

pytestmark = pytest.mark.django_db


def balances(tenant):
    wallet = Wallet.objects.get(tenant=tenant)
    return wallet.available_micros, wallet.held_micros


def account_sum(kind, tenant=None):
    legs = JournalLeg.objects.filter(account__kind=kind, account__tenant=tenant)
    return sum(legs.values_list("amount_micros", flat=True))


class TestLedgerStory:
    def test_top_up_reserve_settle_leaves_exact_balances(self):
        tenant = TenantFactory()
        run_id = uuid.uuid4()

        wallet_top_up(tenant=tenant, amount_micros=1_000_000)  # $1.0000 in
        assert balances(tenant) == (1_000_000, 0)

        with transaction.atomic():
            reservation_create(tenant_id=tenant.pk, run_id=run_id, amount_micros=500_000, max_active_runs=10)  # cap $0.5000
        assert balances(tenant) == (500_000, 500_000)

        with transaction.atomic():
            reservation_settle(tenant_id=tenant.pk, run_id=run_id, charge_micros=10_600, release_slot=True)  # charged $0.0106
        assert balances(tenant) == (989_400, 0)  # 1_000_000 - 10_600
        assert account_sum("REVENUE") == 10_600  # exact: over-crediting revenue would show here
        legs = JournalLeg.objects.filter(journal__run_id=run_id, journal__phase="FINALIZE").order_by("amount_micros")
        assert sorted(legs.values_list("account__kind", "amount_micros")) == [
            ("AVAILABLE", 489_400), ("HELD", -500_000), ("REVENUE", 10_600)
        ]

    def test_failure_charges_the_minimum_fee_and_releases_the_rest(self):
        tenant = TenantFactory(balance_micros=1_000_000)
        run_id = uuid.uuid4()
        with transaction.atomic():
            reservation_create(tenant_id=tenant.pk, run_id=run_id, amount_micros=500_000, max_active_runs=10)
        with transaction.atomic():
            reservation_settle(tenant_id=tenant.pk, run_id=run_id, charge_micros=10_000, release_slot=True)  # min fee of $0.50
        assert balances(tenant) == (990_000, 0)

    def test_release_returns_everything(self):
        tenant = TenantFactory(balance_micros=1_000_000)
        run_id = uuid.uuid4()
        with transaction.atomic():
            reservation_create(tenant_id=tenant.pk, run_id=run_id, amount_micros=300_000, max_active_runs=10)
        with transaction.atomic():
            journal = reservation_settle(tenant_id=tenant.pk, run_id=run_id, charge_micros=0, release_slot=True)
        assert journal.kind == Journal.Kind.RELEASE
        assert balances(tenant) == (1_000_000, 0)

    def test_reserving_more_than_available_is_refused_and_moves_nothing(self):
        tenant = TenantFactory(balance_micros=100_000)
        with pytest.raises(InsufficientBalance), transaction.atomic():
            reservation_create(tenant_id=tenant.pk, run_id=uuid.uuid4(), amount_micros=100_001, max_active_runs=10)
        assert balances(tenant) == (100_000, 0)
        assert not Journal.objects.filter(tenant=tenant, kind="RESERVE").exists()


class TestOncePerRun:
    def test_a_second_settlement_of_a_run_fails_in_the_database(self):
        tenant = TenantFactory(balance_micros=1_000_000)
        run_id = uuid.uuid4()
        with transaction.atomic():
            reservation_create(tenant_id=tenant.pk, run_id=run_id, amount_micros=100_000, max_active_runs=10)
        with transaction.atomic():
            reservation_settle(tenant_id=tenant.pk, run_id=run_id, charge_micros=5_000, release_slot=True)
        with pytest.raises(IntegrityError), transaction.atomic():
            reservation_settle(tenant_id=tenant.pk, run_id=run_id, charge_micros=0, release_slot=True)
        assert balances(tenant) == (995_000, 0)

    def test_a_second_reservation_of_a_run_fails_in_the_database(self):
        tenant = TenantFactory(balance_micros=1_000_000)
        run_id = uuid.uuid4()
        with transaction.atomic():
            reservation_create(tenant_id=tenant.pk, run_id=run_id, amount_micros=100_000, max_active_runs=10)
        with pytest.raises(IntegrityError), transaction.atomic():
            reservation_create(tenant_id=tenant.pk, run_id=run_id, amount_micros=100_000, max_active_runs=10)
        assert balances(tenant) == (900_000, 100_000)

    def test_settling_a_run_without_reservation_is_refused(self):
        tenant = TenantFactory(balance_micros=1_000_000)
        with pytest.raises(ReservationMissing), transaction.atomic():
            reservation_settle(tenant_id=tenant.pk, run_id=uuid.uuid4(), charge_micros=1, release_slot=True)

    def test_a_charge_above_the_reservation_is_refused(self):
        tenant = TenantFactory(balance_micros=1_000_000)
        run_id = uuid.uuid4()
        with transaction.atomic():
            reservation_create(tenant_id=tenant.pk, run_id=run_id, amount_micros=100_000, max_active_runs=10)
        with pytest.raises(Exception, match="outside"), transaction.atomic():
            reservation_settle(tenant_id=tenant.pk, run_id=run_id, charge_micros=100_001, release_slot=True)
        assert balances(tenant) == (900_000, 100_000)


class TestTopUp:
    def test_a_retried_top_up_with_the_same_reference_credits_once(self):
        tenant = TenantFactory()
        first = wallet_top_up(tenant=tenant, amount_micros=250_000, reference="invoice-42")
        second = wallet_top_up(tenant=tenant, amount_micros=250_000, reference="invoice-42")
        assert first.pk == second.pk
        assert balances(tenant) == (250_000, 0)
        assert account_sum("FUNDING") <= -250_000

    @pytest.mark.parametrize("amount", [0, -1, 10_000_000_001, 1.5, True])
    def test_refuses_amounts_outside_the_range_or_not_integers(self, amount):
        tenant = TenantFactory()
        with pytest.raises(Exception):  # noqa: B017 - ValidationProblem is what the API maps to 422
            wallet_top_up(tenant=tenant, amount_micros=amount)
        assert balances(tenant) == (0, 0)


class TestPlatformAccounts:
    def test_revenue_and_funding_exist_once(self):
        TenantFactory()
        assert Account.objects.filter(tenant__isnull=True).count() == 2
