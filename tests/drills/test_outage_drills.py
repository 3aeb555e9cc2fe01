"""Outage drills (issue 15, item 19): the real platform in processes with a TCP proxy
(tests/drills/proxy.py) between it and one dependency, which the drill makes unreachable or
silent while runs execute and workers poll. Each ends with every run terminal, settled once,
exact wallets and check_ledger green. docs/RELIABILITY.md lists them."""

from __future__ import annotations

import os
import time
import uuid

import pytest
from django.db import connection

from runs.models import Run
from runs.services import RunSubmission, run_create
from tests.drills.proxy import TcpProxy
from tests.drills.test_drills import (
    DECISION_COST,
    INITIAL,
    MIN_FEE,
    account,  # noqa: F401 - fixture
    ledger_green,
    platforms,  # noqa: F401 - fixture
    settlements,
    slow,
    submit,
    terminal,
    wallet,
)
from tests.runs.helpers import decision_inputs, run_body
from tests.workers import wait_until

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow, pytest.mark.emulator]

# The issue asks for 60 s; the default is shorter to keep the drill within the CI budget (~90 s a
# drill). DPP_DRILL_DB_OUTAGE_SECONDS=60 runs the full outage.
DB_OUTAGE_SECONDS = int(os.environ.get("DPP_DRILL_DB_OUTAGE_SECONDS", "25"))
SQS_SILENCE_SECONDS = int(os.environ.get("DPP_DRILL_SQS_SILENCE_SECONDS", "20"))
# Outcomes a run in flight during an outage may have, each at its exact charge.
IN_FLIGHT_OUTCOMES = {("COMPLETED", "", 20_000), ("FAILED", "LEASE_EXPIRED", MIN_FEE),
                      ("FAILED", "WORKER_CRASH_DURING_FINALIZE", MIN_FEE)}


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
    def test_11_runs_in_flight_settle_once_the_api_moves_no_money_and_workers_resume(
            self, platforms, proxies, account, monkeypatch):  # noqa: F811
        tenant, key = account
        db = connection.settings_dict
        proxy = proxies(target_host=db["HOST"] or "127.0.0.1", target_port=int(db["PORT"] or 5432))
        monkeypatch.setattr("tests.drills.platform.database_url", lambda: database_behind(proxy))
        platform = platforms()
        in_flight = [submit(platform, key, slow(3)) for _ in range(4)]
        wait_until(lambda: Run.objects.filter(pk__in=in_flight, status="PROCESSING").exists(), timeout=30,
                   message="a run executing")
        runs_before = Run.objects.count()

        proxy.set_mode("down")
        outage_ends = time.monotonic() + DB_OUTAGE_SECONDS
        status, problem, headers = platform.submit(key, run_body("0.0500"))
        # 503 with Retry-After is issue 15 item 12 (PART B); until it is merged the API answers a
        # 500 problem. Either way: a problem document, no run, no money moved.
        assert status in (500, 503) and headers["Content-Type"] == "application/problem+json", (status, problem)
        time.sleep(max(0.0, outage_ends - time.monotonic()))
        assert Run.objects.count() == runs_before

        proxy.set_mode("pass")
        after = submit(platform, key, run_body("0.0500"))
        wait_until(lambda: terminal(in_flight + [after]), timeout=60, message="every run terminal")

        runs = {run.pk: run for run in Run.objects.filter(pk__in=in_flight + [after])}
        for run_id in in_flight:
            run = runs[run_id] if run_id in runs else Run.objects.get(pk=run_id)
            assert (run.status, run.error_reason, run.actual_cost_micros) in IN_FLIGHT_OUTCOMES
            assert settlements(run.pk) == 1
        done_after = Run.objects.get(pk=after)
        assert (done_after.status, done_after.actual_cost_micros) == ("COMPLETED", DECISION_COST)
        charged = sum(run.actual_cost_micros for run in Run.objects.filter(tenant=tenant))
        assert wallet(tenant) == (INITIAL - charged, 0)
        assert ledger_green(platform)


class TestSqsSilent:
    def test_12_sqs_accepting_connections_and_never_answering_while_workers_poll_loses_nothing(
            self, platforms, proxies, account, monkeypatch):  # noqa: F811
        # The API's own send during the silence is the submission-speed issue's (issue 11): here
        # the run accepted during the silence is created with its first send lost, as the API
        # leaves it when the send fails, and the outbox must send it once SQS answers again.
        tenant, key = account
        from tests.drills.platform import Platform

        platform = Platform()
        proxy = proxies(target_host="127.0.0.1", target_port=platform.moto_port)
        platform.env["AWS_ENDPOINT_URL_SQS"] = f"http://127.0.0.1:{proxy.port}"
        platforms_started.append(platform)
        platform.start()
        first = submit(platform, key, run_body("0.0500"))
        wait_until(lambda: terminal([first]), timeout=60, message="a run before the silence")

        proxy.set_mode("blackhole")  # the workers' open long polls and every new call now hang
        during = run_create(tenant=tenant, submission=RunSubmission(
            idempotency_key=uuid.uuid4().hex, payload_hash="0" * 64, pack_type="decision",
            inputs=decision_inputs(), max_cost_micros=50_000, timebox_sec=30, min_reliability_score=None,
            trace_id="drill-12")).run.pk
        time.sleep(SQS_SILENCE_SECONDS)

        proxy.set_mode("pass")
        after = submit(platform, key, run_body("0.0500"))
        wait_until(lambda: terminal([during, after]), timeout=90, message="the runs after the silence")

        ids = [first, during, after]
        assert set(Run.objects.filter(pk__in=ids).values_list("status", "actual_cost_micros")) == {
            ("COMPLETED", DECISION_COST)}
        assert all(settlements(run_id) == 1 for run_id in ids)
        assert all(run.attempts == 1 for run in Run.objects.filter(pk__in=ids))
        assert wallet(tenant) == (INITIAL - 3 * DECISION_COST, 0)
        assert ledger_green(platform)


platforms_started: list = []


@pytest.fixture(autouse=True)
def _stop_platforms_started_here():
    yield
    while platforms_started:
        platforms_started.pop().stop()
