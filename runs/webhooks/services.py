"""Writes of webhooks: recording events, endpoints and secrets, delivery attempts, the sweep.

Invariants kept here:
- ``webhook_events_record`` runs INSIDE the caller's transaction (it asserts so) and inserts the
  event and its delivery rows there, so an event exists if and only if the transition it reports
  committed; its task is sent only on commit (or later by the sweep), never inside it;
- the body is serialised once, at recording; every attempt sends the same bytes, signed afresh
  with the timestamp of that attempt;
- an attempt first claims its delivery (conditional UPDATE: PENDING, due, not claimed), then does
  the network I/O outside any transaction, then records the attempt and the outcome in one
  transaction guarded by its claim token; a worker that dies mid-attempt leaves a claim that
  expires, and the sweep sends the delivery again: retries live in PostgreSQL, never in memory;
- every claimed attempt that gets past the endpoint check is recorded, an exception inside DPP
  included (error_class "internal"): attempts_count grows and the delivery ends at max_attempts;
- the URL is checked (ssrf.target_check) at registration and at every attempt, and the
  connection goes to the checked address;
- 410 disables an endpoint and ends the delivery; the last scheduled failure makes it DEAD;
- webhooks never move money.

run.canceled: the cancel service (runs.services.cancel) calls ``webhook_events_record`` with
``event_type=EventType.RUN_CANCELED`` inside the transaction of its transition, as the completed
and failed transitions do.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import partial

from celery import current_app
from django.conf import settings
from django.core.serializers.json import DjangoJSONEncoder
from django.db import IntegrityError, connection, transaction
from django.db.models import F, Q
from django.utils import timezone

from dpp.errors import DomainError, ValidationProblem
from dpp.metrics import webhook_delivery_observe
from runs.webhooks import sender, ssrf
from runs.webhooks.crypto import secret_decrypt, secret_encrypt, secret_generate
from runs.webhooks.locks import endpoint_lock, tenant_endpoints_lock
from runs.webhooks.models import (
    DEFAULT_EVENT_TYPES,
    SUBSCRIBABLE_EVENT_TYPES,
    EventType,
    TenantWebhookSecret,
    WebhookAttempt,
    WebhookAuditEntry,
    WebhookDelivery,
    WebhookEndpoint,
    WebhookEvent,
)
from runs.webhooks.signing import webhook_headers_sign

logger = logging.getLogger(__name__)

ROTATION_OVERLAP = timedelta(hours=24)
DELIVERY_TASK_NAME = "runs.webhooks.tasks.webhook_delivery_attempt_task"


# --- errors -----------------------------------------------------------------------------------


class WebhookNotFound(DomainError):
    slug = "not-found"


class WebhookEndpointLimitExceeded(DomainError):
    slug = "webhook-endpoint-limit-exceeded"


class WebhookEndpointDisabled(DomainError):
    slug = "webhook-endpoint-disabled"


def _url_problem(error: Exception, field: str = "url") -> ValidationProblem:
    errors: dict = {field.rpartition(".")[2]: str(error)}
    for part in reversed(field.split(".")[:-1]):  # "webhook.url" -> {"webhook": {"url": ...}}
        errors = {part: errors}
    return ValidationProblem(f"{field}: {error}", errors=errors)


def webhook_url_check(*, url: str, field: str = "url", resolver=None) -> None:
    """Registration check of a receiver URL (no transaction is open: it resolves DNS)."""
    try:
        ssrf.target_check(url, resolver=resolver)
    except (ssrf.UrlRefused, ssrf.AddressRefused) as error:
        raise _url_problem(error, field) from None


def event_types_validate(event_types) -> list[str]:
    if not isinstance(event_types, list) or len(event_types) > len(SUBSCRIBABLE_EVENT_TYPES):
        raise ValidationProblem("event_types: a list of event types", errors={"event_types": "must be a list"})
    unknown = [item for item in event_types if item not in SUBSCRIBABLE_EVENT_TYPES]
    if unknown:
        raise ValidationProblem(f"event_types: unknown event type {unknown[0]!r}",
                                errors={"event_types": f"unknown: {', '.join(map(str, unknown))}"})
    return list(dict.fromkeys(event_types))


# --- recording events (inside the caller's transaction) -------------------------------------------


@dataclass(frozen=True)
class _Target:
    url: str
    endpoint: WebhookEndpoint | None


def _body(*, event_id: str, event_type: str, created_at: datetime, payload: dict) -> str:
    document = {"id": event_id, "type": event_type, "timestamp": created_at.isoformat().replace("+00:00", "Z"),
                "data": payload}
    return json.dumps(document, cls=DjangoJSONEncoder, separators=(",", ":"), sort_keys=True, ensure_ascii=False)


def _event_insert(*, tenant_id, event_type: str, payload: dict, run_id, targets: list[_Target],
                  now: datetime) -> WebhookEvent:
    event_id = f"evt_{uuid.uuid4().hex}"
    event = WebhookEvent.objects.create(
        id=event_id, tenant_id=tenant_id, type=event_type, run_id=run_id, created_at=now,
        body=_body(event_id=event_id, event_type=event_type, created_at=now, payload=payload),
    )
    max_attempts = len(settings.DPP_WEBHOOK_RETRY_SCHEDULE) + 1
    deliveries = WebhookDelivery.objects.bulk_create([
        WebhookDelivery(
            tenant_id=tenant_id, event=event, url=target.url, endpoint=target.endpoint,
            target=WebhookDelivery.Target.ENDPOINT if target.endpoint else WebhookDelivery.Target.RUN,
            next_attempt_at=now, max_attempts=max_attempts, created_at=now, updated_at=now,
        )
        for target in targets
    ])
    transaction.on_commit(partial(webhook_deliveries_enqueue, delivery_ids=[d.pk for d in deliveries]))
    return event


def webhook_events_record(*, tenant_id, event_type: str, payload: dict | Callable[[], dict], run_id=None,
                          run_webhook: dict | None = None, now: datetime | None = None) -> WebhookEvent | None:
    """Record one event and a delivery per subscriber, in the CALLER's transaction.

    ``payload`` is the event's ``data`` object (for run events: ``{"run": <GET /v1/runs/{id}
    without the presigned URL>, "version": <run version>}``), or a function building it, called
    only when someone subscribes. ``run_webhook`` is the run's own ``{"url", "events"}`` (signed
    with the tenant's default secret). No subscriber: no row, None.
    """
    if not connection.in_atomic_block:
        raise RuntimeError("webhook_events_record must run inside the transaction of the transition it reports")
    if event_type not in EventType.values or event_type == EventType.WEBHOOK_TEST:
        raise ValueError(f"not a recordable event type: {event_type!r}")
    now = now or timezone.now()
    targets = [
        _Target(url=endpoint.url, endpoint=endpoint)
        for endpoint in WebhookEndpoint.objects.filter(tenant_id=tenant_id, enabled=True, deleted_at__isnull=True)
        .order_by("created_at", "id")
        if endpoint.subscribes_to(event_type)
    ]
    if run_webhook and run_webhook.get("url"):
        events = run_webhook.get("events") or list(DEFAULT_EVENT_TYPES)
        if event_type in events:
            targets.append(_Target(url=run_webhook["url"], endpoint=None))
    if not targets:
        return None
    if callable(payload):
        payload = payload()
    return _event_insert(tenant_id=tenant_id, event_type=event_type, payload=payload, run_id=run_id,
                         targets=targets, now=now)


def webhook_deliveries_enqueue(*, delivery_ids: list, now: datetime | None = None) -> int:
    """Send each delivery's task (outside any transaction) and note it; a failed send leaves
    ``enqueued_at`` NULL for the sweep. Duplicates are harmless: the attempt claims first."""
    sent = 0
    for delivery_id in delivery_ids:
        try:
            # By name: the task module imports this one (no import cycle).
            current_app.send_task(
                DELIVERY_TASK_NAME, kwargs={"delivery_id": str(delivery_id)},
                queue=settings.DPP_WEBHOOK_QUEUE_NAME, retry=True,
                retry_policy={"max_retries": 2, "interval_start": 0, "interval_step": 0.2, "interval_max": 0.5},
            )
        except Exception:  # the broker is down: the sweep sends it later
            logger.warning("webhook delivery enqueue failed; the sweep will send it", exc_info=True,
                           extra={"delivery_id": str(delivery_id)})
            WebhookDelivery.objects.filter(pk=delivery_id).update(enqueued_at=None)
            continue
        WebhookDelivery.objects.filter(pk=delivery_id, status=WebhookDelivery.Status.PENDING).update(
            enqueued_at=now or timezone.now())
        sent += 1
    return sent


# --- secrets ------------------------------------------------------------------------------------------


def _valid_secrets(*, current_encrypted: str, previous_encrypted: str, previous_expires_at, now) -> list[str]:
    secrets = [secret_decrypt(current_encrypted)]
    if previous_encrypted and previous_expires_at and previous_expires_at > now:
        secrets.append(secret_decrypt(previous_encrypted))
    return secrets


def _default_secret_row(*, tenant_id) -> TenantWebhookSecret:
    """The tenant's default secret row, created on first use (concurrent first uses agree)."""
    row = TenantWebhookSecret.objects.filter(tenant_id=tenant_id).first()
    if row is None:
        try:
            with transaction.atomic():
                row = TenantWebhookSecret.objects.create(tenant_id=tenant_id,
                                                         secret_encrypted=secret_encrypt(secret_generate()))
        except IntegrityError:
            row = TenantWebhookSecret.objects.get(tenant_id=tenant_id)
    return row


