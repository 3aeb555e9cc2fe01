"""Drill: SQS disappears for 15 s under a running worker (the platform's own emulator is stopped
and started again). The worker survives on the same process, and a run submitted afterwards
completes on it. With kombu 5.7.0's transport unpatched, the failed receive ends in
"'list' object has no attribute 'get'" and the worker exits or stops polling (dpp/sqs_transport.py)."""

from __future__ import annotations

import time

import pytest

from runs.models import Run
from tenants.services import api_key_issue
from tests.drills.platform import Platform
from tests.factories import TenantFactory
from tests.runs.helpers import run_body
from tests.workers import wait_until

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow, pytest.mark.emulator]

OUTAGE_SECONDS = 15


@pytest.fixture
def platform():
    platform = Platform()
    try:  # a start that fails half-way still stops what it started
        yield platform.start(workers=1, beats=0)
    finally:
        platform.stop()


def test_a_worker_survives_a_15_s_sqs_outage_and_runs_the_next_run_on_the_same_process(platform):
    worker = platform.workers[0]
    pid = worker.process.pid
    key = api_key_issue(tenant=TenantFactory(balance_micros=1_000_000), label="drill").plaintext
    before = submit_and_complete(platform, key)
    assert before in worker.log_text()

    platform.stop_moto()
    time.sleep(OUTAGE_SECONDS)
    assert worker.alive, worker.log_text()[-3000:]
    platform.start_moto()  # a new, empty emulator: `emulator.py ensure` creates the queue and bucket again

    after = submit_and_complete(platform, key)

    assert worker.alive and worker.process.pid == pid and platform.workers[0] is worker
    assert platform.restarts == 0
    log = worker.log_text()
    assert after in log  # this worker process executed it
    assert "SQS receive failed" in log  # the outage went through the fixed receive path
    assert "Unrecoverable error" not in log and "object has no attribute 'get'" not in log


def submit_and_complete(platform: Platform, key: str) -> str:
    status, answer, _ = platform.submit(key, run_body("0.0500"))
    assert status == 202, answer
    run_id = answer["run_id"]
    wait_until(lambda: Run.objects.get(pk=run_id).status == Run.Status.COMPLETED, timeout=60,
               message=f"run {run_id} to complete")
    return run_id
