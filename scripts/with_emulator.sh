#!/usr/bin/env bash
# Run a command with the local SQS+S3 emulator up; stop the emulator afterwards if we started it.
set -uo pipefail
cd "$(dirname "$0")/.."
export DPP_EMULATOR_OWNER=$$  # see scripts/emulator.py: our stop never stops another run's emulator
.venv/bin/python scripts/emulator.py start || exit 1
trap '.venv/bin/python scripts/emulator.py stop >/dev/null' EXIT
status=0
"$@" || status=$?
exit "$status"
