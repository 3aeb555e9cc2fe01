from django.db import migrations, models


class Migration(migrations.Migration):
    """Wallet.active_runs: the exact count of the tenant's runs holding a concurrency slot. It is
    filled from the runs by runs' migration 0003 (billing does not know runs)."""

    dependencies = [("billing", "0002_ledger_guards")]

    operations = [
        migrations.AddField(
            model_name="wallet",
            name="active_runs",
            field=models.IntegerField(default=0, help_text="Runs holding a concurrency slot (money RESERVED)."),
        ),
        migrations.AddConstraint(
            model_name="wallet",
            constraint=models.CheckConstraint(condition=models.Q(active_runs__gte=0),
                                              name="wallet_active_runs_nonnegative"),
        ),
    ]