def webhook_default_secret_get(*, tenant_id) -> str:
    """The tenant's default secret, created on first use (concurrent first uses agree)."""
    return secret_decrypt(_default_secret_row(tenant_id=tenant_id).secret_encrypted)


def webhook_default_secret_rotate(*, tenant_id, now: datetime | None = None) -> str:
    """A new default secret; the previous one keeps signing (second signature) for 24 h."""
    now = now or timezone.now()
    webhook_default_secret_get(tenant_id=tenant_id)
    new_secret = secret_generate()
    with transaction.atomic(durable=True):
        row = TenantWebhookSecret.objects.select_for_update().get(tenant_id=tenant_id)
        row.previous_secret_encrypted = row.secret_encrypted
        row.previous_secret_expires_at = now + ROTATION_OVERLAP
        row.secret_encrypted = secret_encrypt(new_secret)
        row.rotated_at = now
        row.save(update_fields=["previous_secret_encrypted", "previous_secret_expires_at", "secret_encrypted",
                                "rotated_at"])
    logger.info("default webhook secret rotated", extra={"tenant_id": str(tenant_id)})
    return new_secret


# --- endpoints ----------------------------------------------------------------------------------------


def webhook_endpoint_create(*, tenant, url: str, event_types: list[str], description: str = "",
                            resolver=None) -> tuple[WebhookEndpoint, str]:
    """Register an endpoint (URL checked first, outside the transaction); its secret is
    returned once. The plan's endpoint limit is exact under concurrency (tenant lock)."""
    webhook_url_check(url=url, resolver=resolver)
    event_types = event_types_validate(event_types)
    secret = secret_generate()
    with transaction.atomic(durable=True):
        tenant_endpoints_lock(tenant_id=tenant.pk)
        limit = type(tenant).objects.select_related("plan").get(pk=tenant.pk).plan.max_webhook_endpoints
        count = WebhookEndpoint.objects.filter(tenant=tenant, deleted_at__isnull=True).count()
        if count >= limit:
            raise WebhookEndpointLimitExceeded(f"The plan allows {limit} webhook endpoints; {count} exist.")
        endpoint = WebhookEndpoint.objects.create(tenant=tenant, url=url, event_types=event_types,
                                                  description=description, secret_encrypted=secret_encrypt(secret))
    logger.info("webhook endpoint created", extra={"endpoint_id": str(endpoint.pk)})
    return endpoint, secret


