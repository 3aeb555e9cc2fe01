"""What a worker does with one run: lease, execute under the timebox with a heartbeat, and
finalize in two phases (claim -> upload the S3 receipt -> commit).

Invariants kept here:
- a run executes only under a lease this worker claimed (runs/services/lease.py decides);
- every call to a state transition goes through ``with_db_reconnect`` (a dropped connection is
  retried: transitions are compare-and-set, so a retry of one that committed simply loses);
- the heartbeat stops before finalization starts, and always in ``finally``;
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
from runs.services import (
    run_claim_lease,
    run_extend_lease,
    run_fail_by_worker,
    run_finalize_claim,
    run_finalize_commit,
)

logger = logging.getLogger(__name__)

UPLOAD_ATTEMPTS = 3
DB_ATTEMPTS = 3
ENVELOPE_SCHEMA_VERSION = "1"
# Failures that are the platform's, not the pack's nor the customer's: the run is refunded.
PLATFORM_FAULTS = frozenset({"PACK_UNAVAILABLE"})


def with_db_reconnect(call, /, **kwargs):
    """Call the state transition ``call(**kwargs)``, reconnecting when the database connection
    was dropped (at most DB_ATTEMPTS tries).

    Retrying is safe: every transition is a compare-and-set. The claims take a token the caller
    chose before the first attempt, so a retry of one that did commit (its answer lost with the
    connection) finds the run already holding that token and reports a win, not a loss."""
    for attempt in range(1, DB_ATTEMPTS + 1):
        try:
            return call(**kwargs)
        except (OperationalError, InterfaceError):
            if attempt == DB_ATTEMPTS:
                raise
            logger.warning("database connection lost; reconnecting", exc_info=True, extra={"attempt": attempt})
            connection.close()
            time.sleep(0.5 * attempt)


class TimeboxExceeded(BaseException):
    """Raised inside the pack when its timebox ends. A BaseException so that a pack's own
    ``except Exception`` cannot swallow it."""


@contextmanager
def timebox(seconds: int):
    """Interrupt the block after ``seconds`` (SIGALRM; the pool runs tasks on the main thread).
    The elapsed time is checked again when the block returns, on any thread: a pack that
    swallowed the interruption (``except BaseException``) still ran over and is not charged
    as if it had completed."""
    started = time.monotonic()
    if threading.current_thread() is threading.main_thread():
        def _expired(signum, frame):
            raise TimeboxExceeded()

        previous = signal.signal(signal.SIGALRM, _expired)
        signal.setitimer(signal.ITIMER_REAL, seconds)
        try:
            yield
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, previous)
    else:
        yield
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

    def __init__(self, *, run_id, lease_token, message: SqsMessage | None, log_context: dict):
        self.run_id, self.lease_token, self.message = run_id, lease_token, message
        self.log_context = log_context
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
                logger.warning("heartbeat: lease no longer ours; stopping")
                return False
        except Exception:
            logger.warning("heartbeat: lease extension failed; will retry", exc_info=True)
            connection.close()  # a broken connection is replaced on the next beat
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
    run = with_db_reconnect(run_claim_lease, run_id=run_id, lease_token=uuid.uuid4())
    if run is None:
        logger.info("message for a run that is not QUEUED: acknowledged and ignored")
        return "ignored"
    heartbeat = LeaseHeartbeat(run_id=run.pk, lease_token=run.lease_token, message=message,
                               log_context=log_context or {})
    heartbeat.start()
    try:
        pack = pack_get(run.pack_type)
        if pack is None:
            raise PackExecutionError("PACK_UNAVAILABLE", f"pack type {run.pack_type!r} is not installed on this worker")
        fault_point("mid_execution")
        with timebox(run.timebox_sec):
            result = pack.execute(run.inputs, timebox_sec=run.timebox_sec)
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
    return _finalize(run=run, result=result)


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
