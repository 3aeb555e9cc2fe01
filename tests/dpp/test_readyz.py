"""/health is always 200; /readyz checks PostgreSQL, Redis, SQS and S3, each within a bounded
time, and answers 503 naming what is down."""

import time

import pytest
from django.conf import settings
from django.db.backends.signals import connection_created
from django.test import override_settings

from dpp import health
from dpp.aws import AwsConfig, s3_client, sqs_client

CLOSED_REDIS = "redis://127.0.0.1:1/0"
CLOSED_AWS = AwsConfig(region="us-east-1", sqs_endpoint="http://127.0.0.1:1", s3_endpoint="http://127.0.0.1:1",
                       uses_loopback_credentials=True)


@pytest.fixture
def emulator_resources():
    """The queue and the bucket the checks look for (idempotent on the shared emulator)."""
    prefix = settings.CELERY_BROKER_TRANSPORT_OPTIONS["queue_name_prefix"]
    url = sqs_client().create_queue(QueueName=prefix + settings.DPP_QUEUE_NAME)["QueueUrl"]
    sqs_client().set_queue_attributes(QueueUrl=url, Attributes={"VisibilityTimeout": str(settings.DPP_LEASE_SECONDS)})
    try:
        s3_client().create_bucket(Bucket=settings.DPP_RESULT_BUCKET)
    except s3_client().exceptions.BucketAlreadyOwnedByYou:
        pass


class TestHealth:
    def test_answers_200_with_status_version_and_services(self, client):
        response = client.get("/health")

        assert response.status_code == 200
        body = response.json()
        assert body["status"] == "ok" and body["version"] == settings.DPP_VERSION
        assert body["services"] == {"api": "up"}

    def test_answers_200_even_with_every_dependency_down(self, client):
        with override_settings(REDIS_URL=CLOSED_REDIS, AWS=CLOSED_AWS):
            assert client.get("/health").status_code == 200


