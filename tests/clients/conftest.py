"""The real stack for the client tests: the API served by pytest-django's ``live_server`` (a real
port, in a thread), a real ``celery worker`` process on a queue of its own on the emulator, the
test PostgreSQL database and S3 on the emulator."""

from __future__ import annotations

import uuid

import pytest
from django.test import override_settings

from tenants.services import api_key_issue
from tests.factories import TenantFactory
from tests.workers import TEST_PACKS, WorkerProcess

INITIAL_MICROS = 10_000_000


def decision_inputs(question: str = "Which database for the ledger?") -> dict:
    return {
        "question": question,
        "options": [{"id": "pg", "label": "PostgreSQL", "scores": {"cost": 9, "ops": 7}},
                    {"id": "my", "label": "MySQL", "scores": {"cost": 8, "ops": 6}}],
        "criteria": [{"id": "cost", "weight": 0.6, "direction": "benefit"},
                     {"id": "ops", "weight": 0.4, "direction": "benefit"}],
    }


@pytest.fixture
def queue_name():
    return f"dpp-clients-{uuid.uuid4().hex[:8]}"


@pytest.fixture(autouse=True)
def _stack_settings(queue_name):
    """The live server runs in this process, so it publishes to this test's queue."""
    with override_settings(DPP_QUEUE_NAME=queue_name, DPP_PACKS=TEST_PACKS.split(",")):
        yield


@pytest.fixture
def worker(transactional_db, queue_name):
    """A real worker on this test's queue, stopped before the database is flushed (a worker busy
    during the flush would deadlock it). Tests without it leave their runs QUEUED."""
    process = WorkerProcess(queue_name=queue_name).start()
    yield process
    process.stop()


@pytest.fixture
def funded(transactional_db):
    """A tenant of the unlimited plan with $10 and its API key."""
    tenant = TenantFactory(balance_micros=INITIAL_MICROS)
    return tenant, api_key_issue(tenant=tenant, label="client tests").plaintext