def webhook_endpoint_update(*, tenant, endpoint_id, url: str | None = None, event_types: list[str] | None = None,
                            enabled: bool | None = None, description: str | None = None,
                            resolver=None) -> WebhookEndpoint:
    if url is not None:
        webhook_url_check(url=url, resolver=resolver)
    if event_types is not None:
        event_types = event_types_validate(event_types)
    with transaction.atomic(durable=True):
        endpoint = endpoint_lock(queryset=WebhookEndpoint.objects.filter(tenant=tenant, deleted_at__isnull=True),
                                 endpoint_id=endpoint_id)
        if endpoint is None:
            raise WebhookNotFound("No such webhook endpoint.")
        fields = ["updated_at"]
        if url is not None:
            endpoint.url = url
            fields.append("url")
        if event_types is not None:
            endpoint.event_types = event_types
            fields.append("event_types")
        if description is not None:
            endpoint.description = description
            fields.append("description")
        if enabled is not None:
            endpoint.enabled = enabled
            endpoint.disabled_reason = "" if enabled else "disabled by the tenant"
            fields += ["enabled", "disabled_reason"]
        endpoint.save(update_fields=fields)
    return endpoint


def _end_pending_deliveries(*, endpoint_id, why: str, now: datetime) -> int:
    return WebhookDelivery.objects.filter(endpoint_id=endpoint_id, status=WebhookDelivery.Status.PENDING).update(
        status=WebhookDelivery.Status.FAILED, last_error=why[:300], next_attempt_at=None, claim_token=None,
        claimed_until=None, finished_at=now, updated_at=now)


