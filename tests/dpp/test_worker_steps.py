"""dpp/worker_steps.py with a real platform (tests/drills/platform.py): a worker whose events Redis
does not answer at start still consumes runs, and Celery's "received" line carries the run's
trace id."""

from __future__ import annotations

import json

import pytest

from runs.models import Run
from tenants.services import api_key_issue
from tests.drills.platform import Platform, free_port
from tests.factories import TenantFactory
from tests.runs.helpers import run_body
from tests.workers import wait_until

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow, pytest.mark.emulator]


@pytest.fixture
def platform():
    platform = Platform()
    try:  # a start that fails half-way still stops what it started
        platform.start(workers=1, beats=0)
        platform.workers[0].stop()  # (started so that start() waits for the API): the test starts its own
        yield platform
    finally:
        platform.stop()


def test_a_worker_started_while_the_events_redis_is_down_consumes_runs_with_traced_log_lines(platform):
    closed = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens there
    worker = platform.start_worker(DPP_EVENTS_URL=closed)
    key = api_key_issue(tenant=TenantFactory(balance_micros=1_000_000), label="events").plaintext

    status, answer, _ = platform.submit(key, run_body("0.0500"))
    assert status == 202, answer
    run_id = answer["run_id"]
    wait_until(lambda: Run.objects.get(pk=run_id).status == Run.Status.COMPLETED, timeout=60,
               message="the run on a worker without its events Redis")

    lines = [json.loads(line) for line in worker.log_text().splitlines() if line.startswith("{")]
    assert any("events Redis (DPP_EVENTS_URL) does not answer" in line["message"] for line in lines)
    trace_id = Run.objects.get(pk=run_id).trace_id
    received = [line for line in lines if line["message"].endswith(" received") and run_id in json.dumps(line)]
    assert received, "no 'received' line for the run"
    assert received[0]["trace_id"] == trace_id and received[0]["request_id"]
