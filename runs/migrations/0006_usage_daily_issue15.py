"""The daily usage aggregate (issue 15, item 16), kept by a deferred constraint trigger on
runs_run, and backfilled from the existing runs and ledger. See runs.models.UsageDaily."""

import django.db.models.deletion
from django.db import migrations, models

TRIGGER = """
CREATE FUNCTION runs_usage_daily_apply() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP IN ('UPDATE', 'DELETE') THEN
        UPDATE runs_usagedaily
           SET runs_count = runs_count - 1,
               success_count = success_count - (OLD.status = 'COMPLETED')::int,
               fail_count = fail_count - (OLD.status = 'FAILED')::int,
               canceled_count = canceled_count - (OLD.status = 'CANCELED')::int,
               cost_micros = cost_micros - CASE WHEN OLD.money_state IN ('SETTLED', 'REFUNDED')
                                                THEN COALESCE(OLD.actual_cost_micros, 0) ELSE 0 END,
               reserved_micros = reserved_micros - OLD.reserved_micros
         WHERE tenant_id = OLD.tenant_id AND usage_date = (OLD.created_at AT TIME ZONE 'UTC')::date;
    END IF;
    IF TG_OP IN ('INSERT', 'UPDATE') THEN
        INSERT INTO runs_usagedaily AS u (tenant_id, usage_date, runs_count, success_count, fail_count,
                                          canceled_count, cost_micros, reserved_micros)
        VALUES (NEW.tenant_id, (NEW.created_at AT TIME ZONE 'UTC')::date, 1, (NEW.status = 'COMPLETED')::int,
                (NEW.status = 'FAILED')::int, (NEW.status = 'CANCELED')::int,
                CASE WHEN NEW.money_state IN ('SETTLED', 'REFUNDED') THEN COALESCE(NEW.actual_cost_micros, 0)
                     ELSE 0 END,
                NEW.reserved_micros)
        ON CONFLICT (tenant_id, usage_date) DO UPDATE
           SET runs_count = u.runs_count + EXCLUDED.runs_count,
               success_count = u.success_count + EXCLUDED.success_count,
               fail_count = u.fail_count + EXCLUDED.fail_count,
               canceled_count = u.canceled_count + EXCLUDED.canceled_count,
               cost_micros = u.cost_micros + EXCLUDED.cost_micros,
               reserved_micros = u.reserved_micros + EXCLUDED.reserved_micros;
    END IF;
    RETURN NULL;
END
$$;

-- Only changes that move a run's contribution fire it (a heartbeat or a lease claim does not).
CREATE CONSTRAINT TRIGGER runs_usage_daily_insert AFTER INSERT ON runs_run
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION runs_usage_daily_apply();
CREATE CONSTRAINT TRIGGER runs_usage_daily_update
    AFTER UPDATE OF status, money_state, actual_cost_micros, reserved_micros, created_at, tenant_id ON runs_run
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW
    WHEN (OLD.status IS DISTINCT FROM NEW.status OR OLD.money_state IS DISTINCT FROM NEW.money_state
          OR OLD.actual_cost_micros IS DISTINCT FROM NEW.actual_cost_micros
          OR OLD.reserved_micros IS DISTINCT FROM NEW.reserved_micros
          OR OLD.created_at IS DISTINCT FROM NEW.created_at OR OLD.tenant_id IS DISTINCT FROM NEW.tenant_id)
    EXECUTE FUNCTION runs_usage_daily_apply();
CREATE CONSTRAINT TRIGGER runs_usage_daily_delete AFTER DELETE ON runs_run
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION runs_usage_daily_apply();

INSERT INTO runs_usagedaily (tenant_id, usage_date, runs_count, success_count, fail_count, canceled_count,
                             cost_micros, reserved_micros)
SELECT tenant_id, (created_at AT TIME ZONE 'UTC')::date, COUNT(*), COUNT(*) FILTER (WHERE status = 'COMPLETED'),
       COUNT(*) FILTER (WHERE status = 'FAILED'), COUNT(*) FILTER (WHERE status = 'CANCELED'),
       COALESCE(SUM(actual_cost_micros) FILTER (WHERE money_state IN ('SETTLED', 'REFUNDED')), 0),
       SUM(reserved_micros)
  FROM runs_run GROUP BY 1, 2;
"""

REVERSE = """
DROP TRIGGER runs_usage_daily_delete ON runs_run;
DROP TRIGGER runs_usage_daily_update ON runs_run;
DROP TRIGGER runs_usage_daily_insert ON runs_run;
DROP FUNCTION runs_usage_daily_apply();
"""


class Migration(migrations.Migration):
    dependencies = [("runs", "0005_run_cancel"), ("tenants", "0001_initial")]
    operations = [
        migrations.CreateModel(
            name="UsageDaily",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("usage_date", models.DateField()),
                ("runs_count", models.BigIntegerField(default=0)),
                ("success_count", models.BigIntegerField(default=0)),
                ("fail_count", models.BigIntegerField(default=0)),
                ("canceled_count", models.BigIntegerField(default=0)),
                ("cost_micros", models.BigIntegerField(default=0)),
                ("reserved_micros", models.BigIntegerField(default=0)),
                ("tenant", models.ForeignKey(on_delete=django.db.models.deletion.PROTECT, related_name="+",
                                             to="tenants.tenant")),
            ],
            options={"constraints": [models.UniqueConstraint(fields=("tenant", "usage_date"),
                                                             name="usage_daily_tenant_date")]},
        ),
        migrations.RunSQL(TRIGGER, REVERSE),
    ]
