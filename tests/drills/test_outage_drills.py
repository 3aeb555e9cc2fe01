"""Outage drills (issue 15, item 19): the real platform in processes with a TCP proxy
(tests/drills/proxy.py) between it and one dependency, which the drill makes unreachable or
silent while runs execute and workers poll. Each ends with every run terminal, settled once,
exact wallets and check_ledger green. docs/RELIABILITY.md lists them."""

from __future__ import annotations

import os
import time

import pytest
from django.db import connection

from runs.models import Run
from tests.drills.proxy import TcpProxy
from tests.drills.test_drills import (
    DECISION_COST,
    INITIAL,
    account,  # noqa: F401 - fixture
    ledger_green,
    settlements,
    slow,
    submit,
    terminal,
    wallet,
)
from tests.runs.helpers import run_body
from tests.workers import wait_until

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow, pytest.mark.emulator]

# The 60 s. The drill then takes about 100 s on 2 cores (platform start ~15 s, the outage,
# ~15 s to finish); DPP_DRILL_DB_OUTAGE_SECONDS shortens it for a quick local check.
DB_OUTAGE_SECONDS = int(os.environ.get("DPP_DRILL_DB_OUTAGE_SECONDS", "60"))
SQS_SILENCE_SECONDS = int(os.environ.get("DPP_DRILL_SQS_SILENCE_SECONDS", "20"))


@pytest.fixture
def proxies():
    started: list[TcpProxy] = []

    def start(**kwargs) -> TcpProxy:
        proxy = TcpProxy(**kwargs)
        started.append(proxy)
        return proxy

    yield start
    for proxy in started:
        proxy.stop()


def database_behind(proxy: TcpProxy) -> str:
    db = connection.settings_dict
    auth = db["USER"] + (f":{db['PASSWORD']}" if db["PASSWORD"] else "")
    return f"postgres://{auth}@127.0.0.1:{proxy.port}/{db['NAME']}"


class TestPostgresUnreachable:
    def test_11_runs_in_flight_complete_at_cost_the_api_answers_503_and_every_process_survives(
            self, proxies, account, monkeypatch):  # noqa: F811
        tenant, key = account
        db = connection.settings_dict
        proxy = proxies(target_host=db["HOST"] or "127.0.0.1", target_port=int(db["PORT"] or 5432))
        monkeypatch.setattr("tests.drills.platform.database_url", lambda: database_behind(proxy))
        from tests.drills.platform import Platform

        platform = Platform()
        # The workers retry a transition for longer than the outage (runs/worker.py). The lease is
        # in production's proportion (120 s renewed every 30 s outlives any outage shorter than
        # the 90 s budget), not the drills' usual 4 s: with a lease shorter than the outage, the
        # lease expires meanwhile and, when the database returns, the worker's retry and the
        # reaper race by compare-and-set (either settles the run once; tests/runs/
        # test_worker_db_retry.py pins both), so "every run in flight completes" could not be
        # asserted. The heartbeat stays at 1 s.
        platform.env["DPP_WORKER_DB_RETRY_SECONDS"] = str(DB_OUTAGE_SECONDS + 30)
        platform.env["DPP_LEASE_SECONDS"] = str(DB_OUTAGE_SECONDS + 30)
        platforms_started.append(platform)
        platform.start()
        beat, worker, periodic, relay = platform.beats[0], platform.workers[0], platform.periodic_worker, platform.relay
        pids = {name: p.process.pid for name, p in
                {"beat": beat, "worker": worker, "periodic": periodic, "relay": relay, "api": platform.api}.items()}
        wait_until(lambda: "Sending due task" in beat.log_text(), timeout=30, message="the beat ticking")
        in_flight = [submit(platform, key, slow(3)) for _ in range(4)]
        wait_until(lambda: Run.objects.filter(pk__in=in_flight, status="PROCESSING").count() == 2, timeout=30,
                   message="two runs executing (the worker's two slots)")
        runs_before = Run.objects.count()

        proxy.set_mode("down")
        outage_ends = time.monotonic() + DB_OUTAGE_SECONDS
        asked_at = time.monotonic()
        status, problem, headers = platform.submit(key, run_body("0.0500"))
        answered_in = time.monotonic() - asked_at
        assert (status, problem.get("type")) == (503, "/problems/service-unavailable"), (status, problem)
        assert headers["Content-Type"] == "application/problem+json" and headers["Retry-After"] == "5"
        assert answered_in < 5, answered_in
        time.sleep(10)  # the beat's next tick meets the outage within its 5 s max interval
        beat_sends_in_the_outage = beat.log_text().count("Sending due task")
        time.sleep(max(0.0, outage_ends - time.monotonic()))
        assert beat.log_text().count("Sending due task") == beat_sends_in_the_outage  # paused, not sending blind
        assert Run.objects.count() == runs_before  # the 503 created nothing
        assert Run.objects.filter(pk__in=in_flight, status__in=Run.TERMINAL_STATUSES).count() == 0

        proxy.set_mode("pass")
        back_at = time.monotonic()
        after = submit(platform, key, run_body("0.0500"))
        wait_until(lambda: terminal(in_flight + [after]), timeout=60, message="every run terminal")
        recovered_in = time.monotonic() - back_at

        # Every run in flight completes at its cost: the two that were executing rode out the
        # outage in with_db_reconnect, the two waiting had their lease claim retried.
        runs = Run.objects.filter(pk__in=in_flight)
        assert sorted((r.status, r.error_reason, r.actual_cost_micros, r.attempts) for r in runs) == [
            ("COMPLETED", "", 20_000, 1)] * 4
        assert all(settlements(run_id) == 1 for run_id in in_flight + [after])
        done_after = Run.objects.get(pk=after)
        assert (done_after.status, done_after.actual_cost_micros) == ("COMPLETED", DECISION_COST)
        assert wallet(tenant) == (INITIAL - 4 * 20_000 - DECISION_COST, 0)
        # Every process survived on its own PID: none died, none was restarted by the platform's
        # supervisor (which would replace the Process and count a restart).
        current = {"beat": platform.beats[0], "worker": platform.workers[0], "periodic": platform.periodic_worker,
                   "relay": platform.relay, "api": platform.api}
        assert all(p.alive for p in current.values()), {n: p.log_text()[-2000:] for n, p in current.items()
                                                        if not p.alive}
        assert {name: p.process.pid for name, p in current.items()} == pids
        assert (platform.restarts, platform.beat_restarts) == (0, 0)
        # The beat paused (one WARNING for the whole outage), then sent again.
        wait_until(lambda: beat.log_text().count("Sending due task") > beat_sends_in_the_outage + 2, timeout=30,
                   message="the beat sending after the outage")
        log = beat.log_text()
        assert log.count("the database is unreachable") == 1 and "the database answers again" in log
        assert "beat raised exception" not in log and "Database gave error" not in log
        assert "database connection lost; reconnecting" in worker.log_text()
        assert ledger_green(platform)
        print(f"drill 11: outage {DB_OUTAGE_SECONDS} s, 503 in {answered_in:.2f} s, "
              f"every run terminal {recovered_in:.1f} s after, pids {pids}")


