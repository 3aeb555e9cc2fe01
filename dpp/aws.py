"""AWS endpoints and credentials, shared by boto3 (S3, SQS health checks) and kombu (the broker).

boto3 and kombu both read the standard variables (AWS_ENDPOINT_URL_SQS, AWS_ENDPOINT_URL_S3,
AWS_DEFAULT_REGION, AWS_ACCESS_KEY_ID, ...), so the local defaults are written into the process
environment once, here, and every client in the process agrees. Production leaves the endpoint
variables unset and uses the normal AWS credential chain.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import lru_cache

from django.conf import settings

from dpp.env import is_loopback_url

LOCAL_EMULATOR_URL = "http://127.0.0.1:5000"
# boto3 client timeouts: every external call has one.
CONNECT_TIMEOUT_SECONDS = 2
READ_TIMEOUT_SECONDS = 10
TOTAL_MAX_ATTEMPTS = 2  # the first call and one retry


@dataclass(frozen=True)
class AwsConfig:
    region: str
    sqs_endpoint: str | None
    s3_endpoint: str | None
    uses_loopback_credentials: bool


def configure_aws_environment(*, local: bool) -> AwsConfig:
    generic = os.environ.get("AWS_ENDPOINT_URL") or None
    if local and generic is None:
        os.environ.setdefault("AWS_ENDPOINT_URL_SQS", LOCAL_EMULATOR_URL)
        os.environ.setdefault("AWS_ENDPOINT_URL_S3", LOCAL_EMULATOR_URL)
    sqs = os.environ.get("AWS_ENDPOINT_URL_SQS") or generic
    s3 = os.environ.get("AWS_ENDPOINT_URL_S3") or generic
    region = os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    loopback = False
    # The emulator's dummy credentials are used only when every endpoint is on loopback: never
    # against a real AWS endpoint.
    if sqs and s3 and is_loopback_url(sqs) and is_loopback_url(s3):
        if not os.environ.get("AWS_ACCESS_KEY_ID"):
            os.environ["AWS_ACCESS_KEY_ID"] = "test"
            os.environ["AWS_SECRET_ACCESS_KEY"] = "test"
            loopback = True
    return AwsConfig(region=region, sqs_endpoint=sqs, s3_endpoint=s3, uses_loopback_credentials=loopback)


def client_config_options(*, read_timeout: int = READ_TIMEOUT_SECONDS) -> dict:
    """botocore Config arguments shared by our clients and kombu's (transport option client-config)."""
    return {
        "connect_timeout": CONNECT_TIMEOUT_SECONDS,
        "read_timeout": read_timeout,
        "retries": {"total_max_attempts": TOTAL_MAX_ATTEMPTS, "mode": "standard"},
    }


@lru_cache(maxsize=8)
def _client(service: str, endpoint: str | None, region: str, read_timeout: int):
    # boto3 loads on the first client, not with this module: settings.py imports this module,
    # and most processes (manage.py commands, the API's hot path) never build a client.
    import boto3
    from botocore.config import Config

    config = Config(
        **client_config_options(read_timeout=read_timeout),
        signature_version="s3v4" if service == "s3" else None,
        s3={"addressing_style": "path"} if service == "s3" else None,
    )
    return boto3.session.Session().client(service, endpoint_url=endpoint, region_name=region, config=config)


def s3_client(*, read_timeout: int = READ_TIMEOUT_SECONDS):
    return _client("s3", settings.AWS.s3_endpoint, settings.AWS.region, read_timeout)


def s3_presign_client():
    """The S3 client presigned URLs are signed with: DPP_S3_PUBLIC_ENDPOINT_URL when clients reach
    S3 by another name than the workers (signing is local: this client makes no network call)."""
    from django.conf import settings

    endpoint = settings.DPP_S3_PUBLIC_ENDPOINT_URL or settings.AWS.s3_endpoint
    return _client("s3", endpoint, settings.AWS.region, READ_TIMEOUT_SECONDS)


def sqs_client(*, read_timeout: int = READ_TIMEOUT_SECONDS):
    return _client("sqs", settings.AWS.sqs_endpoint, settings.AWS.region, read_timeout)


def run_queue_url() -> str:
    """The run queue's URL, for our own SQS calls (readiness, queue depth). DPP_QUEUE_URL when the
    queues are predefined: the README's IAM policy then grants no sqs:GetQueueUrl. Otherwise looked
    up by name once per process (a failed lookup raises and is not cached)."""
    if settings.DPP_QUEUE_URL:
        return settings.DPP_QUEUE_URL
    prefix = settings.CELERY_BROKER_TRANSPORT_OPTIONS.get("queue_name_prefix", "")
    return _queue_url_by_name(f"{prefix}{settings.DPP_QUEUE_NAME}", settings.AWS.sqs_endpoint, settings.AWS.region)


@lru_cache(maxsize=8)
def _queue_url_by_name(name: str, endpoint: str | None, region: str) -> str:
    return _client("sqs", endpoint, region, 2).get_queue_url(QueueName=name)["QueueUrl"]
