"""Result storage in S3: the envelope object, its settlement receipt (object metadata), and
presigned download URLs. Every call has a timeout (dpp/aws.py); none runs inside a transaction."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from botocore.exceptions import ClientError
from django.conf import settings
from django.utils import timezone

from dpp.aws import s3_client, s3_presign_client

RECEIPT_COST = "actual-cost-usd-micros"
RECEIPT_TOKEN = "finalize-token"
RECEIPT_SHA256 = "sha256"


@dataclass(frozen=True)
class Receipt:
    actual_cost_micros: int | None
    finalize_token: str | None
    sha256: str | None


def envelope_put(*, bucket: str, key: str, body: bytes, sha256: str, actual_cost_micros: int, finalize_token) -> None:
    s3_client().put_object(
        Bucket=bucket, Key=key, Body=body, ContentType="application/json",
        Metadata={RECEIPT_COST: str(actual_cost_micros), RECEIPT_TOKEN: str(finalize_token), RECEIPT_SHA256: sha256},
    )


def receipt_get(*, bucket: str, key: str) -> Receipt | None:
    """The settlement receipt of an object, or None if there is no object."""
    try:
        head = s3_client().head_object(Bucket=bucket, Key=key)
    except ClientError as error:
        if error.response.get("Error", {}).get("Code") in {"404", "NoSuchKey", "NotFound"}:
            return None
        raise
    meta = head.get("Metadata", {})
    raw_cost = meta.get(RECEIPT_COST)
    try:
        cost = int(raw_cost) if raw_cost is not None else None
    except ValueError:
        cost = None
    return Receipt(actual_cost_micros=cost, finalize_token=meta.get(RECEIPT_TOKEN), sha256=meta.get(RECEIPT_SHA256))


def envelopes_delete(*, bucket: str, keys: list[str]) -> set[str]:
    """Delete up to 1,000 objects in one request; returns the keys S3 refused to delete (a key
    that does not exist counts as deleted)."""
    if not keys:
        return set()
    answer = s3_client().delete_objects(
        Bucket=bucket, Delete={"Objects": [{"Key": key} for key in keys], "Quiet": True}
    )
    return {error["Key"] for error in answer.get("Errors", [])}


def presigned_url(*, bucket: str, key: str, now: datetime | None = None) -> tuple[str, datetime]:
    """A GET URL valid DPP_RESULT_URL_SECONDS (signed locally: no network call)."""
    seconds = settings.DPP_RESULT_URL_SECONDS
    url = s3_presign_client().generate_presigned_url(
        "get_object", Params={"Bucket": bucket, "Key": key}, ExpiresIn=seconds
    )
    return url, (now or timezone.now()) + timedelta(seconds=seconds)
