from billing.models import Wallet


def test_factory_tenant_has_its_topup_in_the_wallet(tenant):
    assert Wallet.objects.get(tenant=tenant).available_micros == 10_000_000
