"""dpp/sqs_transport.py: a failed SQS receive is "no messages, poll again with a back-off", never an
exception out of the worker's event loop. Unit tests on a real channel (connected to the emulator),
with kombu's own failed-receive handling fed fake HTTP answers and a fake hub that records the
next poll; the drill tests/drills/test_sqs_outage.py runs the real outage with real processes.
The timeouts kombu's curl client leaves out are checked on a real hub and curl client against a
TCP peer that accepts and never answers; drill 12 (tests/drills/test_outage_drills.py) runs it
with real processes."""

from __future__ import annotations

import logging
import socket
import threading
import time
from io import BytesIO
from types import SimpleNamespace

import kombu
import pycurl
import pytest
from kombu.asynchronous import Hub
from kombu.asynchronous.aws.connection import AsyncAWSQueryConnection, AsyncHTTPSConnection
from kombu.asynchronous.http import Headers
from kombu.asynchronous.http.curl import CurlClient
from kombu.transport import SQS
from vine import promise

from dpp import sqs_transport

pytestmark = pytest.mark.emulator


class FakeHub:
    def __init__(self):
        self.later: list[float] = []
        self.soon = 0

    def call_later(self, delay, callback, *args):
        self.later.append(delay)

    def call_soon(self, callback, *args):
        self.soon += 1


@pytest.fixture
def channel():
    from dpp.celery import app

    connection = app.connection_for_read()
    channel = connection.default_channel
    channel.hub = FakeHub()
    yield channel
    connection.release()


def failed_receive_answer(status: int):
    """What kombu 5.7.0's ReceiveMessage path hands on for a fake answer of this status."""
    response = SimpleNamespace(status=status, reason="fake", read=lambda: b"", response=None)
    connection = AsyncAWSQueryConnection.__new__(AsyncAWSQueryConnection)
    connection.sqs_connection = SimpleNamespace(meta=SimpleNamespace(service_model=None))
    return connection._on_list_ready(None, [], "ReceiveMessage", response)


def test_the_broker_uses_the_fixed_transport(channel):
    assert isinstance(channel, sqs_transport.Channel)
    assert kombu.__version__ in sqs_transport.KOMBU_VERSIONS_CHECKED


@pytest.mark.parametrize("status", [408, 500, 502, 503, 504, 599])
def test_kombu_turns_a_fake_failed_receive_into_an_empty_list_its_own_channel_cannot_read(channel, status):
    """The upstream bug. When this test fails, kombu has fixed it: delete dpp/sqs_transport.py."""
    messages = failed_receive_answer(status)

    assert messages == []
    with pytest.raises(AttributeError, match="'list' object has no attribute 'get'"):
        SQS.Channel._on_messages_ready(channel, "http://queue-url", "dpp-runs", messages)


@pytest.mark.parametrize("status", [408, 503, 599])
def test_the_empty_list_of_a_fake_failed_receive_is_no_messages_and_a_later_poll(channel, status, caplog):
    loop = []
    callback = promise(lambda fetched: loop.append(fetched))
    caplog.set_level(logging.WARNING, logger="dpp.sqs_transport")

    fetched = channel._on_messages_ready("http://queue-url", "dpp-runs", failed_receive_answer(status))
    callback(fetched)
    channel._loop1("dpp-runs", fetched)

    assert fetched == 0 and loop == [0]
    assert channel.hub.later == [sqs_transport.MIN_BACKOFF_SECONDS] and channel.hub.soon == 0
    assert "SQS receive failed" in caplog.text


def test_an_error_raised_while_reading_a_fake_400_answer_is_a_failed_receive_too(channel, caplog):
    """kombu raises for other statuses (QueueDoesNotExist while an emulator comes back, throttling)
    inside the receive's promise chain; without the guard it reaches the hub: "Unrecoverable error"."""
    loop = []

    class FailingConnection:
        def receive_message(self, queue_name, queue_url, number_messages=1, wait_time_seconds=None, callback=None):
            try:
                raise Exception("Request HTTP Error  HTTP 400  Bad Request (QueueDoesNotExist)")
            except Exception:
                callback.throw()  # what vine's transform does when kombu's _on_list_ready raises

    on_ready = promise(channel._on_messages_ready, ("http://queue-url", "dpp-runs"),
                       callback=promise(lambda fetched: loop.append(fetched)))
    caplog.set_level(logging.WARNING, logger="dpp.sqs_transport")

    channel._get_from_sqs("dpp-runs", "http://queue-url", FailingConnection(), count=1, callback=on_ready)

    assert loop == [0]
    assert "QueueDoesNotExist" in caplog.text


