"""python manage.py run_relay: send committed runs to the broker (see runs/relay.py). Several
may run at once; SIGTERM or SIGINT stops it after the batch in hand."""

from __future__ import annotations

import signal
import threading

from django.conf import settings
from django.core.management.base import BaseCommand

from runs.relay import relay_forever


class Command(BaseCommand):
    help = "Relay pending runs (the run row is the outbox) to the broker, woken after each submission's commit."

    def add_arguments(self, parser):
        parser.add_argument("--batch-size", type=int, default=settings.DPP_RELAY_BATCH_SIZE)
        parser.add_argument("--poll-seconds", type=float, default=settings.DPP_RELAY_POLL_SECONDS)

    def handle(self, *args, batch_size: int, poll_seconds: float, **options):
        stop = threading.Event()
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, lambda *_: stop.set())
        relay_forever(stop=stop, batch_size=max(1, min(batch_size, 1000)), poll_seconds=max(0.05, poll_seconds))