class TestSqsSilent:
    def test_12_sqs_accepting_connections_and_never_answering_while_workers_poll_loses_nothing(
            self, proxies, account):  # noqa: F811
        tenant, key = account
        from tests.drills.platform import Platform

        platform = Platform()
        proxy = proxies(target_host="127.0.0.1", target_port=platform.moto_port)
        platform.env["AWS_ENDPOINT_URL_SQS"] = f"http://127.0.0.1:{proxy.port}"  # every process's SQS
        platforms_started.append(platform)
        platform.start()
        worker = platform.workers[0]
        pid = worker.process.pid
        first = submit(platform, key, run_body("0.0500"))
        wait_until(lambda: terminal([first]), timeout=60, message="a run before the silence")

        proxy.set_mode("blackhole")  # the workers' open long polls and every new call now hang
        # The request does no broker I/O (the relay sends after the commit): it answers at once,
        # whatever SQS does; the relay's send hangs until its timeout and the run stays pending.
        asked_at = time.monotonic()
        status, answer, _ = platform.submit(key, run_body("0.0500"))
        answered_in = time.monotonic() - asked_at
        assert status == 202 and answered_in < 2, (status, answer, answered_in)
        during = answer["run_id"]
        time.sleep(3)  # a poll the silence cut short (its connection reset) has failed by now
        failed_receives = worker.log_text().count("SQS receive failed")
        time.sleep(max(0.0, SQS_SILENCE_SECONDS - 3))
        assert Run.objects.get(pk=during).status == "QUEUED"
        # A poll that hung on the silent SQS ended on its own, at its timeout (the long poll + 10 s;
        # kombu's curl client applies none, dpp/sqs_transport.py does), before SQS answered again:
        # a worker whose poll waited forever would keep its PID and never consume again.
        assert worker.log_text().count("SQS receive failed") > failed_receives

        proxy.set_mode("pass")  # the proxy resets every connection it held, as a peer that recovers
        back_at = time.monotonic()
        after = submit(platform, key, run_body("0.0500"))
        wait_until(lambda: terminal([during, after]), timeout=90, message="the runs after the silence")
        recovered_in = time.monotonic() - back_at

        ids = [first, during, after]
        assert set(Run.objects.filter(pk__in=ids).values_list("status", "actual_cost_micros")) == {
            ("COMPLETED", DECISION_COST)}
        assert all(settlements(run_id) == 1 for run_id in ids)
        assert all(run.attempts == 1 for run in Run.objects.filter(pk__in=ids))
        assert wallet(tenant) == (INITIAL - 3 * DECISION_COST, 0)
        # The run worker survived on its own process and ran both runs (dpp/sqs_transport.py):
        # no supervisor restart hides a death.
        log = worker.log_text()
        assert worker.alive and platform.workers[0] is worker and worker.process.pid == pid, log[-3000:]
        assert platform.restarts == 0
        assert during in log and after in log
        assert "Unrecoverable error" not in log and "object has no attribute 'get'" not in log
        assert ledger_green(platform)
        print(f"drill 12: silence {SQS_SILENCE_SECONDS} s, 202 in {answered_in:.2f} s, both runs terminal "
              f"{recovered_in:.1f} s after, worker pid {pid} throughout")


platforms_started: list = []


@pytest.fixture(autouse=True)
def _stop_platforms_started_here(proxies):
    """Platforms stop before their proxies (set up after them, torn down first)."""
    yield
    while platforms_started:
        platforms_started.pop().stop()
