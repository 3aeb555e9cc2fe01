"""What a worker does with one run: lease, execute under the timebox with a heartbeat, and
finalize in two phases (claim -> upload the S3 receipt -> commit).

Invariants kept here:
- a run executes only under a lease this worker claimed (runs/services/lease.py decides);
- every call to a state transition goes through ``with_db_reconnect`` (a dropped connection is
  retried for up to DPP_WORKER_DB_RETRY_SECONDS: transitions are compare-and-set, and claims
  carry a token chosen before the first attempt, so a retry of one that committed wins again);
- the heartbeat stops before finalization starts, and always in ``finally``;
- a heartbeat that updates no row means the lease is no longer ours (the run was canceled, or
  reaped): the pack is stopped at once (``PackStopper``), nothing is finalized, the message's
  visibility is no longer extended and the task returns, so the message is acknowledged;
- S3 I/O happens outside transactions and row locks;
- a lost claim or commit means another actor finalized: this worker does nothing more;
- a charge never exceeds the reservation (a pack reporting more is capped and logged).
"""

from __future__ import annotations

import hashlib
import json
import logging
import signal
import threading
import time
import uuid
from contextlib import contextmanager
from dataclasses import dataclass

from django.conf import settings
from django.db import InterfaceError, OperationalError, connection
from django.utils import timezone

from billing.money import micros_to_usd
from dpp.aws import sqs_client
from dpp.context import bound_context
from runs import storage
from runs.faults import fault_point
from runs.models import Run
from runs.packs import PackExecutionError, pack_get
from runs.selectors import run_get_for_tenant
from runs.services import (
    run_claim_lease,
    run_extend_lease,
    run_fail_by_worker,
    run_finalize_claim,
    run_finalize_commit,
)

logger = logging.getLogger(__name__)

UPLOAD_ATTEMPTS = 3
# with_db_reconnect's back-off while the database is unreachable: 0.25 s doubling up to 2 s.
DB_RETRY_FIRST_DELAY_SECONDS = 0.25
DB_RETRY_MAX_DELAY_SECONDS = 2.0
ENVELOPE_SCHEMA_VERSION = "1"
# Failures that are the platform's, not the pack's nor the customer's: the run is refunded.
PLATFORM_FAULTS = frozenset({"PACK_UNAVAILABLE"})


def with_db_reconnect(call, /, **kwargs):
    """Call the state transition ``call(**kwargs)``, reconnecting while the database is
    unreachable, for at most DPP_WORKER_DB_RETRY_SECONDS (time.monotonic()); then re-raise.

    Retrying is safe: every transition is a compare-and-set. The claims take a token the caller
    chose before the first attempt, so a retry of one that did commit (its answer lost with the
    connection) finds the run already holding that token and reports a win, not a loss.

    Why a budget and not a few attempts: a worker that gives up during a database outage leaves
    its run to the reaper, which fails it at the minimum fee once the lease expires: the customer
    would pay for the platform's outage. Neither the heartbeat's extension nor the finalize claim
    requires an unexpired lease, so when the database returns this retry and the reaper race
    fairly by compare-and-set (with the production lease, 120 s renewed every 30 s, the lease
    outlives an outage shorter than the default budget of 90 s, and the worker wins). The budget
    holds a worker slot while it lasts; the task's hard time limit leaves room for it."""
    budget = settings.DPP_WORKER_DB_RETRY_SECONDS
    give_up_at = time.monotonic() + budget
    delay = DB_RETRY_FIRST_DELAY_SECONDS
    attempt = 0
    while True:
        attempt += 1
        try:
            return call(**kwargs)
        except (OperationalError, InterfaceError) as error:
            left = give_up_at - time.monotonic()
            if left <= 0:
                logger.error("database unreachable; giving up on this transition",
                             extra={"attempt": attempt, "retry_budget_seconds": budget,
                                    "transition": getattr(call, "__name__", "?"), "error": type(error).__name__})
                raise
            # The driver's message can name the host and user: log the class only.
            logger.warning("database connection lost; reconnecting",
                           extra={"attempt": attempt, "retry_in_seconds": round(min(delay, left), 3),
                                  "transition": getattr(call, "__name__", "?"), "error": type(error).__name__})
            connection.close()
            time.sleep(min(delay, left))
            delay = min(delay * 2, DB_RETRY_MAX_DELAY_SECONDS)