def test_consecutive_failures_back_off_up_to_the_maximum_and_a_good_answer_resets_it(channel, caplog):
    caplog.set_level(logging.INFO, logger="dpp.sqs_transport")
    for _ in range(8):
        channel._loop1("dpp-runs", channel._on_messages_ready("http://queue-url", "dpp-runs", []))

    delays = channel.hub.later
    assert delays == sorted(delays) and delays[0] == sqs_transport.MIN_BACKOFF_SECONDS
    assert delays[-1] == sqs_transport.MAX_BACKOFF_SECONDS
    assert caplog.text.count("SQS receive failed") == 4  # failures 1, 2, 4 and 8: a line per doubling

    assert channel._on_messages_ready("http://queue-url", "dpp-runs", {}) == 0  # an empty, successful poll
    channel._loop1("dpp-runs", 0)

    assert "SQS answers again after 8 failed receives" in caplog.text
    assert len(channel.hub.later) == 9 and channel.hub.later[-1] != sqs_transport.MAX_BACKOFF_SECONDS


# --- an SQS that accepts the connection and never answers (drill 12) -----------------------------


class FakeCurl:
    """A curl handle that records the options set on it."""

    def __init__(self):
        self.options: dict = {}

    def setopt(self, option, value):
        self.options[option] = value

    def unsetopt(self, option):
        self.options.pop(option, None)


@pytest.fixture
def silent_peer():
    """A TCP server that accepts connections and never answers (as tests/drills/proxy.py's blackhole)."""
    server = socket.create_server(("127.0.0.1", 0))
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept():
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(server.accept()[0])
            except TimeoutError:
                continue
            except OSError:
                return

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.getsockname()[1]}/"
    stop.set()
    thread.join(timeout=2)
    for sock in held:
        sock.close()
    server.close()


def answer_within(connection, url: str, seconds: float):
    """Send a POST through ``connection`` on a real hub and curl client; the answer, or None."""
    answers = []
    connection.request("POST", url, b"Action=ReceiveMessage", {"Content-Type": "application/x-www-form-urlencoded"})
    connection.getresponse(callback=answers.append)
    deadline = time.monotonic() + seconds
    while not answers and time.monotonic() < deadline:
        connection.http_client.hub.run_once()
    return answers[0] if answers else None


@pytest.fixture
def curl_client():
    hub = Hub()
    client = CurlClient(hub)
    yield client
    client.close()
    hub.close()


def test_kombus_curl_client_hands_no_timeout_to_curl():
    """The upstream bug. When this test fails, kombu applies the timeouts itself: remove
    TimedHTTPSConnection from dpp/sqs_transport.py."""
    request = AsyncHTTPSConnection(timeout=1.5, http_client=SimpleNamespace()).getrequest()
    curl = FakeCurl()

    CurlClient._setup_request(CurlClient.__new__(CurlClient), curl, request, BytesIO(), Headers())

    assert (request.connect_timeout, request.request_timeout) == (1.5, 1.5)
    assert not {pycurl.TIMEOUT, pycurl.TIMEOUT_MS, pycurl.CONNECTTIMEOUT, pycurl.CONNECTTIMEOUT_MS} & set(curl.options)


def test_with_kombus_connection_a_receive_from_a_silent_sqs_never_ends(curl_client, silent_peer):
    assert answer_within(AsyncHTTPSConnection(timeout=1.0, http_client=curl_client), silent_peer, 4) is None


def test_with_the_timed_connection_a_receive_from_a_silent_sqs_ends_at_its_timeout_as_a_failed_receive(
        curl_client, silent_peer):
    connection = sqs_transport.TimedHTTPSConnection(http_client=curl_client, connect_seconds=1, total_seconds=1.5)
    started = time.monotonic()

    answer = answer_within(connection, silent_peer, 10)

    assert answer is not None and answer.status == 599  # kombu's "empty list": a failed receive, polled again
    assert 1.4 < time.monotonic() - started < 4


def test_the_channels_async_sqs_connection_times_out_after_the_long_poll_plus_a_margin(channel, curl_client,
                                                                                       monkeypatch):
    monkeypatch.setattr("kombu.asynchronous.aws.connection.get_client", lambda *args, **kwargs: curl_client)
    channel.__dict__["wait_time_seconds"] = 7  # the transport option
    connection = channel.asynsqs()
    http = connection.get_http_connection()
    curl = FakeCurl()

    http.request("POST", "http://127.0.0.1:1/", b"", {})
    http.getrequest().on_prepare(curl)

    assert isinstance(http, sqs_transport.TimedHTTPSConnection) and http.http_client is connection._httpclient
    assert curl.options[pycurl.TIMEOUT_MS] == (7 + sqs_transport.REQUEST_TIMEOUT_MARGIN_SECONDS) * 1000
    assert curl.options[pycurl.CONNECTTIMEOUT_MS] == sqs_transport.CONNECT_TIMEOUT_SECONDS * 1000
    assert curl.options[pycurl.NOSIGNAL] == 1
