# Issue 12: a run can be CANCELED (POST /v1/runs/{id}/cancel). Choices only: no schema change.

from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('runs', '0004_wallet_active_runs_fill_issue11'),
    ]

    operations = [
        migrations.AlterField(
            model_name='run',
            name='status',
            field=models.CharField(choices=[('QUEUED', 'Queued'), ('PROCESSING', 'Processing'), ('COMPLETED', 'Completed'), ('FAILED', 'Failed'), ('CANCELED', 'Canceled')], default='QUEUED', max_length=16),
        ),
    ]
