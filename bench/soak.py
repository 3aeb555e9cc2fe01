"""`make soak`: N runs (SOAK_RUNS, default 1000) submitted over HTTP across two workers while a
chaos loop kills a random worker with SIGKILL every few seconds and starts a new one. Bounded in
time (SOAK_MAX_SECONDS). Prints runs per final state and the micros reserved, charged, released
and leaked; exits 1 on any leaked micro, any run left non-terminal, or a check_ledger violation.

It runs the same real platform as the fault drills (tests/drills/platform.py: its own emulator
and Redis, gunicorn, workers, beat with short timings) on its own database, dpp_soak.
"""

from __future__ import annotations

import os
import random
import sys
import threading
import time
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

SOAK_DB = os.environ.get("SOAK_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/dpp_soak")
RUNS = int(os.environ.get("SOAK_RUNS", "1000"))
MAX_SECONDS = int(os.environ.get("SOAK_MAX_SECONDS", "900"))
KILL_EVERY = (5.0, 10.0)
SEED = int(os.environ.get("SOAK_SEED", "7"))

os.environ.update({"DATABASE_URL": SOAK_DB, "DPP_ENV": "test", "DJANGO_SETTINGS_MODULE": "dpp.settings",
                   "LOG_LEVEL": "WARNING"})


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def setup() -> tuple[object, str]:
    from bench.common import funded_tenant

    return funded_tenant(database_url=SOAK_DB, name=f"soak-{uuid.uuid4().hex[:6]}", micros=RUNS * 50_000)


def body(index: int) -> dict:
    if index % 3 == 0:  # a decision run: fast
        return {"pack_type": "decision", "inputs": {
            "question": f"soak {index}",
            "options": [{"id": "a", "label": "A", "scores": {"x": index % 7, "y": 3}},
                        {"id": "b", "label": "B", "scores": {"x": 2, "y": index % 5}}],
            "criteria": [{"id": "x", "weight": 0.5}, {"id": "y", "weight": 0.5}]},
            "reservation": {"max_cost_usd": "0.0500", "timebox_sec": 30}}
    seconds = random.Random(index).choice([0.05, 0.2, 0.5, 1.0])  # slow ones: kills land mid-run
    return {"pack_type": "test_slow", "inputs": {"seconds": seconds, "cost_micros": 1_000 + index % 40_000},
            "reservation": {"max_cost_usd": "0.0500", "timebox_sec": 30}}


def main() -> int:
    tenant, key = setup()
    from django.db import connection

    from billing.checks import ledger_violations
    from runs.checks import run_money_violations
    from runs.models import Run
    from tests.drills.platform import Platform

    platform = Platform().start(workers=2, beats=1)
    started = time.monotonic()
    deadline = started + MAX_SECONDS
    stop_chaos = threading.Event()
    kills = Counter()
    rng = random.Random(SEED)

    def chaos() -> None:
        while not stop_chaos.wait(rng.uniform(*KILL_EVERY)):
            index = rng.randrange(len(platform.workers))
            platform.workers[index].kill()
            kills["worker"] += 1
            platform.workers[index] = platform.start_worker()

    chaos_thread = threading.Thread(target=chaos, daemon=True)
    chaos_thread.start()
    statuses = Counter()

    def submit(index: int) -> None:
        status, _, _ = platform.submit(key, body(index))
        statuses[status] += 1

    log(f"submitting {RUNS} runs over HTTP while a worker is killed every {KILL_EVERY[0]}-{KILL_EVERY[1]} s")
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(submit, range(RUNS)))
    log(f"submitted: {dict(statuses)}; waiting for every run to finish")

    def open_runs() -> int:
        return Run.objects.filter(tenant=tenant).exclude(status__in=Run.TERMINAL_STATUSES).count()

    while open_runs() and time.monotonic() < deadline - 120:
        time.sleep(2)
    stop_chaos.set()
    chaos_thread.join(timeout=30)
    log(f"chaos stopped after {kills['worker']} kills; letting the reaper finish the last ones")
    while open_runs() and time.monotonic() < deadline:
        time.sleep(2)

    with connection.cursor() as cursor:
        cursor.execute("""
            SELECT COALESCE(SUM(l.amount_micros) FILTER (WHERE j.phase = 'RESERVE' AND a.kind = 'HELD'), 0),
                   COALESCE(SUM(l.amount_micros) FILTER (WHERE j.phase = 'FINALIZE' AND a.kind = 'REVENUE'), 0),
                   COALESCE(SUM(l.amount_micros) FILTER (WHERE j.phase = 'FINALIZE' AND a.kind = 'AVAILABLE'), 0)
              FROM billing_journal j JOIN billing_journalleg l ON l.journal_id = j.id
              JOIN billing_account a ON a.id = l.account_id
             WHERE j.tenant_id = %s AND j.run_id IS NOT NULL""", [tenant.pk])
        reserved, charged, released = cursor.fetchone()
    held_open = sum(Run.objects.filter(tenant=tenant, money_state__in=["RESERVED", "AUDIT_REQUIRED"])
                    .values_list("reserved_micros", flat=True))
    leaked = reserved - charged - released - held_open
    outcomes = Counter(Run.objects.filter(tenant=tenant).values_list("status", "money_state", "error_reason"))
    violations = ledger_violations() + run_money_violations()
    platform.stop()

    elapsed = time.monotonic() - started
    print(f"\n# DPP soak: {RUNS} runs, 2 workers, {kills['worker']} SIGKILLs, {elapsed:.0f} s")
    print("runs per final state (status, money_state, reason):")
    for (status, money_state, reason), count in sorted(outcomes.items()):
        print(f"  {status:<11} {money_state:<15} {reason or '-':<30} {count}")
    print(f"micros reserved {reserved}, charged {charged}, released {released}, still held {held_open}")
    print(f"micros leaked {leaked}")
    print(f"check_ledger violations: {len(violations)}")
    for violation in violations[:20]:
        print(f"  - [{violation.check}] {violation.detail}")
    non_terminal = open_runs()
    if leaked or non_terminal or violations or statuses.get(202, 0) != RUNS:
        print(f"SOAK FAILED: leaked {leaked}, non-terminal {non_terminal}, violations {len(violations)}, "
              f"accepted {statuses.get(202, 0)}/{RUNS}")
        return 1
    print("SOAK OK: every run terminal, 0 micros leaked")
    return 0


if __name__ == "__main__":
    sys.exit(main())
