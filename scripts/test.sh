#!/usr/bin/env bash
# `make test`: the whole suite against the real PostgreSQL and Redis of this machine, the moto
# emulator (started here unless one answers, and then stopped if we started it) and real Celery
# worker processes. Exits with pytest's code; "no tests collected" (5) is a failure.
set -uo pipefail
cd "$(dirname "$0")/.."
export DPP_ENV=test
# Fresh queues for every run of the suite; short SQS polls so workers stop quickly.
export DPP_QUEUE_PREFIX="test-$(date +%Y%m%d%H%M%S)-$$-"
export DPP_SQS_WAIT_SECONDS=1 DPP_SQS_POLLING_INTERVAL_MS=100
export DPP_EMULATOR_OWNER=$$  # see scripts/emulator.py: our stop never stops another run's emulator
pg_isready -h 127.0.0.1 -p 5432 -q 2>/dev/null || echo "warning: PostgreSQL on 127.0.0.1:5432 does not answer" >&2
redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1 || echo "warning: Redis on 127.0.0.1:6379 does not answer" >&2
.venv/bin/python scripts/emulator.py start || exit 1
trap '.venv/bin/python scripts/emulator.py stop >/dev/null' EXIT
status=0
.venv/bin/pytest "$@" || status=$?
if [ "$status" -eq 5 ]; then
  echo "pytest collected no tests: that is a failure" >&2
  exit 1
fi
exit "$status"
