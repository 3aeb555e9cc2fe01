"""kombu's SQS transport, with failed receives survived instead of stopping the worker.

The upstream bug (kombu 5.7.0): a ReceiveMessage answered with a timeout (408, 504, or 599, which
is how kombu's curl client reports a refused or lost connection) or a 5xx goes through
``kombu.asynchronous.aws.connection.AsyncAWSQueryConnection._on_list_ready``, which returns an
empty *list* for it ("interpreted as an empty list, this prevents hanging the Celery worker").
That list is handed to ``kombu.transport.SQS.Channel._on_messages_ready(queue, qname, messages)``,
whose first line is ``messages.get('Messages')``: ``AttributeError: 'list' object has no
attribute 'get'``. The exception escapes the promise chain that would have scheduled the next
poll (``Channel._loop1``), so depending on where the hub surfaces it the worker exits with
"Unrecoverable error" or silently stops polling that queue. Any other error answer (a 4xx such as
QueueDoesNotExist while an emulator comes back, or throttling) is raised by ``_on_list_ready``
into the same chain, with the same end.

This transport (settings select it for ``sqs://`` broker URLs, ``CELERY_BROKER_TRANSPORT``):

- ``_on_messages_ready`` treats anything that is not a ReceiveMessage answer (a dict) as a
  failed receive and returns 0 messages;
- ``_get_from_sqs`` gives the receive's callback an error handler, so an exception raised while
  reading the answer is a failed receive too, instead of escaping to the hub;
- ``_loop1`` polls again after a failed receive with a back-off (the polling interval doubled per
  consecutive failure, at most ``MAX_BACKOFF_SECONDS``), and logs the first failure, every
  power of two after it, and the recovery, not one line per poll.

A second upstream bug (kombu 5.7.0), found by drill 12 (SQS accepting connections and never
answering): ``AsyncHTTPSConnection`` builds each asynchronous request with ``connect_timeout``
and ``request_timeout`` (20 s), but ``kombu.asynchronous.http.curl.CurlClient._setup_request``
never hands them to pycurl (no ``CONNECTTIMEOUT``, no ``TIMEOUT``). A ReceiveMessage sent to a
peer that accepts the connection and never answers therefore waits forever: the worker keeps its
process but stops consuming, even after SQS answers again, until something resets that TCP
connection. Here ``Channel.asynsqs`` gives kombu's asynchronous SQS connection a
``TimedHTTPSConnection`` that applies a connect timeout (``CONNECT_TIMEOUT_SECONDS``) and a total
timeout of the long poll plus ``REQUEST_TIMEOUT_MARGIN_SECONDS`` to each request's curl handle;
a request that runs out ends as curl error 28, which kombu reports as a 599 answer: a failed
receive, handled as above.

The worker keeps its process and polls again until SQS answers. Remove this module when kombu's
``_on_messages_ready`` accepts the empty list and its receive errors no longer escape (checked at
import: a kombu other than the versions below fails loudly here so the check is redone).
"""

from __future__ import annotations

import logging
from functools import partial

import kombu
import pycurl
from kombu.asynchronous.aws.connection import AsyncHTTPSConnection
from kombu.transport import SQS
from vine import promise

logger = logging.getLogger(__name__)

# The kombu versions whose SQS receive path is known to need this fix. A kombu upgrade stops the
# import here: read kombu's Channel._on_messages_ready and AsyncAWSQueryConnection._on_list_ready
# again, then widen this set, or delete this module if upstream handles the empty list.
KOMBU_VERSIONS_CHECKED = {"5.7.0"}
if kombu.__version__ not in KOMBU_VERSIONS_CHECKED:
    raise ImportError(
        f"dpp/sqs_transport.py was checked against kombu {sorted(KOMBU_VERSIONS_CHECKED)}, "
        f"kombu {kombu.__version__} is installed: re-check the failed-receive fix (see the module docstring)")


MAX_BACKOFF_SECONDS = 10.0
MIN_BACKOFF_SECONDS = 0.5
# An asynchronous SQS request (the long poll) may take the poll's wait time plus this margin.
CONNECT_TIMEOUT_SECONDS = 5.0
REQUEST_TIMEOUT_MARGIN_SECONDS = 10.0