def webhook_endpoint_delete(*, tenant, endpoint_id, now: datetime | None = None) -> None:
    """Soft delete (deliveries keep their endpoint); its pending deliveries end as FAILED."""
    now = now or timezone.now()
    with transaction.atomic(durable=True):
        tenant_endpoints_lock(tenant_id=tenant.pk)
        won = WebhookEndpoint.objects.filter(tenant=tenant, pk=endpoint_id, deleted_at__isnull=True).update(
            deleted_at=now, enabled=False, disabled_reason="deleted", updated_at=now)
        if won != 1:
            raise WebhookNotFound("No such webhook endpoint.")
        _end_pending_deliveries(endpoint_id=endpoint_id, why="endpoint deleted", now=now)


def webhook_endpoint_rotate_secret(*, tenant, endpoint_id, now: datetime | None = None) -> tuple[WebhookEndpoint, str]:
    """A new secret, returned once; the previous one keeps signing beside it for 24 h."""
    now = now or timezone.now()
    new_secret = secret_generate()
    with transaction.atomic(durable=True):
        endpoint = endpoint_lock(queryset=WebhookEndpoint.objects.filter(tenant=tenant, deleted_at__isnull=True),
                                 endpoint_id=endpoint_id)
        if endpoint is None:
            raise WebhookNotFound("No such webhook endpoint.")
        endpoint.previous_secret_encrypted = endpoint.secret_encrypted
        endpoint.previous_secret_expires_at = now + ROTATION_OVERLAP
        endpoint.secret_encrypted = secret_encrypt(new_secret)
        endpoint.save(update_fields=["previous_secret_encrypted", "previous_secret_expires_at", "secret_encrypted",
                                     "updated_at"])
    logger.info("webhook endpoint secret rotated", extra={"endpoint_id": str(endpoint.pk)})
    return endpoint, new_secret


def webhook_endpoint_test(*, tenant, endpoint_id, now: datetime | None = None) -> WebhookDelivery:
    """A ``webhook.test`` event delivered to this endpoint only, whatever its event types."""
    now = now or timezone.now()
    with transaction.atomic(durable=True):
        endpoint = WebhookEndpoint.objects.filter(tenant=tenant, pk=endpoint_id, deleted_at__isnull=True).first()
        if endpoint is None:
            raise WebhookNotFound("No such webhook endpoint.")
        if not endpoint.enabled:
            raise WebhookEndpointDisabled("The endpoint is disabled; enable it (PATCH enabled=true) first.")
        event = _event_insert(
            tenant_id=tenant.pk, event_type=EventType.WEBHOOK_TEST, run_id=None, now=now,
            payload={"endpoint_id": str(endpoint.pk), "message": "A test event from DPP."},
            targets=[_Target(url=endpoint.url, endpoint=endpoint)],
        )
    return WebhookDelivery.objects.select_related("event").defer("event__body").get(event=event, endpoint=endpoint)


