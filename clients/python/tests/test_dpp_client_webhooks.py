"""verify_webhook against deliveries signed by the reference Standard Webhooks package."""

from __future__ import annotations

import base64
import json
import os
from datetime import UTC, datetime

import pytest
from dpp_client import WebhookVerificationError, verify_webhook, webhook_signature
from standardwebhooks import Webhook

SECRET = "whsec_" + base64.b64encode(os.urandom(32)).decode()
OLD_SECRET = "whsec_" + base64.b64encode(os.urandom(32)).decode()
BODY = json.dumps({"id": "evt_1", "type": "run.completed", "data": {"run": {"run_id": "r1"}}})


def signed_headers(body: str = BODY, *, secret: str = SECRET, at: datetime | None = None) -> dict[str, str]:
    at = at or datetime.now(tz=UTC)
    return {"webhook-id": "evt_1", "webhook-timestamp": str(int(at.timestamp())),
            "webhook-signature": Webhook(secret).sign("evt_1", at, body)}


def test_a_delivery_signed_by_the_reference_implementation_verifies_and_parses():
    assert verify_webhook(BODY.encode(), signed_headers(), SECRET)["type"] == "run.completed"


def test_our_signature_is_accepted_by_the_reference_implementation():
    now = int(datetime.now(tz=UTC).timestamp())
    headers = {"webhook-id": "evt_1", "webhook-timestamp": str(now),
               "webhook-signature": webhook_signature(body=BODY.encode(), webhook_id="evt_1", timestamp=now, secret=SECRET)}
    assert Webhook(SECRET).verify(BODY, headers)["id"] == "evt_1"


def test_header_names_are_case_insensitive():
    headers = {key.title(): value for key, value in signed_headers().items()}
    assert verify_webhook(BODY, headers, [SECRET])["id"] == "evt_1"


def test_during_a_rotation_either_of_two_signatures_verifies():
    at = datetime.now(tz=UTC)
    old = Webhook(OLD_SECRET).sign("evt_1", at, BODY)
    new = Webhook(SECRET).sign("evt_1", at, BODY)
    headers = {"webhook-id": "evt_1", "webhook-timestamp": str(int(at.timestamp())), "webhook-signature": f"{old} {new}"}
    assert verify_webhook(BODY, headers, [SECRET])["id"] == "evt_1"
    assert verify_webhook(BODY, headers, [OLD_SECRET])["id"] == "evt_1"


@pytest.mark.parametrize("mutate", [
    lambda body, headers, secret: (body.replace("r1", "r2"), headers, secret),
    lambda body, headers, secret: (body, {**headers, "webhook-id": "evt_2"}, secret),
    lambda body, headers, secret: (body, headers, OLD_SECRET),
    lambda body, headers, secret: (body, {k: v for k, v in headers.items() if k != "webhook-signature"}, secret),
    lambda body, headers, secret: (body, {**headers, "webhook-timestamp": "soon"}, secret),
    lambda body, headers, secret: (body, headers, []),
], ids=["tampered body", "other id", "wrong secret", "no signature", "bad timestamp", "no secret"])
def test_anything_altered_is_refused(mutate):
    body, headers, secret = mutate(BODY, signed_headers(), SECRET)
    with pytest.raises(WebhookVerificationError):
        verify_webhook(body, headers, secret)


def test_an_old_delivery_is_refused_as_a_replay():
    headers = signed_headers(at=datetime(2020, 1, 1, tzinfo=UTC))
    with pytest.raises(WebhookVerificationError, match="tolerance"):
        verify_webhook(BODY, headers, SECRET)
    assert verify_webhook(BODY, headers, SECRET, now=datetime(2020, 1, 1, 0, 4, tzinfo=UTC).timestamp())
