"""Our Standard Webhooks signer, cross-checked against the reference verifier (standardwebhooks)."""

from __future__ import annotations

import base64
import time
from datetime import UTC, datetime, timedelta, timezone

import pytest
from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError

from runs.webhooks.crypto import secret_generate
from runs.webhooks.signing import SignatureInvalid, webhook_headers_sign, webhook_signature_verify

BODY = b'{"data":{"run":{"status":"COMPLETED"}},"id":"evt_1","type":"run.completed"}'


class TestWebhookHeadersSign:
    def test_the_reference_verifier_accepts_our_signature(self):
        secret = secret_generate()
        headers = webhook_headers_sign(secrets=[secret], msg_id="evt_1", timestamp=int(time.time()), body=BODY)

        assert Webhook(secret).verify(BODY, headers) == {"data": {"run": {"status": "COMPLETED"}}, "id": "evt_1",
                                                          "type": "run.completed"}

    def test_matches_the_reference_signer_byte_for_byte(self):
        secret = secret_generate()
        stamp = 1_700_000_000
        ours = webhook_headers_sign(secrets=[secret], msg_id="evt_x", timestamp=stamp, body=BODY)

        # The reference misreads aware non-UTC datetimes (replace(tzinfo=utc)): give it naive UTC.
        reference = Webhook(secret).sign("evt_x", datetime.fromtimestamp(stamp, UTC).replace(tzinfo=None),
                                         BODY.decode())

        assert ours["webhook-signature"] == reference

    def test_the_reference_misreads_an_aware_non_utc_datetime_which_our_integer_timestamp_avoids(self):
        secret = secret_generate()
        stamp = 1_700_000_000
        aware_paris = datetime.fromtimestamp(stamp, timezone(timedelta(hours=1)))

        assert Webhook(secret).sign("evt_x", aware_paris, BODY.decode()) != webhook_headers_sign(
            secrets=[secret], msg_id="evt_x", timestamp=stamp, body=BODY)["webhook-signature"]

    def test_two_secrets_give_two_signatures_that_each_verify(self):
        old, new = secret_generate(), secret_generate()
        headers = webhook_headers_sign(secrets=[new, old], msg_id="evt_2", timestamp=int(time.time()), body=BODY)

        assert len(headers["webhook-signature"].split(" ")) == 2
        Webhook(new).verify(BODY, headers)
        Webhook(old).verify(BODY, headers)
        with pytest.raises(WebhookVerificationError):
            Webhook(secret_generate()).verify(BODY, headers)

    def test_the_signed_content_is_id_dot_timestamp_dot_body(self):
        import hashlib
        import hmac

        secret = secret_generate()
        headers = webhook_headers_sign(secrets=[secret], msg_id="evt_3", timestamp=42, body=b"{}")
        key = base64.b64decode(secret.removeprefix("whsec_"))

        assert headers["webhook-signature"] == "v1," + base64.b64encode(
            hmac.new(key, b"evt_3.42.{}", hashlib.sha256).digest()).decode()
        assert headers["webhook-id"] == "evt_3" and headers["webhook-timestamp"] == "42"


class TestWebhookSignatureVerify:
    def test_accepts_a_reference_signed_message(self):
        secret = secret_generate()
        now = datetime.now(UTC).replace(tzinfo=None)
        signature = Webhook(secret).sign("evt_4", now, BODY.decode())
        headers = {"Webhook-Id": "evt_4", "Webhook-Timestamp": str(int(now.replace(tzinfo=UTC).timestamp())),
                   "Webhook-Signature": signature}

        webhook_signature_verify(secrets=[secret], headers=headers, body=BODY)

    @pytest.mark.parametrize("headers", [
        {},
        {"webhook-id": "e", "webhook-timestamp": "not-a-number", "webhook-signature": "v1,AAAA"},
        {"webhook-id": "e", "webhook-timestamp": "1", "webhook-signature": "garbage-without-comma"},
    ])
    def test_malformed_headers_are_a_signature_error_not_a_value_error(self, headers):
        with pytest.raises(SignatureInvalid):
            webhook_signature_verify(secrets=[secret_generate()], headers=headers, body=BODY)

    def test_refuses_a_timestamp_outside_the_tolerance(self):
        secret = secret_generate()
        stale = int(time.time()) - 301
        headers = webhook_headers_sign(secrets=[secret], msg_id="evt_5", timestamp=stale, body=BODY)

        with pytest.raises(SignatureInvalid, match="tolerance"):
            webhook_signature_verify(secrets=[secret], headers=headers, body=BODY)

    def test_refuses_a_changed_body(self):
        secret = secret_generate()
        headers = webhook_headers_sign(secrets=[secret], msg_id="evt_6", timestamp=int(time.time()), body=BODY)

        with pytest.raises(SignatureInvalid, match="no matching"):
            webhook_signature_verify(secrets=[secret], headers=headers, body=BODY + b" ")