def _audit(*, actor: str, action: str, tenant_id, reason: str, endpoint_id=None, delivery_id=None) -> None:
    WebhookAuditEntry.objects.create(actor=actor[:150], action=action, tenant_id=tenant_id, reason=reason[:500],
                                     endpoint_id=endpoint_id, delivery_id=delivery_id)


def webhook_endpoint_disable(*, endpoint_id, actor: str, reason: str, now: datetime | None = None) -> bool:
    """An operator disables an endpoint (audit row in the same transaction); pending deliveries end."""
    now = now or timezone.now()
    with transaction.atomic(durable=True):
        endpoint = endpoint_lock(queryset=WebhookEndpoint.objects.all(), endpoint_id=endpoint_id)
        if endpoint is None or not endpoint.enabled:
            return False
        WebhookEndpoint.objects.filter(pk=endpoint.pk).update(enabled=False, disabled_reason=f"operator: {reason}"[:200],
                                                              updated_at=now)
        _end_pending_deliveries(endpoint_id=endpoint.pk, why="endpoint disabled by an operator", now=now)
        _audit(actor=actor, action="endpoint_disable", tenant_id=endpoint.tenant_id, reason=reason,
               endpoint_id=endpoint.pk)
    logger.warning("webhook endpoint disabled by an operator", extra={"endpoint_id": str(endpoint_id), "actor": actor})
    return True


def webhook_delivery_retry(*, delivery_id, actor: str, reason: str = "", tenant=None,
                           now: datetime | None = None) -> WebhookDelivery:
    """Send a delivery again now, with the same event id and body. A finished delivery gets one
    more attempt; a pending one is made due now. ``tenant`` scopes API callers (404 otherwise)."""
    now = now or timezone.now()
    with transaction.atomic(durable=True):
        queryset = WebhookDelivery.objects.select_for_update(of=("self",)).select_related("endpoint")
        if tenant is not None:
            queryset = queryset.filter(tenant=tenant)
        delivery = queryset.filter(pk=delivery_id).first()
        if delivery is None:
            raise WebhookNotFound("No such webhook delivery.")
        endpoint = delivery.endpoint
        if endpoint is not None and (endpoint.deleted_at is not None or not endpoint.enabled):
            raise WebhookEndpointDisabled("The delivery's endpoint is disabled or deleted.")
        max_attempts = delivery.max_attempts
        if delivery.status != WebhookDelivery.Status.PENDING:
            max_attempts = delivery.attempts_count + 1
        WebhookDelivery.objects.filter(pk=delivery.pk).update(
            status=WebhookDelivery.Status.PENDING, next_attempt_at=now, max_attempts=max_attempts,
            finished_at=None, enqueued_at=None, updated_at=now)
        _audit(actor=actor, action="delivery_retry", tenant_id=delivery.tenant_id, reason=reason,
               delivery_id=delivery.pk, endpoint_id=delivery.endpoint_id)
        transaction.on_commit(partial(webhook_deliveries_enqueue, delivery_ids=[delivery.pk]))
    return WebhookDelivery.objects.select_related("event").defer("event__body").get(pk=delivery.pk)


# --- attempts ------------------------------------------------------------------------------------------


def _delivery_claim(*, delivery_id, now: datetime) -> uuid.UUID | None:
    token = uuid.uuid4()
    won = WebhookDelivery.objects.filter(
        Q(claimed_until__isnull=True) | Q(claimed_until__lt=now),
        pk=delivery_id, status=WebhookDelivery.Status.PENDING, next_attempt_at__lte=now,
    ).update(claim_token=token, claimed_until=now + timedelta(seconds=settings.DPP_WEBHOOK_CLAIM_SECONDS),
             updated_at=now)
    return token if won == 1 else None


