"""The operator commands: create_tenant, issue_api_key, topup (and seed_demo, check_ledger).

Each prints what a script needs as the last word of its output."""

import re
import uuid
from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from billing.models import Journal, Wallet
from dpp.errors import DomainError
from tenants import keys
from tenants.models import ApiKey, PlanAssignment, Tenant
from tenants.selectors import api_key_get_active

pytestmark = pytest.mark.django_db

BAD_AMOUNTS = ["-1", "1e3", "0.00001", "abc", "0", "", " 1", "1,5", "10000.0001", "NaN"]


def run(*args) -> str:
    """call_command, returning what it printed."""
    out = StringIO()
    call_command(*args, stdout=out)
    return out.getvalue()


def last_word(output: str) -> str:
    return output.split()[-1]


class TestCreateTenant:
    def test_prints_the_tenant_id_last(self):
        tenant = Tenant.objects.get(pk=last_word(run("create_tenant", "Acme")))

        assert tenant.name == "Acme" and tenant.plan.code == "basic"
        assert PlanAssignment.objects.get(tenant=tenant).plan.code == "basic"
        assert Wallet.objects.get(tenant=tenant).available_micros == 0
        assert not Journal.objects.filter(tenant=tenant).exists()

    def test_tops_up_through_the_ledger(self):
        output = run("create_tenant", "Acme", "--plan", "premium", "--topup-usd", "12.5000")

        tenant = Tenant.objects.get(pk=last_word(output))
        assert tenant.plan.code == "premium"
        assert Wallet.objects.get(tenant=tenant).available_micros == 12_500_000
        top_up = Journal.objects.get(tenant=tenant)
        assert top_up.kind == Journal.Kind.TOPUP
        assert sorted(top_up.legs.values_list("amount_micros", flat=True)) == [-12_500_000, 12_500_000]

    @pytest.mark.parametrize("amount", BAD_AMOUNTS)
    def test_refuses_a_bad_amount_and_creates_nothing(self, amount):
        with pytest.raises(CommandError):
            run("create_tenant", "Acme", "--topup-usd", amount)

        assert not Tenant.objects.exists()
        assert not Journal.objects.exists()

    def test_refuses_an_unknown_plan(self):
        with pytest.raises(CommandError, match="gold"):
            run("create_tenant", "Acme", "--plan", "gold")

        assert not Tenant.objects.exists()

    def test_creates_nothing_when_the_top_up_fails(self, monkeypatch):
        def failing_top_up(**kwargs):
            raise DomainError("the ledger refused")

        monkeypatch.setattr("tenants.management.commands.create_tenant.wallet_top_up", failing_top_up)

        with pytest.raises(CommandError, match="the ledger refused"):
            run("create_tenant", "Acme", "--topup-usd", "1.0000")

        assert not Tenant.objects.exists()


class TestIssueApiKey:
    def test_prints_a_working_key_last_and_stores_only_its_hash(self, tenant):
        key = last_word(run("issue_api_key", str(tenant.pk), "--label", "cli"))

        assert keys.parse(key).raw == key
        row = ApiKey.objects.get(tenant=tenant)
        assert row.label == "cli" and row.prefix == key[:13] and key not in row.key_hash
        assert api_key_get_active(raw_key=key) == row

    @pytest.mark.parametrize("tenant_id", ["nope", "", "1234", str(uuid.UUID(int=0))])
    def test_refuses_a_malformed_or_unknown_tenant_id(self, tenant_id):
        with pytest.raises(CommandError):
            run("issue_api_key", tenant_id)

        assert not ApiKey.objects.exists()


class TestTopup:
    def test_credits_through_the_ledger_and_prints_the_new_balance(self, tenant):
        output = run("topup", str(tenant.pk), "--usd", "1.2500")

        assert last_word(output) == "11.2500"
        assert Wallet.objects.get(tenant=tenant).available_micros == 11_250_000
        assert Journal.objects.filter(tenant=tenant, kind=Journal.Kind.TOPUP).count() == 2  # factory + this

    def test_credits_once_per_reference(self, tenant):
        run("topup", str(tenant.pk), "--usd", "1.0000", "--reference", "inv-1")
        output = run("topup", str(tenant.pk), "--usd", "1.0000", "--reference", "inv-1")

        assert "already credited" in output and last_word(output) == "11.0000"
        assert Wallet.objects.get(tenant=tenant).available_micros == 11_000_000

    def test_refuses_a_reference_reused_for_another_amount(self, tenant):
        run("topup", str(tenant.pk), "--usd", "1.0000", "--reference", "inv-1")

        with pytest.raises(CommandError, match="already credited 1.0000"):
            run("topup", str(tenant.pk), "--usd", "2.0000", "--reference", "inv-1")

        assert Wallet.objects.get(tenant=tenant).available_micros == 11_000_000

    @pytest.mark.parametrize("amount", BAD_AMOUNTS)
    def test_refuses_a_bad_amount(self, tenant, amount):
        with pytest.raises(CommandError):
            run("topup", str(tenant.pk), "--usd", amount)

        assert Wallet.objects.get(tenant=tenant).available_micros == 10_000_000

    def test_refuses_an_unknown_tenant(self):
        with pytest.raises(CommandError):
            run("topup", str(uuid.uuid4()), "--usd", "1.0000")


class TestSeedDemo:
    def test_prints_a_working_key_and_funds_the_demo_tenant(self):
        output = run("seed_demo")

        printed = set(re.findall(r"dpp_live_[0-9A-Za-z]{32}_[0-9A-Za-z]{8}", output))
        assert len(printed) == 1
        assert api_key_get_active(raw_key=printed.pop()).tenant.name == "demo"
        assert "/v1/runs" in output
        assert Wallet.objects.get(tenant__name="demo").available_micros == 10_000_000


class TestCheckLedger:
    def test_passes_then_catches_a_wallet_changed_behind_the_ledger(self, tenant):
        run("check_ledger", "--skip-s3")
        Wallet.objects.filter(tenant=tenant).update(available_micros=1)

        with pytest.raises(SystemExit) as exit_:
            run("check_ledger", "--skip-s3")

        assert exit_.value.code == 1