class TimeboxExceeded(BaseException):
    """Raised inside the pack when its timebox ends. A BaseException so that a pack's own
    ``except Exception`` cannot swallow it."""


class LeaseLost(BaseException):
    """Raised inside the pack when the heartbeat found the lease gone (the run was canceled or
    reaped). A BaseException for the same reason as TimeboxExceeded."""


class PackStopper:
    """Lets the heartbeat thread stop the pack that runs on the main thread: ``stop()`` records
    the request and, while a timebox is armed, fires its timer at once; the timebox's SIGALRM
    handler then raises LeaseLost instead of TimeboxExceeded. The lock makes sure no timer is
    set once the timebox has disarmed (a stray SIGALRM would otherwise kill the process)."""

    def __init__(self):
        self.requested = threading.Event()
        self._lock = threading.Lock()
        self._armed = False

    def arm(self) -> None:
        with self._lock:
            self._armed = True

    def disarm(self) -> None:
        with self._lock:
            self._armed = False
            signal.setitimer(signal.ITIMER_REAL, 0)

    def stop(self) -> None:
        self.requested.set()
        with self._lock:
            if self._armed:
                signal.setitimer(signal.ITIMER_REAL, 0.001)


@contextmanager
def timebox(seconds: int, *, stopper: PackStopper | None = None):
    """Interrupt the block after ``seconds`` (SIGALRM; the pool runs tasks on the main thread),
    or as soon as ``stopper`` is stopped (LeaseLost). The stopper and the elapsed time are checked
    again when the block returns, on any thread: a pack that swallowed the interruption
    (``except BaseException``) still ran over and is not charged as if it had completed."""
    started = time.monotonic()
    if threading.current_thread() is threading.main_thread():
        def _expired(signum, frame):
            if stopper is not None and stopper.requested.is_set():
                raise LeaseLost()
            raise TimeboxExceeded()

        previous = signal.signal(signal.SIGALRM, _expired)
        signal.setitimer(signal.ITIMER_REAL, seconds)
        if stopper is not None:
            stopper.arm()
            if stopper.requested.is_set():  # stopped before the timebox was armed
                signal.setitimer(signal.ITIMER_REAL, 0.001)
        try:
            yield
        finally:
            try:
                if stopper is not None:
                    stopper.disarm()
            finally:  # even when the stop lands during disarm (the LeaseLost then propagates)
                signal.setitimer(signal.ITIMER_REAL, 0)
                signal.signal(signal.SIGALRM, previous)
    else:
        yield
    if stopper is not None and stopper.requested.is_set():
        raise LeaseLost()
    if time.monotonic() - started > seconds:
        raise TimeboxExceeded()


@dataclass(frozen=True)
class SqsMessage:
    queue_url: str
    receipt_handle: str


