"""The database itself refuses what would break the ledger, whatever code writes the rows."""

import uuid

import pytest
from django.db import DatabaseError, connection, transaction

from billing.models import Account, Journal, JournalLeg
from billing.services import reservation_create
from tests.factories import TenantFactory


@pytest.mark.django_db(transaction=True)
class TestLedgerTriggers:
    def test_refuses_an_unbalanced_journal_written_directly_at_commit(self):
        tenant = TenantFactory(balance_micros=1_000_000)
        available = Account.objects.get(tenant=tenant, kind="AVAILABLE")
        held = Account.objects.get(tenant=tenant, kind="HELD")
        with pytest.raises(DatabaseError, match="unbalanced"):
            with transaction.atomic():
                journal = Journal.objects.create(kind="RESERVE", phase="RESERVE", tenant=tenant, run_id=uuid.uuid4())
                JournalLeg.objects.create(journal=journal, account=available, amount_micros=-100)
                JournalLeg.objects.create(journal=journal, account=held, amount_micros=99)
        assert not Journal.objects.filter(kind="RESERVE").exists()

    def test_refuses_a_journal_without_legs(self):
        tenant = TenantFactory()
        with pytest.raises(DatabaseError, match="unbalanced"):
            with transaction.atomic():
                Journal.objects.create(kind="TOPUP", tenant=tenant)

    def test_refuses_to_update_or_delete_legs_and_journals(self):
        tenant = TenantFactory(balance_micros=1_000_000)
        leg = JournalLeg.objects.filter(journal__tenant=tenant).first()
        with pytest.raises(DatabaseError, match="append-only"):
            with transaction.atomic():
                JournalLeg.objects.filter(pk=leg.pk).update(amount_micros=1)
        with pytest.raises(DatabaseError, match="append-only"):
            with transaction.atomic():
                Journal.objects.filter(pk=leg.journal_id).update(memo="rewritten")
        with pytest.raises(DatabaseError, match="append-only"):
            with transaction.atomic(), connection.cursor() as cursor:
                cursor.execute("DELETE FROM billing_journalleg WHERE id = %s", [leg.pk])

    def test_wallet_check_constraints_refuse_negative_balances(self):
        tenant = TenantFactory(balance_micros=100)
        with pytest.raises(DatabaseError), transaction.atomic(), connection.cursor() as cursor:
            cursor.execute("UPDATE billing_wallet SET held_micros = -1 WHERE tenant_id = %s", [tenant.pk])

    def test_balanced_journals_commit(self):
        tenant = TenantFactory(balance_micros=1_000_000)
        with transaction.atomic():
            reservation_create(tenant_id=tenant.pk, run_id=uuid.uuid4(), amount_micros=10_000, max_active_runs=10)
        assert Journal.objects.filter(kind="RESERVE").count() == 1
