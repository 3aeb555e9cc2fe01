"""The Celery application. Tasks travel on SQS; there is no result backend."""

from __future__ import annotations

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "dpp.settings")

app = Celery("dpp")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