class LeaseHeartbeat:
    """A thread that, every DPP_HEARTBEAT_SECONDS, extends the run's lease (on its own DB
    connection, guarded by the lease token) and the SQS message's visibility timeout. Its
    failures are logged and never reach the run."""

    def __init__(self, *, run_id, lease_token, message: SqsMessage | None, log_context: dict,
                 on_lost=None):
        self.run_id, self.lease_token, self.message = run_id, lease_token, message
        self.log_context = log_context
        self.on_lost = on_lost  # called once, from this thread, when the lease is found gone
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name=f"heartbeat-{run_id}", daemon=True)
        self.beats = 0

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=settings.DPP_HEARTBEAT_SECONDS + 15)

    def _loop(self) -> None:
        try:
            with bound_context(**self.log_context):
                while not self._stop.wait(settings.DPP_HEARTBEAT_SECONDS):
                    if not self._beat():
                        return
        finally:
            connection.close()  # this thread's own connection

    def _beat(self) -> bool:
        try:
            if not run_extend_lease(run_id=self.run_id, lease_token=self.lease_token):
                # Canceled, reaped, or finalizing: stop the pack, and the visibility extension
                # with this loop, so the message is acknowledged when the task returns.
                logger.warning("heartbeat: lease no longer ours; stopping")
                if self.on_lost is not None:
                    self.on_lost()
                return False
        except (OperationalError, InterfaceError) as error:
            # The database is unreachable: the class only (a driver's message can name the host
            # and user), no traceback every beat.
            logger.warning("heartbeat: lease extension failed; will retry", extra={"error": type(error).__name__})
            connection.close()  # a broken connection is replaced on the next beat
            return True
        except Exception:
            logger.warning("heartbeat: lease extension failed; will retry", exc_info=True)
            connection.close()
            return True
        if self.message is not None:
            try:
                sqs_client(read_timeout=5).change_message_visibility(
                    QueueUrl=self.message.queue_url, ReceiptHandle=self.message.receipt_handle,
                    VisibilityTimeout=settings.DPP_LEASE_SECONDS,
                )
            except Exception:
                logger.warning("heartbeat: visibility extension failed", exc_info=True)
        self.beats += 1
        logger.debug("heartbeat", extra={"beats": self.beats})
        return True


