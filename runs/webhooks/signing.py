"""Standard Webhooks v1 signatures.

``webhook-signature`` is ``v1,<base64 HMAC-SHA256 of "{id}.{timestamp}.{body}">`` per valid
secret, space separated (two during a rotation). The timestamp is the unix second of this
attempt, so every retry is signed afresh over the same body bytes.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time

from runs.webhooks.crypto import secret_key_bytes

DEFAULT_TOLERANCE_SECONDS = 300


class SignatureInvalid(Exception):
    pass


def signature_for(*, secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    signed = f"{msg_id}.{timestamp}.".encode() + body
    digest = hmac.new(secret_key_bytes(secret), signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode("ascii")


def webhook_headers_sign(*, secrets: list[str], msg_id: str, timestamp: int, body: bytes) -> dict[str, str]:
    """The three Standard Webhooks headers for one attempt."""
    if not secrets:
        raise ValueError("at least one secret is needed to sign")
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": " ".join(
            signature_for(secret=secret, msg_id=msg_id, timestamp=timestamp, body=body) for secret in secrets
        ),
    }


def webhook_signature_verify(*, secrets: list[str], headers, body: bytes, now: float | None = None,
                             tolerance_seconds: int = DEFAULT_TOLERANCE_SECONDS) -> None:
    """Raise SignatureInvalid unless one v1 signature matches one secret, within the tolerance.
    Malformed headers are a SignatureInvalid, never a ValueError."""
    lowered = {str(k).lower(): str(v) for k, v in dict(headers).items()}
    msg_id, stamp, signature = (lowered.get("webhook-id"), lowered.get("webhook-timestamp"),
                                lowered.get("webhook-signature"))
    if not (msg_id and stamp and signature):
        raise SignatureInvalid("missing webhook-id, webhook-timestamp or webhook-signature")
    try:
        timestamp = int(stamp, 10)
    except ValueError:
        raise SignatureInvalid("webhook-timestamp is not an integer") from None
    now = time.time() if now is None else now
    if abs(now - timestamp) > tolerance_seconds:
        raise SignatureInvalid("webhook-timestamp outside the tolerance")
    for secret in secrets:
        expected = signature_for(secret=secret, msg_id=msg_id, timestamp=timestamp, body=body)
        for candidate in signature.split(" "):
            if hmac.compare_digest(candidate.encode(), expected.encode()):
                return
    raise SignatureInvalid("no matching signature")
