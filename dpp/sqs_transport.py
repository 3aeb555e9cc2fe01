"""kombu's SQS transport, with failed receives survived instead of stopping the worker.

The upstream bug (kombu 5.7.0): a ReceiveMessage answered with a timeout (408, 504, or 599, which
is how kombu's curl client reports a refused or lost connection) or a 5xx goes through
``kombu.asynchronous.aws.connection.AsyncAWSQueryConnection._on_list_ready``, which returns an
empty *list* for it ("interpreted as an empty list, this prevents hanging the Celery worker").
That list is handed to ``kombu.transport.SQS.Channel._on_messages_ready(queue, qname, messages)``,
whose first line is ``messages.get('Messages')``: ``AttributeError: 'list' object has no
attribute 'get'``. The exception escapes the promise chain that would have scheduled the next
poll (``Channel._loop1``), so depending on where the hub surfaces it the worker exits with
"Unrecoverable error" or silently stops polling that queue.

``Channel._on_messages_ready`` here treats anything that is not a ReceiveMessage answer (a dict)
as a failed receive: it logs a warning and returns 0 messages, so ``_loop1`` schedules the next
poll after ``polling_interval`` as for an empty poll. The worker keeps its process and polls again
until SQS answers. Settings select this transport for ``sqs://`` broker URLs
(``CELERY_BROKER_TRANSPORT``). Remove it when kombu's ``_on_messages_ready`` accepts the empty
list itself (checked at import: a newer kombu fails loudly here so the check is redone).
"""

from __future__ import annotations

import logging

import kombu
from kombu.transport import SQS

logger = logging.getLogger(__name__)

# The kombu versions whose SQS receive path is known to need this fix. A kombu upgrade stops the
# import here: read kombu's Channel._on_messages_ready and AsyncAWSQueryConnection._on_list_ready
# again, then widen this set, or delete this module if upstream handles the empty list.
KOMBU_VERSIONS_CHECKED = {"5.7.0"}
if kombu.__version__ not in KOMBU_VERSIONS_CHECKED:
    raise ImportError(
        f"dpp/sqs_transport.py was checked against kombu {sorted(KOMBU_VERSIONS_CHECKED)}, "
        f"kombu {kombu.__version__} is installed: re-check the failed-receive fix (see the module docstring)")


class Channel(SQS.Channel):
    def _on_messages_ready(self, queue, qname, messages):
        if not isinstance(messages, dict):
            # kombu's "empty list" for a timeout, a 5xx or a lost connection: no messages this
            # time; _loop1 polls again after polling_interval.
            logger.warning("SQS receive failed (timeout, server error or lost connection); polling again",
                           extra={"queue": qname})
            return 0
        return super()._on_messages_ready(queue, qname, messages)


class Transport(SQS.Transport):
    Channel = Channel