def _delivery_secrets(delivery: WebhookDelivery, now: datetime) -> list[str]:
    if delivery.endpoint is not None:
        endpoint = delivery.endpoint
        return _valid_secrets(current_encrypted=endpoint.secret_encrypted,
                              previous_encrypted=endpoint.previous_secret_encrypted,
                              previous_expires_at=endpoint.previous_secret_expires_at, now=now)
    row = _default_secret_row(tenant_id=delivery.tenant_id)
    return _valid_secrets(current_encrypted=row.secret_encrypted, previous_encrypted=row.previous_secret_encrypted,
                          previous_expires_at=row.previous_secret_expires_at, now=now)


def _delay_after(*, attempt_number: int, retry_after: int | None) -> int:
    schedule = settings.DPP_WEBHOOK_RETRY_SCHEDULE
    delay = schedule[min(attempt_number, len(schedule)) - 1]
    if retry_after is not None:
        delay = max(delay, retry_after)
    return delay


def webhook_delivery_attempt(*, delivery_id, resolver=None, connection_factory=None) -> str:
    """One attempt of one delivery: claim, check the URL, sign, send, record. Returns the outcome."""
    claimed_at = timezone.now()
    token = _delivery_claim(delivery_id=delivery_id, now=claimed_at)
    if token is None:
        return "not_due"  # done, not due yet, or another worker holds it
    delivery = WebhookDelivery.objects.select_related("event", "endpoint").get(pk=delivery_id)
    endpoint = delivery.endpoint
    if endpoint is not None and (endpoint.deleted_at is not None or not endpoint.enabled):
        _delivery_finish(delivery=delivery, token=token, status=WebhookDelivery.Status.FAILED,
                         why="endpoint disabled or deleted", now=timezone.now())
        return "endpoint_disabled"
    started_at = timezone.now()
    started = time.monotonic()

    def failure(error_class: str, detail: str) -> sender.SendResult:
        return sender.SendResult(status_code=None, error_class=error_class, error_detail=detail[:300],
                                 duration_ms=int((time.monotonic() - started) * 1000), retry_after_seconds=None,
                                 response_excerpt="")

    try:
        target = ssrf.target_check(delivery.url, resolver=resolver)
        body = delivery.event.body.encode("utf-8")
        headers = webhook_headers_sign(secrets=_delivery_secrets(delivery, started_at), msg_id=delivery.event_id,
                                       timestamp=int(time.time()), body=body)
        result = sender.post(target=target, body=body, headers=headers, connection_factory=connection_factory)
    except (ssrf.UrlRefused, ssrf.AddressRefused) as error:
        result = failure(error.error_class, str(error))
    except Exception as error:
        # Not a network outcome (sender.post returns those): a bug, an undecryptable secret...
        # It is still an attempt, counted, so the delivery ends at max_attempts instead of being
        # claimed and resent by the sweep forever. Neither the secrets nor the headers are logged;
        # the detail stored (the tenant sees it) names only the exception's type.
        logger.exception("webhook attempt failed inside DPP",
                         extra={"delivery_id": str(delivery.pk), "event_id": delivery.event_id})
        result = failure("internal", f"internal error ({type(error).__name__})")
    return _attempt_record(delivery=delivery, token=token, started_at=started_at, result=result)


def _delivery_finish(*, delivery: WebhookDelivery, token, status: str, why: str, now: datetime) -> bool:
    return WebhookDelivery.objects.filter(pk=delivery.pk, claim_token=token,
                                          status=WebhookDelivery.Status.PENDING).update(
        status=status, last_error=why[:300], next_attempt_at=None, claim_token=None, claimed_until=None,
        finished_at=now, updated_at=now) == 1


# The outcome of an attempt as dpp_webhook_deliveries_total counts it.
_METRIC_OUTCOMES = {"succeeded": "succeeded", "retry": "failed", "dead": "dead", "gone": "disabled"}


