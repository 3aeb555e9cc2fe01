"""dpp/beat.py: celery-beat's scheduler pauses while PostgreSQL is unreachable instead of exiting
(a start during the outage) or sending blind with a traceback per tick (an outage while running),
and reads its schedule again once the database answers.

The outage is real: the connection is pointed at a port where nothing listens. Sends go to a fake
sender that records them (no broker); the drill tests/drills/test_outage_drills.py (11) runs a
real beat through a 60 s outage."""

from __future__ import annotations

import logging
from datetime import timedelta
from pathlib import Path

import pytest
from django.conf import settings
from django.db import OperationalError
from django.utils import timezone
from django_celery_beat.models import IntervalSchedule, PeriodicTask
from django_celery_beat.schedulers import DatabaseScheduler as LibraryDatabaseScheduler

from dpp import beat
from dpp.celery import app
from tests.database import postgres_unreachable

pytestmark = pytest.mark.django_db(transaction=True)

REPO = Path(__file__).resolve().parents[2]


class SchedulerWithFakeSender(beat.DatabaseScheduler):
    """The scheduler under test; what it would send to the broker is recorded instead."""

    producer = None  # no broker connection

    def __init__(self, *args, **kwargs):
        self.sent: list[str] = []
        super().__init__(*args, **kwargs)

    def apply_entry(self, entry, producer=None):
        self.sent.append(entry.name)


def periodic_task(name: str, *, every: int = 60) -> PeriodicTask:
    interval, _ = IntervalSchedule.objects.get_or_create(every=every, period=IntervalSchedule.SECONDS)
    return PeriodicTask.objects.create(name=name, task="tests.beat.fake_task", interval=interval,
                                       last_run_at=timezone.now() - timedelta(hours=1))  # due now


def tick_until_idle(scheduler, *, limit: int = 20) -> float:
    """Tick while ticks send (a tick sends at most one entry and then answers 0)."""
    for _ in range(limit):
        interval = scheduler.tick()
        if interval:
            return interval
    raise AssertionError("the scheduler kept sending")


@pytest.fixture
def schedule():
    PeriodicTask.objects.all().delete()
    return periodic_task("job-a")


class TestATickWhileTheDatabaseIsUnreachable:
    def test_returns_a_retry_interval_instead_of_raising_and_sends_nothing(self, schedule):
        scheduler = SchedulerWithFakeSender(app=app)
        tick_until_idle(scheduler)
        scheduler.sent.clear()

        with postgres_unreachable():
            intervals = [scheduler.tick() for _ in range(3)]

        assert intervals == [beat.RETRY_SECONDS] * 3
        assert scheduler.sent == []

    def test_retries_sooner_when_the_max_interval_is_shorter(self, schedule):
        scheduler = SchedulerWithFakeSender(app=app, max_interval=2)

        with postgres_unreachable():
            assert scheduler.tick() == 2

    def test_reads_the_schedule_again_once_the_database_is_back(self, schedule):
        scheduler = SchedulerWithFakeSender(app=app)
        tick_until_idle(scheduler)
        # A task added without the change signal: only a full read of the schedule sees it.
        interval = IntervalSchedule.objects.get(every=60, period=IntervalSchedule.SECONDS)
        PeriodicTask.objects.bulk_create([PeriodicTask(name="job-b", task="tests.beat.fake_task", interval=interval,
                                                       last_run_at=timezone.now() - timedelta(hours=1))])
        tick_until_idle(scheduler)
        assert "job-b" not in scheduler.sent  # unchanged schedule: the library does not re-read it

        with postgres_unreachable():
            scheduler.tick()
        tick_until_idle(scheduler)

        assert "job-b" in scheduler.sent
        assert "job-b" in scheduler.schedule

    def test_logs_one_warning_per_outage_without_a_traceback_and_one_line_when_it_ends(self, schedule, caplog):
        scheduler = SchedulerWithFakeSender(app=app)
        tick_until_idle(scheduler)

        with caplog.at_level(logging.INFO), postgres_unreachable():
            for _ in range(4):
                scheduler.tick()
        with caplog.at_level(logging.INFO):
            tick_until_idle(scheduler)

        warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
        assert [(r.name, r.levelno) for r in warnings] == [("dpp.beat", logging.WARNING)]
        assert warnings[0].exc_info is None and warnings[0].error == "OperationalError"
        assert "127.0.0.1" not in caplog.text and "port 1" not in caplog.text
        assert [r for r in caplog.records if r.name == "dpp.beat" and r.levelno == logging.INFO]

    def test_entries_sent_before_the_outage_keep_their_last_run_at(self, schedule):
        scheduler = SchedulerWithFakeSender(app=app)
        tick_until_idle(scheduler)  # job-a sent: its new last_run_at is not saved yet
        assert scheduler._dirty == {"job-a"}

        with postgres_unreachable():
            scheduler.sync()  # celery-beat's periodic sync, outside a tick: must not raise
            scheduler.tick()
        assert scheduler._dirty == {"job-a"}  # kept for the next sync
        tick_until_idle(scheduler)

        schedule.refresh_from_db()
        assert schedule.last_run_at > timezone.now() - timedelta(minutes=1)


class TestAStartWhileTheDatabaseIsUnreachable:
    def test_the_librarys_scheduler_raises_out_of_its_start(self, schedule):
        """The upstream behaviour dpp/beat.py exists for (django-celery-beat 2.9.0)."""
        with postgres_unreachable(), pytest.raises(OperationalError):
            LibraryDatabaseScheduler(app=app)

    def test_starts_and_sends_once_the_database_answers(self, schedule):
        with postgres_unreachable():
            scheduler = SchedulerWithFakeSender(app=app)
            assert scheduler.tick() == beat.RETRY_SECONDS

        tick_until_idle(scheduler)

        assert scheduler.sent == ["job-a"]


class TestEveryBeatUsesIt:
    def test_the_setting_names_it(self):
        assert settings.CELERY_BEAT_SCHEDULER == "dpp.beat:DatabaseScheduler"

    @pytest.mark.parametrize("path", ["Procfile", "compose.yaml", "tests/drills/platform.py"])
    def test_every_command_that_starts_a_beat_names_it(self, path):
        text = (REPO / path).read_text()
        assert "dpp.beat:DatabaseScheduler" in text
        assert "--scheduler django" not in text and '"django"' not in text
        assert "django_celery_beat.schedulers:DatabaseScheduler" not in text
