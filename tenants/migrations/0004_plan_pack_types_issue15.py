"""allowed_pack_types fails closed (issue 15, item 14).

Before: an empty list meant every pack, and a JSON string was matched as a substring. Existing
rows are rewritten first: an empty list, which meant every pack, becomes the explicit ``["*"]``
(the same access, now written down); a value that is not a list becomes ``[]`` (no pack). Then
the database refuses anything but an array, and the admin validates names against the registry.
"""

from django.db import migrations, models
from django.db.models import F, Func, Value
from django.db.models.lookups import Exact

import tenants.pack_types


def rewrite(apps, schema_editor):
    Plan = apps.get_model("tenants", "Plan")
    for plan in Plan.objects.all():
        value = plan.allowed_pack_types
        if value == []:
            plan.allowed_pack_types = ["*"]
        elif not isinstance(value, list):
            plan.allowed_pack_types = []
        else:
            continue
        plan.save(update_fields=["allowed_pack_types"])


class Migration(migrations.Migration):
    dependencies = [("tenants", "0003_plan_max_webhook_endpoints_issue13")]
    operations = [
        migrations.RunPython(rewrite, migrations.RunPython.noop),
        migrations.AlterField(
            model_name="plan",
            name="allowed_pack_types",
            field=models.JSONField(blank=True, default=list,
                                   validators=[tenants.pack_types.allowed_pack_types_validate]),
        ),
        migrations.AddConstraint(
            model_name="plan",
            constraint=models.CheckConstraint(
                condition=Exact(Func(F("allowed_pack_types"), function="jsonb_typeof", output_field=models.CharField()),
                                Value("array")),
                name="plan_allowed_pack_types_array",
            ),
        ),
    ]