def envelope_build(*, run: Run, data: dict, charge_micros: int, logs: list, artifacts: list) -> bytes:
    envelope = {
        "schema_version": ENVELOPE_SCHEMA_VERSION,
        "run_id": str(run.pk),
        "pack_type": run.pack_type,
        "status": Run.Status.COMPLETED,
        "generated_at": timezone.now().isoformat(),
        "cost": {
            "reserved_usd": micros_to_usd(run.reserved_micros),
            "used_usd": micros_to_usd(charge_micros),
            "minimum_fee_usd": micros_to_usd(run.minimum_fee_micros),
        },
        "data": data,
        "artifacts": artifacts,
        "logs": logs,
        "meta": {"trace_id": run.trace_id},
    }
    return json.dumps(envelope, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def run_execute(*, run_id, message: SqsMessage | None = None, log_context: dict | None = None) -> str:
    """Execute one run; returns what happened (for logs and tests)."""
    fault_point("before_lease_claim")
    run = with_db_reconnect(run_claim_lease, run_id=run_id, lease_token=uuid.uuid4())
    if run is None:
        # A duplicate or redelivered message, or a run canceled (or failed) before it started.
        logger.info("message for a run that is not QUEUED: acknowledged and ignored")
        return "ignored"
    stopper = PackStopper()
    heartbeat = LeaseHeartbeat(run_id=run.pk, lease_token=run.lease_token, message=message,
                               log_context=log_context or {}, on_lost=stopper.stop)
    heartbeat.start()
    try:
        pack = pack_get(run.pack_type)
        if pack is None:
            raise PackExecutionError("PACK_UNAVAILABLE", f"pack type {run.pack_type!r} is not installed on this worker")
        fault_point("mid_execution")
        with timebox(run.timebox_sec, stopper=stopper):
            result = pack.execute(run.inputs, timebox_sec=run.timebox_sec)
    except LeaseLost:
        heartbeat.stop()
        return _lease_lost(run=run)
    except TimeboxExceeded:
        heartbeat.stop()
        with_db_reconnect(run_fail_by_worker, run=run, reason="TIMEBOX_EXCEEDED", detail=f"the pack ran over {run.timebox_sec} s")
        return "timebox_exceeded"
    except PackExecutionError as error:
        heartbeat.stop()
        # PACK_UNAVAILABLE is the platform's fault (a rolling deploy): everything is released.
        with_db_reconnect(run_fail_by_worker, run=run, reason=error.reason_code, detail=error.detail,
                          refund=error.reason_code in PLATFORM_FAULTS)
        return "pack_failed"
    except Exception as error:
        heartbeat.stop()
        logger.exception("pack raised an unexpected error")
        with_db_reconnect(run_fail_by_worker, run=run, reason="PACK_ERROR", detail=f"the pack raised {type(error).__name__}")
        return "pack_error"
    finally:
        heartbeat.stop()  # idempotent; always before finalization
    if stopper.requested.is_set():  # the pack ended just as the lease was found gone
        return _lease_lost(run=run)
    return _finalize(run=run, result=result)


def _lease_lost(*, run: Run) -> str:
    """The lease is gone: nothing to finalize (whoever took the run settled it)."""
    current = with_db_reconnect(run_get_for_tenant, tenant=run.tenant_id, run_id=run.pk)
    if current is not None and current.status == Run.Status.CANCELED:
        logger.info("run canceled: pack stopped, not finalized", extra={"run_id": str(run.pk)})
        return "canceled"
    logger.warning("lease lost: pack stopped, not finalized",
                   extra={"run_id": str(run.pk), "status": getattr(current, "status", None)})
    return "lease_lost"


def _finalize(*, run: Run, result) -> str:
    charge = result.actual_cost_micros
    if not isinstance(charge, int) or isinstance(charge, bool) or charge < 0:
        with_db_reconnect(run_fail_by_worker, run=run, reason="PACK_ERROR", detail="the pack reported an invalid cost")
        return "pack_error"
    if charge > run.reserved_micros:
        logger.error("pack reported a cost above the reservation; charging the cap",
                     extra={"reported_micros": charge, "reserved_micros": run.reserved_micros})
        charge = run.reserved_micros
    # The envelope is built and hashed BEFORE the claim: a pack returning data JSON cannot
    # encode fails here, under its lease, instead of leaving the run CLAIMED for the reconciler.
    try:
        body = envelope_build(run=run, data=result.data, charge_micros=charge, logs=list(result.logs),
                              artifacts=list(result.artifacts))
    except (TypeError, ValueError, RecursionError) as error:
        logger.warning("the pack's result cannot be serialised", exc_info=True)
        with_db_reconnect(run_fail_by_worker, run=run, reason="PACK_ERROR",
                          detail=f"the pack returned a result that cannot be serialised ({type(error).__name__})")
        return "pack_error"
    sha256 = hashlib.sha256(body).hexdigest()
    fault_point("before_finalize_claim")
    token = with_db_reconnect(run_finalize_claim, run=run, finalize_token=uuid.uuid4())
    if token is None:
        logger.warning("finalize claim lost: another actor finalized this run")
        return "claim_lost"
    fault_point("after_claim")
    for attempt in range(1, UPLOAD_ATTEMPTS + 1):
        try:
            storage.envelope_put(bucket=run.result_bucket, key=run.result_key, body=body, sha256=sha256,
                                 actual_cost_micros=charge, finalize_token=token)
            break
        except Exception:
            logger.warning("result upload failed", exc_info=True, extra={"attempt": attempt})
            if attempt == UPLOAD_ATTEMPTS:
                # The object may or may not exist: the reconciler decides from S3 later.
                logger.error("result upload failed; leaving the run CLAIMED for the reconciler")
                return "upload_failed"
            time.sleep(0.5 * attempt)
    fault_point("after_upload")
    if not with_db_reconnect(run_finalize_commit, run=run, finalize_token=token, charge_micros=charge, sha256=sha256):
        logger.warning("finalize commit lost: another actor finalized this run")
        return "commit_lost"
    fault_point("after_commit")
    return "completed"
