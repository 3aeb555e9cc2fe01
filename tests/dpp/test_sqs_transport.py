"""dpp/sqs_transport.py: a failed SQS receive is "no messages, poll again with a back-off", never an
exception out of the worker's event loop. Unit tests on a real channel (connected to the emulator),
with kombu's own failed-receive handling fed fake HTTP answers and a fake hub that records the
next poll; the drill tests/drills/test_sqs_outage.py runs the real outage with real processes."""

from __future__ import annotations

import logging
from types import SimpleNamespace

import kombu
import pytest
from kombu.asynchronous.aws.connection import AsyncAWSQueryConnection
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
