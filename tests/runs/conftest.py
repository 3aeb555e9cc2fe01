"""Fixtures shared by the run tests."""

import pytest


@pytest.fixture
def no_broker(monkeypatch):
    """Submissions do not wake the relay (no relay runs here; the relay is tested on its own)."""
    monkeypatch.setattr("runs.services.submit.relay_wake", lambda: None)


@pytest.fixture
def result_bucket():
    """The S3 bucket of results exists on the emulator."""
    from django.conf import settings

    from dpp.aws import s3_client

    client = s3_client()
    try:
        client.create_bucket(Bucket=settings.DPP_RESULT_BUCKET)
    except client.exceptions.BucketAlreadyOwnedByYou:
        pass
    return settings.DPP_RESULT_BUCKET