def curl_timeouts_apply(curl, *, connect_seconds: float, total_seconds: float) -> None:
    """What kombu's curl client leaves out: the request's timeouts, on its curl handle."""
    curl.setopt(pycurl.NOSIGNAL, 1)  # timeouts without SIGALRM (the worker's timebox owns it)
    curl.setopt(pycurl.CONNECTTIMEOUT_MS, int(connect_seconds * 1000))
    curl.setopt(pycurl.TIMEOUT_MS, int(total_seconds * 1000))


class TimedHTTPSConnection(AsyncHTTPSConnection):
    """kombu's asynchronous HTTP connection whose requests really end at their timeouts."""

    def __init__(self, *, http_client, connect_seconds: float, total_seconds: float):
        super().__init__(timeout=total_seconds, http_client=http_client)
        self.connect_seconds, self.total_seconds = connect_seconds, total_seconds

    def getrequest(self):
        request = super().getrequest()
        request.connect_timeout, request.request_timeout = self.connect_seconds, self.total_seconds
        # kombu's curl client calls on_prepare(curl) last, once the handle is set up.
        request.on_prepare = partial(curl_timeouts_apply, connect_seconds=self.connect_seconds,
                                     total_seconds=self.total_seconds)
        return request


class Channel(SQS.Channel):
    def __init__(self, *args, **kwargs):
        self._receive_failures: dict[str, int] = {}
        self._receive_error: str | None = None
        super().__init__(*args, **kwargs)

    def _receive_failed(self, qname: str, reason: str) -> None:
        failures = self._receive_failures.get(qname, 0) + 1
        self._receive_failures[qname] = failures
        if failures & (failures - 1) == 0:  # 1, 2, 4, 8, ...: a line per doubling, not per poll
            logger.warning("SQS receive failed (%s); polling again with a back-off", reason,
                           extra={"queue": qname, "consecutive_failures": failures})

    def _on_messages_ready(self, queue, qname, messages):
        if not isinstance(messages, dict):
            # kombu's "empty list" for a timeout, a 5xx or a lost connection (or an error answer,
            # through _get_from_sqs's error handler).
            reason, self._receive_error = self._receive_error, None
            self._receive_failed(qname, reason or "timeout, server error or lost connection")
            return 0
        failures = self._receive_failures.pop(qname, 0)
        if failures:
            logger.info("SQS answers again after %d failed receives", failures, extra={"queue": qname})
        return super()._on_messages_ready(queue, qname, messages)

    def _get_from_sqs(self, queue_name, queue_url, connection, count=1, callback=None):
        if callback is None:
            return super()._get_from_sqs(queue_name, queue_url, connection, count=count)

        def on_error(exc):
            # Raised while reading the answer (an error status kombu does not map to the empty
            # list): a failed receive. The chain goes on as for a failed poll, so _loop1 runs.
            self._receive_error = f"{type(exc).__name__}: {str(exc)[:300]}"
            callback([])

        guarded = promise(callback, on_error=on_error)
        return super()._get_from_sqs(queue_name, queue_url, connection, count=count, callback=guarded)

    def _loop1(self, queue, messages_fetched=None):
        failures = self._receive_failures.get(queue, 0)
        if failures and not messages_fetched:
            interval = max(self.connection.polling_interval or 0, MIN_BACKOFF_SECONDS)
            delay = min(MAX_BACKOFF_SECONDS, interval * 2 ** min(failures - 1, 10))
            self.hub.call_later(delay, self._schedule_queue, queue)
            return
        super()._loop1(queue, messages_fetched)


    def asynsqs(self, queue=None):
        connection = super().asynsqs(queue=queue)  # kombu caches it per channel (or per queue)
        connection.get_http_connection = partial(
            TimedHTTPSConnection, http_client=connection._httpclient, connect_seconds=CONNECT_TIMEOUT_SECONDS,
            total_seconds=(self.wait_time_seconds or 0) + REQUEST_TIMEOUT_MARGIN_SECONDS)
        return connection


class Transport(SQS.Transport):
    Channel = Channel
