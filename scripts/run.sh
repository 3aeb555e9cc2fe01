#!/usr/bin/env bash
# `make run`: PostgreSQL and Redis answer, the database exists (created if not), the emulator,
# migrations, static files, a demo tenant with a key, then api + worker + beat + flower in the
# foreground (honcho; each process under scripts/supervise.sh, which restarts it if it dies).
# On exit, stops the emulator only if this run started it.
set -uo pipefail
cd "$(dirname "$0")/.."
export PORT="${PORT:-8000}"
# honcho gives the first Procfile entry (api) $PORT, and the others $PORT+100, +200, ...
export DPP_EMULATOR_OWNER=$$  # see scripts/emulator.py: our stop never stops another run's emulator
.venv/bin/python scripts/preflight.py || exit 1
.venv/bin/python scripts/emulator.py start || exit 1
trap '.venv/bin/python scripts/emulator.py stop' EXIT
.venv/bin/python manage.py migrate --noinput || exit 1
.venv/bin/python manage.py collectstatic --noinput -v 0 || exit 1
.venv/bin/python manage.py seed_demo || exit 1
status=0
.venv/bin/honcho start -f Procfile || status=$?
exit "$status"