def _attempt_record(*, delivery: WebhookDelivery, token, started_at: datetime, result: sender.SendResult) -> str:
    now = timezone.now()
    number = delivery.attempts_count + 1
    common = dict(attempts_count=F("attempts_count") + 1, last_status_code=result.status_code,
                  last_error=(result.error_detail or "")[:300], claim_token=None, claimed_until=None, updated_at=now)
    if result.succeeded:
        outcome, fields = "succeeded", dict(status=WebhookDelivery.Status.SUCCEEDED, next_attempt_at=None,
                                            finished_at=now)
    elif result.status_code == 410:
        outcome, fields = "gone", dict(status=WebhookDelivery.Status.FAILED, next_attempt_at=None, finished_at=now)
    elif result.error_class == "url_refused" or number >= delivery.max_attempts:
        outcome, fields = "dead", dict(status=WebhookDelivery.Status.DEAD, next_attempt_at=None, finished_at=now)
    else:
        delay = _delay_after(attempt_number=number, retry_after=result.retry_after_seconds)
        outcome, fields = "retry", dict(next_attempt_at=now + timedelta(seconds=delay), enqueued_at=None)
    with transaction.atomic(durable=True):
        if outcome == "gone" and delivery.endpoint_id is not None:
            # The lock order of every writer (delete and disable too): the endpoint, then its
            # deliveries. Updating this delivery first and the endpoint after would deadlock.
            endpoint_lock(queryset=WebhookEndpoint.objects.all(), endpoint_id=delivery.endpoint_id)
        won = WebhookDelivery.objects.filter(pk=delivery.pk, claim_token=token,
                                             status=WebhookDelivery.Status.PENDING).update(**common, **fields)
        if won != 1:
            # Our claim expired and someone else took over (or an operator ended it): keep the
            # record of what we did, nothing else.
            logger.warning("webhook attempt finished after its claim was lost", extra={"delivery_id": str(delivery.pk)})
            return "claim_lost"
        WebhookAttempt.objects.create(
            delivery=delivery, number=number, started_at=started_at, duration_ms=result.duration_ms,
            status_code=result.status_code, error_class=result.error_class, error_detail=result.error_detail,
            response_excerpt=result.response_excerpt,
        )
        if outcome == "gone" and delivery.endpoint_id is not None:
            WebhookEndpoint.objects.filter(pk=delivery.endpoint_id, enabled=True).update(
                enabled=False, disabled_reason="the receiver answered 410 Gone", updated_at=now)
            _end_pending_deliveries(endpoint_id=delivery.endpoint_id, why="endpoint disabled: 410 Gone", now=now)
    webhook_delivery_observe(outcome=_METRIC_OUTCOMES[outcome])
    log = logger.info if outcome == "succeeded" else logger.warning
    log("webhook attempt", extra={"delivery_id": str(delivery.pk), "event_id": delivery.event_id, "attempt": number,
                                  "outcome": outcome, "status_code": result.status_code,
                                  "error_class": result.error_class, "duration_ms": result.duration_ms})
    return outcome


# --- the sweep (beat) ----------------------------------------------------------------------------------


def webhook_deliveries_sweep(*, now: datetime, batch_size: int | None = None) -> dict:
    """Send the due deliveries whose task is not on its way: retries whose time came, sends that
    failed, attempts whose worker died (claim expired). Bounded; safe to overlap (SKIP LOCKED)."""
    batch_size = batch_size or settings.DPP_WEBHOOK_SWEEP_BATCH_SIZE
    resend_before = now - timedelta(seconds=settings.DPP_WEBHOOK_REQUEUE_SECONDS)
    with transaction.atomic(durable=True):
        ids = list(
            WebhookDelivery.objects.select_for_update(skip_locked=True)
            .filter(Q(claimed_until__isnull=True) | Q(claimed_until__lt=now),
                    Q(enqueued_at__isnull=True) | Q(enqueued_at__lt=resend_before),
                    status=WebhookDelivery.Status.PENDING, next_attempt_at__lte=now)
            .order_by("next_attempt_at").values_list("pk", flat=True)[:batch_size]
        )
        if ids:
            WebhookDelivery.objects.filter(pk__in=ids).update(enqueued_at=now)
    sent = webhook_deliveries_enqueue(delivery_ids=ids, now=now) if ids else 0
    return {"due": len(ids), "sent": sent}