@pytest.mark.django_db
@pytest.mark.emulator
class TestReadyz:
    def test_every_dependency_up_is_200(self, client, emulator_resources):
        response = client.get("/readyz")

        assert response.status_code == 200, response.content
        assert response.json()["services"] == {"postgres": "up", "redis": "up", "sqs": "up", "s3": "up"}

    def test_redis_on_a_closed_port_is_a_503_naming_it_quickly(self, client, emulator_resources):
        started = time.monotonic()
        with override_settings(REDIS_URL=CLOSED_REDIS):
            response = client.get("/readyz")

        assert time.monotonic() - started < 2.5
        assert response.status_code == 503
        assert response["Content-Type"] == "application/problem+json"
        body = response.json()
        assert body["type"] == "/problems/service-unavailable" and body["detail"] == "Down: redis"
        assert body["services"]["redis"].startswith("down") and body["services"]["postgres"] == "up"

    def test_sqs_and_s3_on_a_closed_port_are_a_503_naming_them(self, client, emulator_resources):
        with override_settings(AWS=CLOSED_AWS):
            # Clients are built once per process (local work, slow on a busy machine): not timed.
            sqs_client(read_timeout=2), s3_client(read_timeout=2)
            started = time.monotonic()
            response = client.get("/readyz")

        assert time.monotonic() - started < 2.5
        assert response.status_code == 503
        body = response.json()
        assert body["detail"] == "Down: s3, sqs"
        assert body["services"]["sqs"].startswith("down") and body["services"]["s3"].startswith("down")
        assert (body["services"]["postgres"], body["services"]["redis"]) == ("up", "up")

    def test_a_missing_queue_or_bucket_is_down_too(self, client, emulator_resources):
        with override_settings(DPP_QUEUE_NAME="dpp-no-such-queue", DPP_RESULT_BUCKET="dpp-no-such-bucket"):
            response = client.get("/readyz")

        assert response.status_code == 503
        assert response.json()["detail"] == "Down: s3, sqs"

    def test_answers_only_get(self, client):
        assert client.post("/readyz").status_code == 405

    def test_a_bucket_whose_missing_objects_answer_403_is_down_naming_the_permission_with_a_fake_s3(
            self, client, emulator_resources):
        """Without s3:ListBucket, AWS answers 403 for a missing object; moto checks no IAM, so the
        403 is stubbed on the real client the check uses."""
        from botocore.stub import Stubber

        from dpp.health import ABSENT_PROBE_KEY

        stubber = Stubber(s3_client(read_timeout=2))
        stubber.add_response("head_bucket", {}, {"Bucket": settings.DPP_RESULT_BUCKET})
        stubber.add_client_error("head_object", service_error_code="403", service_message="Forbidden",
                                 http_status_code=403,
                                 expected_params={"Bucket": settings.DPP_RESULT_BUCKET, "Key": ABSENT_PROBE_KEY})
        with stubber:
            response = client.get("/readyz")

        assert response.status_code == 503
        assert response.json()["services"]["s3"] == "down: S3ReadPermissionMissing"
        stubber.assert_no_pending_responses()

    def test_a_predefined_queue_url_is_checked_without_looking_the_name_up(self, client, emulator_resources):
        prefix = settings.CELERY_BROKER_TRANSPORT_OPTIONS["queue_name_prefix"]
        url = sqs_client().get_queue_url(QueueName=prefix + settings.DPP_QUEUE_NAME)["QueueUrl"]
        with override_settings(DPP_QUEUE_URL=url, DPP_QUEUE_NAME="a-name-that-does-not-exist"):
            assert client.get("/readyz").json()["services"]["sqs"] == "up"
        with override_settings(DPP_QUEUE_URL=url + "-gone"):
            assert client.get("/readyz").json()["services"]["sqs"].startswith("down")

    def test_a_queue_whose_visibility_is_not_the_lease_is_a_503_naming_both(self, client, emulator_resources):
        prefix = settings.CELERY_BROKER_TRANSPORT_OPTIONS["queue_name_prefix"]
        url = sqs_client().create_queue(QueueName=f"{prefix}dpp-short-visibility",
                                        Attributes={"VisibilityTimeout": "30"})["QueueUrl"]
        assert url
        with override_settings(DPP_QUEUE_NAME="dpp-short-visibility", DPP_LEASE_SECONDS=120):
            response = client.get("/readyz")

        assert response.status_code == 503
        body = response.json()
        assert body["detail"] == "Down: sqs"
        assert body["services"]["sqs"] == "down: visibility timeout 30 s, lease 120 s"


@pytest.mark.django_db
@pytest.mark.emulator
class TestReadyzIsCheapToHammer:
    def test_one_check_per_cache_window_whatever_the_number_of_calls(self, client, emulator_resources, monkeypatch):
        calls = []
        real = health.CHECKS["redis"]
        monkeypatch.setitem(health.CHECKS, "redis", lambda: calls.append(1) or real())  # a spy on the real check
        with override_settings(DPP_READYZ_CACHE_SECONDS=60):
            answers = {client.get("/readyz").status_code for _ in range(25)}
        assert answers == {200}
        assert len(calls) == 1

    def test_the_answer_is_checked_again_after_the_window(self, client, emulator_resources, monkeypatch):
        calls = []
        real = health.CHECKS["redis"]
        monkeypatch.setitem(health.CHECKS, "redis", lambda: calls.append(1) or real())
        with override_settings(DPP_READYZ_CACHE_SECONDS=0.2):
            client.get("/readyz")
            time.sleep(0.3)
            client.get("/readyz")
        assert len(calls) == 2

    def test_postgres_is_checked_on_the_pooled_connection_not_a_new_one(self, client, emulator_resources):
        client.get("/readyz")  # the request's connection exists from here on
        opened = []
        connection_created.connect(lambda **kwargs: opened.append(1), weak=False, dispatch_uid="readyz-spy")
        try:
            with override_settings(DPP_READYZ_CACHE_SECONDS=0):
                answers = {client.get("/readyz").status_code for _ in range(5)}
        finally:
            connection_created.disconnect(dispatch_uid="readyz-spy")
        assert answers == {200}
        assert opened == []
