"""/health is always 200; /readyz checks every dependency within its timeout."""

import time

import pytest
from django.conf import settings
from django.test import override_settings

from dpp.aws import AwsConfig, s3_client, sqs_client


@pytest.fixture
def emulator_resources():
    prefix = settings.CELERY_BROKER_TRANSPORT_OPTIONS["queue_name_prefix"]
    sqs_client().create_queue(QueueName=f"{prefix}{settings.DPP_QUEUE_NAME}")
    try:
        s3_client().create_bucket(Bucket=settings.DPP_RESULT_BUCKET)
    except s3_client().exceptions.BucketAlreadyOwnedByYou:
        pass


def test_health_is_always_200(client):
    body = client.get("/health").json()
    assert body["status"] == "ok" and body["version"] and body["services"] == {"api": "up"}


@pytest.mark.django_db
@pytest.mark.emulator
class TestReadyz:
    def test_every_dependency_up_is_200(self, client, emulator_resources):
        response = client.get("/readyz")
        assert response.status_code == 200, response.content
        assert response.json()["services"] == {"postgres": "up", "redis": "up", "sqs": "up", "s3": "up"}

    def test_redis_on_a_closed_port_is_a_503_naming_it(self, client, emulator_resources):
        started = time.monotonic()
        with override_settings(REDIS_URL="redis://127.0.0.1:1/0"):
            response = client.get("/readyz")
        assert time.monotonic() - started < 3
        assert response.status_code == 503
        assert response["Content-Type"] == "application/problem+json"
        assert response.json()["detail"] == "Down: redis"

    def test_sqs_and_s3_on_a_closed_port_are_named(self, client, emulator_resources):
        closed = AwsConfig(region="us-east-1", sqs_endpoint="http://127.0.0.1:1", s3_endpoint="http://127.0.0.1:1",
                           uses_loopback_credentials=True)
        with override_settings(AWS=closed):
            response = client.get("/readyz")
        assert response.status_code == 503
        assert response.json()["detail"] == "Down: s3, sqs"
        assert response.json()["services"]["postgres"] == "up"
