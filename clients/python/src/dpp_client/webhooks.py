"""Verification of DPP webhook deliveries (Standard Webhooks v1), with the standard library only.

The signed content is ``"{webhook-id}.{webhook-timestamp}.{body}"``; the key is the base64-decoded
part of ``whsec_...``; ``webhook-signature`` holds one or more space-separated ``v1,<base64>``
signatures (two while a rotated secret still signs). A delivery is accepted when any signature
matches any of the given secrets and its timestamp is within ``tolerance_seconds`` of now.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import time
from collections.abc import Iterable, Mapping
from typing import Any

from dpp_client.errors import WebhookVerificationError

SECRET_PREFIX = "whsec_"
DEFAULT_TOLERANCE_SECONDS = 300


def _header(headers: Mapping[str, str], name: str) -> str:
    for key, value in headers.items():
        if key.lower() == name:
            return value
    raise WebhookVerificationError(f"missing header {name}")


def _key(secret: str) -> bytes:
    encoded = secret[len(SECRET_PREFIX):] if secret.startswith(SECRET_PREFIX) else secret
    try:
        return base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        raise WebhookVerificationError("a secret is not whsec_ followed by base64") from None


def webhook_signature(*, body: bytes, webhook_id: str, timestamp: int | str, secret: str) -> str:
    """The ``v1,<base64>`` signature of a delivery (what the server sends; useful in tests)."""
    signed = f"{webhook_id}.{timestamp}.".encode() + body
    digest = hmac.new(_key(secret), signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def verify_webhook(body: bytes | str, headers: Mapping[str, str], secrets: str | Iterable[str], *,
                   tolerance_seconds: int = DEFAULT_TOLERANCE_SECONDS, now: float | None = None) -> dict[str, Any]:
    """Verify a delivery and return its parsed JSON payload; raise WebhookVerificationError.

    ``body`` must be the raw bytes as received (re-serialised JSON would not verify)."""
    raw = body.encode() if isinstance(body, str) else bytes(body)
    webhook_id = _header(headers, "webhook-id")
    timestamp = _header(headers, "webhook-timestamp")
    signatures = _header(headers, "webhook-signature")
    try:
        sent_at = int(timestamp)
    except ValueError:
        raise WebhookVerificationError("webhook-timestamp is not an integer") from None
    current = time.time() if now is None else now
    if abs(current - sent_at) > tolerance_seconds:
        raise WebhookVerificationError("webhook-timestamp is outside the tolerance (replayed or clock skew)")
    candidates = [secrets] if isinstance(secrets, str) else list(secrets)
    if not candidates:
        raise WebhookVerificationError("no secret to verify with")
    expected = [webhook_signature(body=raw, webhook_id=webhook_id, timestamp=timestamp, secret=s) for s in candidates]
    for received in signatures.split():
        for signature in expected:
            if hmac.compare_digest(received.encode(), signature.encode()):
                try:
                    return json.loads(raw)
                except ValueError:
                    raise WebhookVerificationError("the body is not JSON") from None
    raise WebhookVerificationError("no signature matches")
