from django.db import migrations

# Every wallet counts its tenant's runs whose money is RESERVED (QUEUED or PROCESSING, not
# waiting for an operator). Run with the API stopped: a submission between this and the new
# code would not be counted (check_ledger would say so).
FILL = """
UPDATE billing_wallet w
   SET active_runs = COALESCE((SELECT COUNT(*) FROM runs_run r
                                WHERE r.tenant_id = w.tenant_id AND r.money_state = 'RESERVED'), 0)
"""


class Migration(migrations.Migration):
    dependencies = [
        ("runs", "0003_run_webhook_issue13"),
        ("billing", "0003_wallet_active_runs_issue11"),
    ]

    operations = [migrations.RunSQL(FILL, migrations.RunSQL.noop)]
