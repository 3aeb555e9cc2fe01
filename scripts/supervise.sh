#!/usr/bin/env bash
# scripts/supervise.sh NAME COMMAND [ARG...]: run COMMAND and restart it whenever it exits, like
# systemd's Restart=always. Every Procfile entry runs under it, so one process dying (a worker
# after a broker error, say) is restarted instead of honcho stopping the whole stack.
#
# - Back-off between restarts: 1 s, doubling up to 30 s; back to 1 s after a run of 60 s or more.
# - A command that keeps failing within 10 s of its start (DPP_SUPERVISE_MAX_QUICK_FAILURES times
#   in a row, 5 by default) is given up: that is a configuration error (a port in use, a bad
#   variable), and the supervisor exits with its status so honcho stops and shows it.
# - SIGTERM, SIGINT or SIGHUP (honcho's stop, Ctrl-C) stops the command with SIGTERM and ends the
#   supervisor with it: nothing is restarted while stopping. The command stays in the supervisor's
#   process group, so a signal to the group (honcho's killpg) reaches both.
set -u
name=${1:?usage: supervise.sh NAME COMMAND [ARG...]}
shift
[ "$#" -gt 0 ] || { echo "usage: supervise.sh NAME COMMAND [ARG...]" >&2; exit 2; }
max_quick=${DPP_SUPERVISE_MAX_QUICK_FAILURES:-5}
stopping=0
child=0

stop() {
  stopping=1
  # A background command of a non-interactive shell ignores SIGINT: always forward SIGTERM.
  if [ "$child" -gt 0 ]; then kill -TERM "$child" 2>/dev/null; fi
}
trap stop TERM INT HUP

say() { echo "supervise[$name]: $*" >&2; }

delay=1
quick=0
while [ "$stopping" -eq 0 ]; do
  started=$SECONDS
  "$@" &
  child=$!
  wait "$child"
  status=$?
  # wait returns early when a trapped signal arrives: wait again until the command is gone.
  while kill -0 "$child" 2>/dev/null; do
    wait "$child"
    status=$?
  done
  child=0
  if [ "$stopping" -ne 0 ]; then
    break
  fi
  ran=$((SECONDS - started))
  if [ "$ran" -ge 60 ]; then delay=1; fi
  if [ "$ran" -lt 10 ]; then quick=$((quick + 1)); else quick=0; fi
  if [ "$quick" -ge "$max_quick" ]; then
    say "exited with status $status $quick times in a row within 10 s of its start: giving up"
    exit "$status"
  fi
  say "exited with status $status after ${ran} s; restarting in ${delay} s"
  sleep "$delay" &
  child=$!
  wait "$child" 2>/dev/null
  kill "$child" 2>/dev/null
  child=0
  delay=$((delay * 2 > 30 ? 30 : delay * 2))
done
say "stopped"
exit 0
