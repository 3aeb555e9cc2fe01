#!/usr/bin/env bash
# `make run`: emulator, migrations, a demo tenant with a key, then api + worker + beat + flower.
set -uo pipefail
cd "$(dirname "$0")/.."
export PORT="${PORT:-8000}"
.venv/bin/python scripts/emulator.py start || exit 1
trap '.venv/bin/python scripts/emulator.py stop' EXIT
.venv/bin/python manage.py migrate --noinput || exit 1
.venv/bin/python manage.py seed_demo || exit 1
exec_status=0
.venv/bin/honcho start -f Procfile || exec_status=$?
exit "$exec_status"
