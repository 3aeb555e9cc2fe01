"""`manage.py webhook_listen`: verifies and prints deliveries, refuses forged ones."""

from __future__ import annotations

import io
import threading
import time
import urllib.error
import urllib.request

import pytest
from django.core.management import CommandError, call_command

from runs.webhooks.crypto import secret_generate
from runs.webhooks.management.commands.webhook_listen import listener_server
from runs.webhooks.signing import webhook_headers_sign


@pytest.fixture
def listening():
    secret = secret_generate()
    out = io.StringIO()
    server = listener_server(host="127.0.0.1", port=0, secrets=[secret], out=out)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/", secret, out
    server.shutdown()
    server.server_close()


def post(url, body, headers):
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code


class TestWebhookListen:
    def test_verifies_and_prints_a_signed_delivery(self, listening):
        url, secret, out = listening
        body = b'{"id":"evt_1","type":"webhook.test","data":{}}'

        status = post(url, body, webhook_headers_sign(secrets=[secret], msg_id="evt_1", timestamp=int(time.time()),
                                                      body=body))

        assert status == 204 and "VERIFIED webhook.test evt_1" in out.getvalue()

    def test_refuses_a_delivery_signed_with_another_secret(self, listening):
        url, _, out = listening
        body = b'{"id":"evt_2"}'

        status = post(url, body, webhook_headers_sign(secrets=[secret_generate()], msg_id="evt_2",
                                                      timestamp=int(time.time()), body=body))

        assert status == 401 and "REJECTED evt_2" in out.getvalue()

    def test_refuses_a_secret_that_is_not_whsec(self):
        with pytest.raises(CommandError, match="whsec_"):
            call_command("webhook_listen", "--port", "0", "--secret", "not-a-secret")
