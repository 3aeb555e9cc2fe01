"""Flower on an SQS platform: worker events travel on Redis (dpp/worker_steps.py), so Flower lists
the workers and the tasks while the tasks themselves stay on SQS."""

from __future__ import annotations

import json
import urllib.request

import pytest

from runs.models import Run
from tenants.services import api_key_issue
from tests.drills.platform import BIN, Platform, free_port
from tests.factories import TenantFactory
from tests.runs.helpers import run_body
from tests.workers import wait_until

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow, pytest.mark.emulator]


def get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=5) as response:
        return response.read().decode()


@pytest.fixture
def platform():
    platform = Platform().start(workers=1, beats=0)
    yield platform
    platform.stop()


def test_flower_lists_the_workers_and_the_tasks_of_an_sqs_platform(platform):
    port = free_port()
    platform.spawn("flower", [str(BIN / "celery"), "-A", "dpp", "flower", "--address=127.0.0.1", f"--port={port}"],
                   env={"DPP_CELERY_BROKER_URL": platform.env["REDIS_URL"], "FLOWER_UNAUTHENTICATED_API": "true"})
    base = f"http://127.0.0.1:{port}"
    wait_until(lambda: _answers(base), timeout=30, message="flower")
    tenant = TenantFactory(balance_micros=1_000_000)
    key = api_key_issue(tenant=tenant).plaintext
    status, answer, _ = platform.submit(key, run_body("0.0500"))
    assert status == 202
    wait_until(lambda: Run.objects.get(pk=answer["run_id"]).status == "COMPLETED", timeout=60, message="the run")

    def task_listed():
        # The run commits inside the task; task-succeeded reaches Flower a moment later.
        tasks = json.loads(get(f"{base}/api/tasks"))
        return [t for t in tasks.values() if answer["run_id"] in (t.get("kwargs") or "") and t.get("state") == "SUCCESS"]

    listed = wait_until(task_listed, timeout=30, message="the task in flower")
    assert listed[0]["name"] == "runs.tasks.run_execute_task" and listed[0]["state"] == "SUCCESS"
    worker_name = f"worker-0-{platform.tag}@"
    wait_until(lambda: worker_name in get(f"{base}/workers"), timeout=30, message="the worker in flower")
    metrics = get(f"{base}/metrics")
    assert 'flower_events_total{task="runs.tasks.run_execute_task",type="task-succeeded"' in metrics


def _answers(base: str) -> bool:
    try:
        return bool(get(f"{base}/healthcheck"))
    except OSError:
        return False
