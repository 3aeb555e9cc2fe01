"""celery-beat's scheduler: django-celery-beat's DatabaseScheduler that rides out a PostgreSQL
outage instead of exiting or sending blind (``CELERY_BEAT_SCHEDULER``, and ``-S`` in the
Procfile, compose and the drills).

What django-celery-beat 2.9.0 does without it:

- at start, the first read of the schedule (``setup_schedule`` -> ``all_as_schedule``) is not
  guarded: a beat started, or restarted by its supervisor, while PostgreSQL is unreachable exits
  at once (drill 11 saw a supervisor restart it ten times in a 25 s outage);
- once running, ``schedule_changed`` and ``sync`` log a traceback at ERROR on every tick and
  answer "unchanged", so the beat keeps sending every periodic job from its cached heap to
  workers that cannot reach the database either; ``sync`` drops the ``last_run_at`` it was
  saving when the save fails.

Here any database error out of a tick (connection refused or lost, ``InterfaceError``) pauses
the beat: one WARNING when the outage begins and one INFO when it ends, not a traceback per tick;
the connections are closed; the tick returns a retry interval (``RETRY_SECONDS``, or the
scheduler's ``max_interval`` if shorter); and the schedule is read again in full, with its heap
rebuilt, on the first tick that reaches the database, so what changed meanwhile (another beat's
``last_run_at``, an operator's edit) is seen. Sending nothing while the database is away loses
nothing: every periodic job is a pass over PostgreSQL that the next send repeats.
"""

from __future__ import annotations

import logging
import time

from django.core.exceptions import ObjectDoesNotExist
from django.db import DatabaseError, InterfaceError, OperationalError, close_old_connections, connections, transaction
from django_celery_beat import schedulers

logger = logging.getLogger(__name__)

# OperationalError and InterfaceError are DatabaseErrors; named for the reader.
DATABASE_ERRORS = (OperationalError, InterfaceError, DatabaseError)
RETRY_SECONDS = 5.0


class DatabaseScheduler(schedulers.DatabaseScheduler):
    _set_up = False
    _database_down_since: float | None = None  # time.monotonic() of the outage's first error

    def setup_schedule(self):
        try:
            super().setup_schedule()
        except DATABASE_ERRORS as error:
            self._database_unreachable(error)
            return
        self._set_up = True

    def tick(self, *args, **kwargs):
        try:
            if not self._set_up:  # the start found the database unreachable: read it now
                super().setup_schedule()
                self._set_up = True
            interval = super().tick(*args, **kwargs)
        except DATABASE_ERRORS as error:
            self._database_unreachable(error)
            return min(RETRY_SECONDS, self.max_interval or RETRY_SECONDS)
        if self._database_down_since is not None:
            logger.info("beat: the database answers again; schedule read again",
                        extra={"outage_seconds": round(time.monotonic() - self._database_down_since, 1)})
            self._database_down_since = None
        return interval

    def schedule_changed(self):
        """As django-celery-beat's, except that a database error propagates to ``tick`` (which
        pauses the beat and logs once per outage) instead of being logged with its traceback
        on every tick and read as "unchanged"."""
        close_old_connections()
        try:
            transaction.commit()  # see the library: a REPEATABLE READ snapshot would hide changes
        except transaction.TransactionManagementError:
            pass  # autocommit: nothing to commit
        last, ts = self._last_timestamp, self.Changes.last_change()
        self._last_timestamp = ts
        return bool(ts and ts > (last or ts))

    def sync(self):
        """Save the ``last_run_at`` of the entries sent since the last sync. As django-celery-beat's,
        except that on a database error the unsaved entries stay for the next sync (the library
        drops the one it was saving) and the outage is logged once, not a traceback per call.
        Never raises: celery-beat also calls it outside ``tick`` (its periodic sync, shutdown)."""
        pending, self._dirty = self._dirty, set()
        try:
            close_old_connections()
            for name in sorted(pending):
                entry = (self._schedule or {}).get(name)
                if entry is not None:
                    try:
                        entry.save()
                    except ObjectDoesNotExist:
                        pass  # the periodic task was deleted meanwhile: nothing to save
                pending.discard(name)
        except DATABASE_ERRORS as error:
            self._database_unreachable(error)
        finally:
            self._dirty |= pending

    def _database_unreachable(self, error: Exception) -> None:
        if self._database_down_since is None:
            self._database_down_since = time.monotonic()
            # The class only: a driver's message can name the host and the user.
            logger.warning("beat: the database is unreachable; sending nothing, retrying every %.0f s",
                           min(RETRY_SECONDS, self.max_interval or RETRY_SECONDS),
                           extra={"error": type(error).__name__})
        try:
            connections.close_all()
        except DATABASE_ERRORS:
            pass
        # Read the whole schedule again (the library's first-read path) and rebuild the heap from
        # it on the next tick that reaches the database.
        self._initial_read = True
        self._heap = None
