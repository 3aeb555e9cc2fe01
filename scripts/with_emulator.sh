#!/usr/bin/env bash
# Run a command with the local SQS+S3 emulator up; stop the emulator afterwards if we started it.
set -uo pipefail
cd "$(dirname "$0")/.."
.venv/bin/python scripts/emulator.py start || exit 1
trap '.venv/bin/python scripts/emulator.py stop >/dev/null' EXIT
"$@"
