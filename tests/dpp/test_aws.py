"""dpp/aws.py: every boto3 client has short timeouts, and presigned result URLs are built for
DPP_S3_PUBLIC_ENDPOINT_URL when clients reach S3 by another name than the workers."""

from __future__ import annotations

from django.conf import settings
from django.test import override_settings

from dpp.aws import CONNECT_TIMEOUT_SECONDS, s3_client, s3_presign_client, sqs_client
from runs.storage import presigned_url


def test_every_client_has_a_short_connect_timeout_and_few_retries():
    for client in (s3_client(), sqs_client(), s3_presign_client()):
        config = client.meta.config
        assert config.connect_timeout == CONNECT_TIMEOUT_SECONDS
        assert config.read_timeout <= 15 and config.retries["total_max_attempts"] == 2  # one retry


def test_the_broker_clients_get_the_same_timeouts_with_a_read_above_the_long_poll():
    options = settings.CELERY_BROKER_TRANSPORT_OPTIONS
    assert options["client-config"]["connect_timeout"] == CONNECT_TIMEOUT_SECONDS
    assert options["client-config"]["read_timeout"] > options["wait_time_seconds"]
    assert options["client-config"]["retries"]["total_max_attempts"] == 2


def test_presigned_urls_use_the_public_endpoint_when_one_is_set():
    with override_settings(DPP_S3_PUBLIC_ENDPOINT_URL="http://127.0.0.1:5999"):
        url, _ = presigned_url(bucket="dpp-results", key="runs/abc.json")

    assert url.startswith("http://127.0.0.1:5999/dpp-results/runs/abc.json?")
    assert "X-Amz-Signature=" in url


def test_presigned_urls_use_the_s3_endpoint_otherwise():
    url, _ = presigned_url(bucket="dpp-results", key="runs/abc.json")

    assert url.startswith(f"{settings.AWS.s3_endpoint}/dpp-results/runs/abc.json?")


def test_the_run_queue_url_is_dpp_queue_url_when_set_and_costs_no_sqs_call():
    """Predefined queues: the README's IAM policy grants no sqs:GetQueueUrl, so none is made."""
    from botocore.stub import Stubber

    from dpp.aws import run_queue_url

    with Stubber(sqs_client(read_timeout=2)) as stubber, \
            override_settings(DPP_QUEUE_URL="https://sqs.eu-west-1.amazonaws.com/123456789012/dpp-runs"):
        assert run_queue_url() == "https://sqs.eu-west-1.amazonaws.com/123456789012/dpp-runs"
    stubber.assert_no_pending_responses()


def test_the_run_queue_url_is_looked_up_by_name_once_per_process():
    from uuid import uuid4

    from botocore.stub import Stubber

    from dpp.aws import run_queue_url

    name = f"dpp-lookup-{uuid4().hex[:8]}"
    prefix = settings.CELERY_BROKER_TRANSPORT_OPTIONS.get("queue_name_prefix", "")
    url = f"http://127.0.0.1:5000/000000000000/{prefix}{name}"
    with Stubber(sqs_client(read_timeout=2)) as stubber, override_settings(DPP_QUEUE_URL="", DPP_QUEUE_NAME=name):
        stubber.add_response("get_queue_url", {"QueueUrl": url}, {"QueueName": prefix + name})
        assert run_queue_url() == url
        assert run_queue_url() == url  # no second call: the stubber would refuse it
    stubber.assert_no_pending_responses()
