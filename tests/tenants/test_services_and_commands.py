"""Tenants, plans with history, and the management commands."""

import pytest
from django.core.management import CommandError, call_command

from billing.models import Journal, Wallet
from tenants.models import ApiKey, PlanAssignment, Tenant
from tenants.services import tenant_assign_plan, tenant_create

pytestmark = pytest.mark.django_db


def last_word(output: str) -> str:
    return output.strip().split()[-1]


class TestTenantCreate:
    def test_creates_the_wallet_and_the_first_plan_assignment(self):
        tenant = tenant_create(name="acme", plan_code="premium")
        assert Wallet.objects.get(tenant=tenant).available_micros == 0
        assert PlanAssignment.objects.get(tenant=tenant).plan.code == "premium"

    def test_a_plan_change_is_recorded_with_its_predecessor(self):
        tenant = tenant_create(name="acme", plan_code="basic")
        tenant_assign_plan(tenant=tenant, plan_code="premium", reason="upgrade")
        history = list(PlanAssignment.objects.filter(tenant=tenant).values_list("previous_plan__code", "plan__code"))
        assert history == [(None, "basic"), ("basic", "premium")]
        assert Tenant.objects.get(pk=tenant.pk).plan.code == "premium"


class TestCommands:
    def test_create_tenant_prints_the_id_last_and_tops_up_through_the_ledger(self, capsys):
        call_command("create_tenant", "Acme", "--plan", "premium", "--topup-usd", "12.5000")
        tenant = Tenant.objects.get(pk=last_word(capsys.readouterr().out))
        assert tenant.plan.code == "premium"
        assert Wallet.objects.get(tenant=tenant).available_micros == 12_500_000
        assert Journal.objects.filter(tenant=tenant, kind="TOPUP").count() == 1

    @pytest.mark.parametrize("amount", ["-1", "1e3", "0.00001", "abc", "0", "10000.0001"])
    def test_create_tenant_refuses_bad_amounts_and_creates_nothing(self, amount):
        with pytest.raises(CommandError):
            call_command("create_tenant", "Acme", "--topup-usd", amount)
        assert not Tenant.objects.filter(name="Acme").exists()

    def test_create_tenant_refuses_an_unknown_plan(self):
        with pytest.raises(CommandError):
            call_command("create_tenant", "Acme", "--plan", "gold")

    def test_issue_api_key_prints_a_working_key_last(self, tenant, capsys, api_client):
        call_command("issue_api_key", str(tenant.pk), "--label", "cli")
        key = last_word(capsys.readouterr().out)
        assert ApiKey.objects.get(tenant=tenant).label == "cli"
        assert api_client.get("/v1/balance", HTTP_AUTHORIZATION=f"Bearer {key}").status_code == 200

    @pytest.mark.parametrize("tenant_id", ["nope", "00000000-0000-0000-0000-000000000000"])
    def test_issue_api_key_refuses_unknown_tenants(self, tenant_id):
        with pytest.raises(CommandError):
            call_command("issue_api_key", tenant_id)

    def test_topup_credits_once_per_reference(self, tenant, capsys):
        call_command("topup", str(tenant.pk), "--usd", "1.0000", "--reference", "inv-1")
        call_command("topup", str(tenant.pk), "--usd", "1.0000", "--reference", "inv-1")
        assert "11.0000" in capsys.readouterr().out
        assert Wallet.objects.get(tenant=tenant).available_micros == 11_000_000

    def test_check_ledger_passes_then_catches_a_corrupted_wallet(self, tenant, capsys):
        call_command("check_ledger", "--skip-s3")
        assert "ledger OK" in capsys.readouterr().out
        Wallet.objects.filter(tenant=tenant).update(available_micros=1)  # corruption behind the ledger's back
        with pytest.raises(SystemExit) as exit_:
            call_command("check_ledger", "--skip-s3")
        assert exit_.value.code == 1
        report = capsys.readouterr().out
        assert "wallets equal their ledger accounts" in report and str(tenant.pk) in report

    def test_seed_demo_prints_a_key_and_a_curl_command(self, capsys):
        call_command("seed_demo")
        output = capsys.readouterr().out
        assert "curl -s -X POST http://127.0.0.1:" in output and "Idempotency-Key: demo-" in output
        assert Wallet.objects.get(tenant__name="demo").available_micros == 10_000_000
