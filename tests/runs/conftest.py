"""Fixtures shared by the run tests."""

import pytest


@pytest.fixture
def no_broker(monkeypatch):
    """Submissions do not wake the relay (no relay runs here; the relay is tested on its own)."""
    monkeypatch.setattr("runs.services.submit.relay_wake", lambda: None)


@pytest.fixture
def enqueued(monkeypatch):
    """Delivery tasks are recorded instead of sent to the broker (the real send is tested with a worker)."""
    sent: list = []

    def record(*, delivery_ids, now=None):
        sent.extend(delivery_ids)
        return len(delivery_ids)

    monkeypatch.setattr("runs.webhooks.services.webhook_deliveries_enqueue", record)
    return sent


@pytest.fixture
def receiver():
    """A real webhook receiver on 127.0.0.1 (tests/runs/webhooks/receiver.py)."""
    from tests.runs.webhooks.receiver import Receiver

    server = Receiver()
    yield server
    server.close()


@pytest.fixture
def local_receivers(settings):
    """Deliveries may reach 127.0.0.0/8 (what DPP_WEBHOOK_ALLOW_PRIVATE_CIDRS does outside
    production), with a short retry schedule, timeout and claim."""
    settings.DPP_WEBHOOK_ALLOW_PRIVATE_CIDRS = ["127.0.0.0/8"]
    settings.DPP_WEBHOOK_RETRY_SCHEDULE = [1, 1, 1]
    settings.DPP_WEBHOOK_TIMEOUT_SECONDS = 3
    settings.DPP_WEBHOOK_CLAIM_SECONDS = 5
    return settings
