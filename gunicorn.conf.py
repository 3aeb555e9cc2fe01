"""Gunicorn hooks for the API (``gunicorn -c gunicorn.conf.py dpp.wsgi:application``).

Metrics run in prometheus_client's multiprocess mode (dpp/metrics.py) when
PROMETHEUS_MULTIPROC_DIR is set: the master wipes that directory before it forks its workers, and
marks each worker that exits as dead. Everything else (bind, workers, threads, timeout) stays on
the command line, where the Procfile and compose.yaml set it.
"""

from dpp.metrics import metrics_dir_wipe, metrics_process_dead


def on_starting(server):
    metrics_dir_wipe()


def child_exit(server, worker):
    metrics_process_dead(pid=worker.pid)
