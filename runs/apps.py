from django.apps import AppConfig
from django.db.models.signals import post_migrate


def _sync_schedule(sender, **kwargs):
    # runs.schedule imports models: it cannot be imported while apps are loading (here).
    from runs.schedule import periodic_jobs_sync

    periodic_jobs_sync()


class RunsConfig(AppConfig):
    name = "runs"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self):
        from runs.packs import packs_all
        from tenants.pack_types import pack_types_source_set

        # Plans validate their allowed_pack_types against this registry (tenants cannot import runs).
        pack_types_source_set(lambda: [pack.pack_type for pack in packs_all()])
        # The periodic jobs live in code; every migrate writes them into the beat schedule.
        post_migrate.connect(_sync_schedule, sender=self, dispatch_uid="runs.sync_periodic_jobs")
        # Metrics: the task signal handlers connect on import; /metrics reads the database
        # gauges through the same function as the admin ops page.
        from dpp.metrics import database_gauges_register
        from runs import metrics
        from runs.ops import ops_figures_now

        metrics.run_labels_precreate()
        database_gauges_register(ops_figures_now)
