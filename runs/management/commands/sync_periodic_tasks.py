from django.core.management.base import BaseCommand

from runs.schedule import periodic_jobs_sync


class Command(BaseCommand):
    help = "Write the periodic jobs declared in runs/schedule.py into django-celery-beat's schedule."

    def handle(self, *args, **options):
        for name in periodic_jobs_sync():
            self.stdout.write(f"synced {name}")
