"""Recording events and delivering them to a real receiver (a threaded HTTP server on
127.0.0.1): signatures checked with the reference verifier, retries, 410, redirects, rotation,
the SSRF check at every attempt, the claim and the sweep."""

from __future__ import annotations

import json
import threading
import time
import uuid
from datetime import timedelta

import pytest
from django.db import connection, transaction
from django.utils import timezone
from standardwebhooks import Webhook

from dpp import metrics
from runs.ops import ops_figures
from runs.webhooks import services
from runs.webhooks.models import (
    EventType,
    WebhookAttempt,
    WebhookDelivery,
    WebhookEndpoint,
    WebhookEvent,
)
from tests.runs.webhooks.receiver import Reply
from tests.runs.webhooks.test_ssrf import PUBLIC, REFUSED

RUN_PAYLOAD = {"run": {"run_id": "r1", "status": "COMPLETED"}, "version": 4}


def record(tenant, event_type=EventType.RUN_COMPLETED, *, run_webhook=None, payload=RUN_PAYLOAD):
    with transaction.atomic():
        return services.webhook_events_record(tenant_id=tenant.pk, event_type=event_type,
                                              payload=payload, run_id=uuid.uuid4(),
                                              run_webhook=run_webhook)


def endpoint_for(tenant, url, event_types=()):
    return services.webhook_endpoint_create(tenant=tenant, url=url, event_types=list(event_types))


def wait_until_due(delivery_id):
    """Sleep until the delivery's next attempt is due (and into a new second: fresh timestamp)."""
    due = WebhookDelivery.objects.get(pk=delivery_id).next_attempt_at
    time.sleep(max(0.0, (due - timezone.now()).total_seconds()) + 0.05)


@pytest.mark.django_db
class TestWebhookEventsRecord:
    def test_writes_one_event_and_a_delivery_per_subscriber_and_sends_on_commit(
            self, tenant, local_receivers, receiver, django_capture_on_commit_callbacks, monkeypatch):
        sent = []
        monkeypatch.setattr("runs.webhooks.services.webhook_deliveries_enqueue",
                            lambda *, delivery_ids, now=None: sent.extend(delivery_ids))
        all_terminal, _ = endpoint_for(tenant, receiver.url("/a"))
        only_started, _ = endpoint_for(tenant, receiver.url("/b"), ["run.started"])

        with django_capture_on_commit_callbacks(execute=True) as callbacks:
            event = record(tenant, run_webhook={"url": receiver.url("/run")})

        deliveries = WebhookDelivery.objects.filter(event=event)
        assert {(d.target, d.endpoint_id, d.url) for d in deliveries} == {
            ("ENDPOINT", all_terminal.pk, receiver.url("/a")), ("RUN", None, receiver.url("/run"))}
        assert only_started.pk not in {d.endpoint_id for d in deliveries}
        assert len(callbacks) == 1 and sorted(sent) == sorted(d.pk for d in deliveries)
        body = json.loads(event.body)
        assert body == {"id": event.id, "type": "run.completed", "timestamp": body["timestamp"], "data": RUN_PAYLOAD}
        assert event.id.startswith("evt_")

    def test_run_started_reaches_only_subscribers_that_name_it(self, tenant, local_receivers, receiver, enqueued):
        endpoint_for(tenant, receiver.url("/all"))
        named, _ = endpoint_for(tenant, receiver.url("/started"), ["run.started", "run.completed"])

        event = record(tenant, EventType.RUN_STARTED,
                       run_webhook={"url": receiver.url("/run"), "events": ["run.completed"]})

        assert [d.endpoint_id for d in WebhookDelivery.objects.filter(event=event)] == [named.pk]

    def test_no_subscriber_writes_nothing_and_builds_no_payload(self, tenant, local_receivers, receiver, enqueued):
        endpoint, _ = endpoint_for(tenant, receiver.url())
        services.webhook_endpoint_update(tenant=tenant, endpoint_id=endpoint.pk, enabled=False)
        built = []

        assert record(tenant, payload=lambda: built.append(1) or RUN_PAYLOAD) is None
        assert not WebhookEvent.objects.exists() and built == []

    def test_a_payload_function_is_called_once_when_someone_subscribes(self, tenant, local_receivers, receiver,
                                                                       enqueued):
        endpoint_for(tenant, receiver.url("/a"))
        built = []

        event = record(tenant, run_webhook={"url": receiver.url("/b")},
                       payload=lambda: built.append(1) or RUN_PAYLOAD)

        assert built == [1] and json.loads(event.body)["data"] == RUN_PAYLOAD
        assert WebhookDelivery.objects.filter(event=event).count() == 2

    def test_other_tenants_endpoints_are_not_subscribers(self, tenant, other_tenant, local_receivers, receiver,
                                                        enqueued):
        endpoint_for(other_tenant, receiver.url())

        assert record(tenant) is None


@pytest.mark.django_db(transaction=True)
class TestWebhookEventsRecordTransactions:
    def test_refuses_to_run_outside_a_transaction(self, tenant):
        assert not connection.in_atomic_block
        with pytest.raises(RuntimeError, match="inside the transaction"):
            services.webhook_events_record(tenant_id=tenant.pk, event_type=EventType.RUN_COMPLETED,
                                           payload=RUN_PAYLOAD, run_id=None, run_webhook={"url": "https://x.example/"})

    def test_a_rolled_back_transition_leaves_no_event_and_sends_nothing(self, tenant, local_receivers, receiver,
                                                                       enqueued):
        endpoint_for(tenant, receiver.url())

        with pytest.raises(ZeroDivisionError):
            with transaction.atomic():
                services.webhook_events_record(tenant_id=tenant.pk, event_type=EventType.RUN_FAILED,
                                               payload=RUN_PAYLOAD, run_id=uuid.uuid4())
                1 / 0  # noqa: B018 - the transition fails after recording

        assert not WebhookEvent.objects.exists() and not WebhookDelivery.objects.exists()
        assert enqueued == []

    def test_a_committed_transition_has_its_event_and_its_send(self, tenant, local_receivers, receiver, enqueued):
        endpoint_for(tenant, receiver.url())

        with transaction.atomic():
            event = services.webhook_events_record(tenant_id=tenant.pk, event_type=EventType.RUN_FAILED,
                                                   payload=RUN_PAYLOAD, run_id=uuid.uuid4())
            assert enqueued == []  # nothing is sent before the commit

        assert WebhookEvent.objects.filter(pk=event.pk).exists()
        assert enqueued == [WebhookDelivery.objects.get(event=event).pk]


@pytest.mark.django_db
class TestWebhookDeliveryAttempt:
    def test_a_per_run_delivery_verifies_with_the_default_secret(self, tenant, local_receivers, receiver, enqueued):
        event = record(tenant, run_webhook={"url": receiver.url("/run")})
        delivery = WebhookDelivery.objects.get(event=event)

        assert services.webhook_delivery_attempt(delivery_id=delivery.pk) == "succeeded"

        [request] = receiver.requests
        secret = services.webhook_default_secret_get(tenant_id=tenant.pk)
        assert Webhook(secret).verify(request.body, request.headers) == json.loads(event.body)
        assert request.body == event.body.encode() and request.path == "/run"
        assert request.headers["webhook-id"] == event.id
        delivery.refresh_from_db()
        assert (delivery.status, delivery.attempts_count, delivery.last_status_code) == ("SUCCEEDED", 1, 204)

    def test_an_endpoint_delivery_verifies_with_the_endpoint_secret(self, tenant, local_receivers, receiver,
                                                                     enqueued):
        _, secret = endpoint_for(tenant, receiver.url())
        delivery = WebhookDelivery.objects.get(event=record(tenant))

        services.webhook_delivery_attempt(delivery_id=delivery.pk)

        [request] = receiver.requests
        Webhook(secret).verify(request.body, request.headers)
        assert len(request.headers["webhook-signature"].split(" ")) == 1

    def test_a_500_is_retried_with_the_same_id_and_bytes_and_a_fresh_timestamp(self, tenant, local_receivers,
                                                                               receiver, enqueued):
        _, secret = endpoint_for(tenant, receiver.url())
        delivery = WebhookDelivery.objects.get(event=record(tenant))
        receiver.reply(Reply(500, body=b"boom"))

        assert services.webhook_delivery_attempt(delivery_id=delivery.pk) == "retry"
        assert services.webhook_delivery_attempt(delivery_id=delivery.pk) == "not_due"
        wait_until_due(delivery.pk)
        time.sleep(1.0)  # into another second, so the fresh timestamp differs
        assert services.webhook_delivery_attempt(delivery_id=delivery.pk) == "succeeded"

        first, second = receiver.requests
        assert first.body == second.body
        assert first.headers["webhook-id"] == second.headers["webhook-id"]
        assert int(second.headers["webhook-timestamp"]) > int(first.headers["webhook-timestamp"])
        Webhook(secret).verify(second.body, second.headers)
        attempts = list(WebhookAttempt.objects.filter(delivery=delivery).values_list(
            "number", "status_code", "error_class", "response_excerpt"))
        assert attempts == [(1, 500, "http_status", "boom"), (2, 204, "", "")]

    def test_410_disables_the_endpoint_and_ends_its_deliveries(self, tenant, local_receivers, receiver, enqueued):
        endpoint, _ = endpoint_for(tenant, receiver.url())
        first = WebhookDelivery.objects.get(event=record(tenant))
        waiting = WebhookDelivery.objects.get(event=record(tenant))
        receiver.reply(Reply(410))

        assert services.webhook_delivery_attempt(delivery_id=first.pk) == "gone"

        endpoint.refresh_from_db()
        assert not endpoint.enabled and "410" in endpoint.disabled_reason
        assert WebhookDelivery.objects.get(pk=first.pk).status == "FAILED"
        assert WebhookDelivery.objects.get(pk=waiting.pk).status == "FAILED"
        assert services.webhook_delivery_attempt(delivery_id=waiting.pk) == "not_due"
        assert len(receiver.requests) == 1
        assert record(tenant) is None  # a disabled endpoint subscribes to nothing

    def test_a_redirect_is_not_followed_and_is_a_failure(self, tenant, local_receivers, receiver, enqueued):
        endpoint_for(tenant, receiver.url("/hooks"))
        delivery = WebhookDelivery.objects.get(event=record(tenant))
        receiver.reply(Reply(302, headers={"Location": receiver.url("/elsewhere")}))

        assert services.webhook_delivery_attempt(delivery_id=delivery.pk) == "retry"

        time.sleep(0.3)
        assert [r.path for r in receiver.requests] == ["/hooks"]
        attempt = WebhookAttempt.objects.get(delivery=delivery)
        assert (attempt.status_code, attempt.error_class) == (302, "redirect")

    def test_retry_after_is_honoured(self, tenant, local_receivers, receiver, enqueued):
        endpoint_for(tenant, receiver.url())
        delivery = WebhookDelivery.objects.get(event=record(tenant))
        receiver.reply(Reply(503, headers={"Retry-After": "120"}))
        before = timezone.now()

        services.webhook_delivery_attempt(delivery_id=delivery.pk)

        delivery.refresh_from_db()
        assert delivery.next_attempt_at >= before + timedelta(seconds=120)

    def test_the_last_scheduled_failure_makes_it_dead(self, tenant, local_receivers, receiver, enqueued):
        local_receivers.DPP_WEBHOOK_RETRY_SCHEDULE = [0, 0]  # three attempts
        endpoint_for(tenant, receiver.url())
        delivery = WebhookDelivery.objects.get(event=record(tenant))
        receiver.default = Reply(500)

        outcomes = [services.webhook_delivery_attempt(delivery_id=delivery.pk) for _ in range(4)]

        assert outcomes == ["retry", "retry", "dead", "not_due"]
        delivery.refresh_from_db()
        assert (delivery.status, delivery.attempts_count, delivery.next_attempt_at) == ("DEAD", 3, None)

    def test_each_attempt_is_counted_by_outcome_and_the_backlog_is_a_gauge(self, tenant, local_receivers, receiver,
                                                                           enqueued):
        local_receivers.DPP_WEBHOOK_RETRY_SCHEDULE = [0]  # two attempts
        endpoint_for(tenant, receiver.url())
        delivery = WebhookDelivery.objects.get(event=record(tenant))
        receiver.default = Reply(500)

        def counted(outcome: str) -> float:
            return metrics.PROCESS_REGISTRY.get_sample_value("dpp_webhook_deliveries_total", {"outcome": outcome}) or 0

        before = {outcome: counted(outcome) for outcome in ("failed", "dead", "succeeded")}
        assert ops_figures(now=timezone.now())["dpp_webhook_pending"] == 1

        outcomes = [services.webhook_delivery_attempt(delivery_id=delivery.pk) for _ in range(2)]

        assert outcomes == ["retry", "dead"]
        assert {outcome: counted(outcome) - before[outcome] for outcome in before} == {
            "failed": 1, "dead": 1, "succeeded": 0}
        assert ops_figures(now=timezone.now())["dpp_webhook_pending"] == 0

    def test_a_receiver_slower_than_the_timeout_is_a_timeout(self, tenant, local_receivers, receiver, enqueued):
        local_receivers.DPP_WEBHOOK_TIMEOUT_SECONDS = 1
        endpoint_for(tenant, receiver.url())
        delivery = WebhookDelivery.objects.get(event=record(tenant))
        receiver.reply(Reply(204, delay=2.5))

        started = time.monotonic()
        assert services.webhook_delivery_attempt(delivery_id=delivery.pk) == "retry"

        assert time.monotonic() - started < 2.4
        assert WebhookAttempt.objects.get(delivery=delivery).error_class == "timeout"

    def test_reads_at_most_a_small_part_of_the_response(self, tenant, local_receivers, receiver, enqueued):
        endpoint_for(tenant, receiver.url())
        delivery = WebhookDelivery.objects.get(event=record(tenant))
        receiver.reply(Reply(200, body=b"x" * 200_000))

        assert services.webhook_delivery_attempt(delivery_id=delivery.pk) == "succeeded"

        assert len(WebhookAttempt.objects.get(delivery=delivery).response_excerpt) <= 512

    def test_during_a_rotation_two_signatures_are_sent_and_both_verify(self, tenant, local_receivers, receiver,
                                                                       enqueued):
        endpoint, old_secret = endpoint_for(tenant, receiver.url())
        _, new_secret = services.webhook_endpoint_rotate_secret(tenant=tenant, endpoint_id=endpoint.pk)
        delivery = WebhookDelivery.objects.get(event=record(tenant))

        services.webhook_delivery_attempt(delivery_id=delivery.pk)

        [request] = receiver.requests
        assert len(request.headers["webhook-signature"].split(" ")) == 2
        Webhook(new_secret).verify(request.body, request.headers)
        Webhook(old_secret).verify(request.body, request.headers)

    def test_after_the_overlap_only_the_new_secret_signs(self, tenant, local_receivers, receiver, enqueued):
        endpoint, _ = endpoint_for(tenant, receiver.url())
        _, new_secret = services.webhook_endpoint_rotate_secret(
            tenant=tenant, endpoint_id=endpoint.pk, now=timezone.now() - timedelta(hours=25))
        delivery = WebhookDelivery.objects.get(event=record(tenant))

        services.webhook_delivery_attempt(delivery_id=delivery.pk)

        [request] = receiver.requests
        assert len(request.headers["webhook-signature"].split(" ")) == 1
        Webhook(new_secret).verify(request.body, request.headers)

    def test_the_default_secret_rotation_also_sends_two_signatures(self, tenant, local_receivers, receiver,
                                                                   enqueued):
        old_secret = services.webhook_default_secret_get(tenant_id=tenant.pk)
        new_secret = services.webhook_default_secret_rotate(tenant_id=tenant.pk)
        delivery = WebhookDelivery.objects.get(event=record(tenant, run_webhook={"url": receiver.url()}))

        services.webhook_delivery_attempt(delivery_id=delivery.pk)

        [request] = receiver.requests
        Webhook(new_secret).verify(request.body, request.headers)
        Webhook(old_secret).verify(request.body, request.headers)
        assert new_secret != old_secret


@pytest.mark.django_db
class TestWebhookDeliveryAttemptInternalErrors:
    """An exception inside DPP (not a network outcome) is a failed attempt: it is counted and the
    delivery ends at max_attempts, instead of escaping after the claim and being resent forever."""

    def test_an_undecryptable_secret_is_an_internal_failure_counted_to_dead(self, tenant, local_receivers, receiver,
                                                                            enqueued, caplog):
        local_receivers.DPP_WEBHOOK_RETRY_SCHEDULE = [0, 0]  # three attempts
        endpoint, secret = endpoint_for(tenant, receiver.url())
        WebhookEndpoint.objects.filter(pk=endpoint.pk).update(secret_encrypted="not-a-fernet-token")
        delivery = WebhookDelivery.objects.get(event=record(tenant))

        outcomes = [services.webhook_delivery_attempt(delivery_id=delivery.pk) for _ in range(4)]

        assert outcomes == ["retry", "retry", "dead", "not_due"]
        assert receiver.requests == []
        delivery.refresh_from_db()
        assert (delivery.status, delivery.attempts_count) == ("DEAD", 3)
        attempts = list(WebhookAttempt.objects.filter(delivery=delivery).values_list("error_class", "error_detail"))
        assert attempts == [("internal", "internal error (SecretDecryptionFailed)")] * 3
        assert secret not in caplog.text and "webhook-signature" not in caplog.text
        assert any(r.levelname == "ERROR" and r.exc_info for r in caplog.records)

    def test_an_exception_while_sending_is_an_internal_failure(self, tenant, local_receivers, receiver, enqueued,
                                                               caplog):
        _, secret = endpoint_for(tenant, receiver.url())
        delivery = WebhookDelivery.objects.get(event=record(tenant))

        def failing_connection(target, timeout):
            raise UnicodeEncodeError("ascii", "/caf\u00e9", 4, 5, "ordinal not in range(128)")

        outcome = services.webhook_delivery_attempt(delivery_id=delivery.pk, connection_factory=failing_connection)

        assert outcome == "retry"
        attempt = WebhookAttempt.objects.get(delivery=delivery)
        assert (attempt.number, attempt.status_code, attempt.error_class) == (1, None, "internal")
        delivery.refresh_from_db()
        assert (delivery.status, delivery.attempts_count, delivery.claim_token) == ("PENDING", 1, None)
        assert secret not in caplog.text

    def test_a_stored_url_with_a_non_ascii_path_is_refused_without_a_connection(self, tenant, local_receivers,
                                                                                receiver, enqueued):
        """A delivery recorded before URLs had to be ASCII: http.client would raise
        UnicodeEncodeError on its path; it is refused and ends DEAD at once."""
        delivery = WebhookDelivery.objects.get(event=record(tenant, run_webhook={"url": receiver.url("/x")}))
        WebhookDelivery.objects.filter(pk=delivery.pk).update(url=receiver.url("/caf\u00e9"))

        assert services.webhook_delivery_attempt(delivery_id=delivery.pk) == "dead"

        assert receiver.requests == []
        assert WebhookAttempt.objects.get(delivery=delivery).error_class == "url_refused"

    @pytest.mark.parametrize("url", ["https://example.com/caf\u00e9", "https://example.com/in?q=\u00e9",
                                     "https://b\u00fccher.example/in"])
    def test_registration_refuses_a_non_ascii_url_with_a_clear_message(self, tenant, url):
        with pytest.raises(services.ValidationProblem, match="ASCII") as raised:
            services.webhook_endpoint_create(tenant=tenant, url=url, event_types=[],
                                             resolver=lambda h, p: [PUBLIC])

        assert "ASCII" in raised.value.extra["errors"]["url"]
        assert not WebhookEndpoint.objects.exists()


@pytest.mark.django_db
class TestDeliverySecrets:
    def test_the_default_secret_is_read_and_decrypted_once(self, tenant, local_receivers, receiver, enqueued,
                                                           monkeypatch):
        from django.test.utils import CaptureQueriesContext

        secret = services.webhook_default_secret_get(tenant_id=tenant.pk)
        delivery = WebhookDelivery.objects.get(event=record(tenant, run_webhook={"url": receiver.url()}))
        decrypted = []
        monkeypatch.setattr(services, "secret_decrypt", lambda token: decrypted.append(token) or secret)

        with CaptureQueriesContext(connection) as queries:
            assert services._delivery_secrets(delivery, timezone.now()) == [secret]

        assert len(queries.captured_queries) == 1 and len(decrypted) == 1

    def test_a_first_use_creates_the_default_secret(self, tenant, local_receivers, receiver, enqueued):
        delivery = WebhookDelivery.objects.get(event=record(tenant, run_webhook={"url": receiver.url()}))

        [secret] = services._delivery_secrets(delivery, timezone.now())

        assert secret == services.webhook_default_secret_get(tenant_id=tenant.pk) and secret.startswith("whsec_")


@pytest.mark.django_db
class TestEndpointLock:
    """Changing an endpoint locks its row FOR NO KEY UPDATE: inserting a delivery that references
    it (FOR KEY SHARE, inside run transitions holding the tenant's wallet lock) is not blocked."""

    @pytest.mark.parametrize("change", [
        lambda tenant, pk: services.webhook_endpoint_rotate_secret(tenant=tenant, endpoint_id=pk),
        lambda tenant, pk: services.webhook_endpoint_update(tenant=tenant, endpoint_id=pk, description="x"),
        lambda tenant, pk: services.webhook_endpoint_disable(endpoint_id=pk, actor="test", reason="test"),
    ], ids=["rotate", "update", "disable"])
    def test_the_endpoint_row_lock_does_not_conflict_with_key_share(self, tenant, local_receivers, receiver,
                                                                    change):
        from django.test.utils import CaptureQueriesContext

        endpoint, _ = endpoint_for(tenant, receiver.url())

        with CaptureQueriesContext(connection) as queries:
            change(tenant, endpoint.pk)

        locks = [q["sql"] for q in queries.captured_queries if " FOR " in q["sql"] and "webhook" in q["sql"]]
        assert locks and all("FOR NO KEY UPDATE" in sql for sql in locks), locks


@pytest.mark.django_db
class TestWebhookDeliveryAttemptSsrf:
    @pytest.fixture
    def connections(self, monkeypatch):
        """Every outgoing connection's address (then refused: no traffic leaves the test)."""
        made = []

        def create_connection(address, *args, **kwargs):
            made.append(address)
            raise ConnectionRefusedError("recorded by the test")

        monkeypatch.setattr("runs.webhooks.sender.socket.create_connection", create_connection)
        return made

    @pytest.mark.parametrize(("url", "resolver"), REFUSED, ids=[url for url, _ in REFUSED])
    def test_every_refused_url_is_refused_at_the_attempt_with_no_connection(self, settings, tenant, enqueued,
                                                                           connections, url, resolver):
        settings.DPP_WEBHOOK_ALLOW_PRIVATE_CIDRS = []
        delivery = WebhookDelivery.objects.get(event=record(tenant, run_webhook={"url": url}))

        outcome = services.webhook_delivery_attempt(delivery_id=delivery.pk, resolver=resolver)

        assert connections == []
        attempt = WebhookAttempt.objects.get(delivery=delivery)
        assert attempt.error_class in {"address_refused", "url_refused", "dns"} and attempt.status_code is None
        assert outcome in {"retry", "dead"}

    def test_a_rebinding_resolver_cannot_redirect_the_connection(self, settings, tenant, enqueued, connections):
        """The resolver answers public, then private: the host is resolved once, and the
        connection goes to the public address that was checked, never to the later answer."""
        settings.DPP_WEBHOOK_ALLOW_PRIVATE_CIDRS = []
        answers = iter([[PUBLIC], ["127.0.0.1"], ["10.0.0.1"]])
        calls = []

        def rebinding(host, port):
            calls.append(host)
            return next(answers)

        delivery = WebhookDelivery.objects.get(event=record(tenant, run_webhook={"url": "https://rebind.example/x"}))

        services.webhook_delivery_attempt(delivery_id=delivery.pk, resolver=rebinding)

        assert calls == ["rebind.example"]
        assert connections == [(PUBLIC, 443)]
        assert WebhookAttempt.objects.get(delivery=delivery).error_class == "connect"

    def test_a_url_turned_private_after_registration_is_refused_at_the_attempt(self, settings, tenant, enqueued,
                                                                              connections):
        settings.DPP_WEBHOOK_ALLOW_PRIVATE_CIDRS = []
        endpoint, _ = services.webhook_endpoint_create(tenant=tenant, url="https://moves.example/in", event_types=[],
                                                       resolver=lambda h, p: [PUBLIC])
        delivery = WebhookDelivery.objects.get(event=record(tenant))

        services.webhook_delivery_attempt(delivery_id=delivery.pk, resolver=lambda h, p: ["169.254.169.254"])

        assert connections == []
        assert WebhookAttempt.objects.get(delivery=delivery).error_class == "address_refused"


@pytest.mark.django_db
class TestWebhookDeliveryClaim:
    def test_only_one_attempt_holds_a_delivery(self, tenant, local_receivers, receiver, enqueued):
        endpoint_for(tenant, receiver.url())
        delivery = WebhookDelivery.objects.get(event=record(tenant))
        now = timezone.now()

        first = services._delivery_claim(delivery_id=delivery.pk, now=now)
        second = services._delivery_claim(delivery_id=delivery.pk, now=now)

        assert first is not None and second is None

    def test_an_expired_claim_can_be_taken_again_and_the_late_recorder_changes_nothing(
            self, tenant, local_receivers, receiver, enqueued):
        endpoint_for(tenant, receiver.url())
        delivery = WebhookDelivery.objects.get(event=record(tenant))
        now = timezone.now()
        dead_worker = services._delivery_claim(delivery_id=delivery.pk, now=now)

        later = now + timedelta(seconds=local_receivers.DPP_WEBHOOK_CLAIM_SECONDS + 1)
        assert services._delivery_claim(delivery_id=delivery.pk, now=later) is not None
        assert services._attempt_record(
            delivery=delivery, token=dead_worker, started_at=now,
            result=services.sender.SendResult(204, "", "", 5, None, "")) == "claim_lost"
        assert WebhookDelivery.objects.get(pk=delivery.pk).status == "PENDING"


@pytest.mark.django_db
class TestWebhookDeliveriesSweep:
    def test_sends_due_deliveries_not_on_their_way_bounded_by_the_batch(self, tenant, local_receivers, receiver,
                                                                        enqueued):
        endpoint_for(tenant, receiver.url())
        deliveries = [WebhookDelivery.objects.get(event=record(tenant)) for _ in range(3)]
        WebhookDelivery.objects.filter(pk=deliveries[2].pk).update(next_attempt_at=timezone.now() + timedelta(hours=1))
        now = timezone.now()

        first = services.webhook_deliveries_sweep(now=now, batch_size=1)
        second = services.webhook_deliveries_sweep(now=now, batch_size=10)
        third = services.webhook_deliveries_sweep(now=now, batch_size=10)

        assert (first, second, third) == ({"due": 1, "sent": 1}, {"due": 1, "sent": 1}, {"due": 0, "sent": 0})
        assert sorted(enqueued) == sorted([deliveries[0].pk, deliveries[1].pk])

    def test_sends_again_what_was_sent_long_ago_but_never_taken(self, tenant, local_receivers, receiver, enqueued):
        endpoint_for(tenant, receiver.url())
        delivery = WebhookDelivery.objects.get(event=record(tenant))
        now = timezone.now()
        services.webhook_deliveries_sweep(now=now)

        later = now + timedelta(seconds=local_receivers.DPP_WEBHOOK_REQUEUE_SECONDS + 1)
        assert services.webhook_deliveries_sweep(now=later) == {"due": 1, "sent": 1}
        assert enqueued == [delivery.pk, delivery.pk]

    def test_leaves_a_delivery_whose_attempt_is_in_progress(self, tenant, local_receivers, receiver, enqueued):
        endpoint_for(tenant, receiver.url())
        delivery = WebhookDelivery.objects.get(event=record(tenant))
        now = timezone.now()
        services._delivery_claim(delivery_id=delivery.pk, now=now)

        assert services.webhook_deliveries_sweep(now=now + timedelta(seconds=1)) == {"due": 0, "sent": 0}


@pytest.mark.django_db(transaction=True)
class TestWebhookDeliveriesSweepConcurrency:
    def test_skips_rows_another_sweep_holds(self, tenant, local_receivers, receiver, enqueued):
        endpoint_for(tenant, receiver.url())
        held, free = (WebhookDelivery.objects.get(event=record(tenant)) for _ in range(2))
        enqueued.clear()  # the sends on commit of the two events
        locked, release = threading.Event(), threading.Event()

        def hold():
            with transaction.atomic():
                list(WebhookDelivery.objects.select_for_update().filter(pk=held.pk))
                locked.set()
                release.wait(10)
            connection.close()

        thread = threading.Thread(target=hold)
        thread.start()
        try:
            assert locked.wait(10)
            result = services.webhook_deliveries_sweep(now=timezone.now())
        finally:
            release.set()
            thread.join(10)

        assert result == {"due": 1, "sent": 1} and enqueued == [free.pk]


@pytest.mark.django_db(transaction=True)
class TestWebhookGoneLockOrder:
    def test_a_410_and_an_operator_disable_of_the_same_endpoint_do_not_deadlock(self, tenant, local_receivers,
                                                                              receiver, enqueued, monkeypatch):
        """The disable holds the endpoint and is about to end its deliveries while the 410 of one
        of them is recorded: both lock the endpoint first, then the deliveries (no deadlock)."""
        endpoint, _ = endpoint_for(tenant, receiver.url())
        delivery = WebhookDelivery.objects.get(event=record(tenant))
        token = services._delivery_claim(delivery_id=delivery.pk, now=timezone.now())
        original_end = services._end_pending_deliveries
        errors = []

        def another_waits_for_a_lock() -> bool:
            with connection.cursor() as cursor:
                cursor.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                               "AND wait_event_type = 'Lock' AND pid <> pg_backend_pid()")
                return cursor.fetchone()[0] > 0

        def end_once_the_attempt_waits(**kwargs):
            if threading.current_thread().name == "disable":
                deadline = time.monotonic() + 10
                while not another_waits_for_a_lock() and time.monotonic() < deadline:
                    time.sleep(0.02)
            return original_end(**kwargs)

        monkeypatch.setattr(services, "_end_pending_deliveries", end_once_the_attempt_waits)

        def disable():
            try:
                services.webhook_endpoint_disable(endpoint_id=endpoint.pk, actor="test", reason="race")
            except Exception as error:  # noqa: BLE001 - reported below
                errors.append(error)
            finally:
                connection.close()

        thread = threading.Thread(target=disable, name="disable")
        thread.start()
        time.sleep(0.2)  # the disable holds the endpoint's row
        try:
            outcome = services._attempt_record(
                delivery=delivery, token=token, started_at=timezone.now(),
                result=services.sender.SendResult(410, "http_status", "HTTP 410", 5, None, ""))
        except Exception as error:  # noqa: BLE001 - reported below
            errors.append(error)
            outcome = None
        finally:
            thread.join(20)

        assert errors == [] and outcome == "claim_lost"
        endpoint.refresh_from_db()
        assert not endpoint.enabled and endpoint.disabled_reason == "operator: race"
        assert WebhookDelivery.objects.get(pk=delivery.pk).status == "FAILED"


@pytest.mark.django_db
def test_webhooks_never_move_money(tenant, local_receivers, receiver, enqueued):
    from io import StringIO

    from django.core.management import call_command

    from billing.models import Journal

    journals = Journal.objects.count()
    endpoint_for(tenant, receiver.url())
    receiver.reply(Reply(500), Reply(410))
    for _ in range(2):
        services.webhook_delivery_attempt(delivery_id=WebhookDelivery.objects.get(event=record(tenant)).pk)
    out = StringIO()

    call_command("check_ledger", "--skip-s3", stdout=out)

    assert Journal.objects.count() == journals and "ledger OK" in out.getvalue()
    assert WebhookEndpoint.objects.get(tenant=tenant).enabled is False


@pytest.mark.django_db(transaction=True)
class TestWebhookEndpointCreateConcurrency:
    def test_the_plan_limit_holds_when_creations_race(self, tenant, local_receivers, receiver):
        tenant.plan.max_webhook_endpoints = 2
        tenant.plan.save()
        outcomes, start = [], threading.Barrier(5)

        def create(n):
            start.wait(10)
            try:
                services.webhook_endpoint_create(tenant=tenant, url=receiver.url(f"/{n}"), event_types=[])
                outcomes.append("created")
            except services.WebhookEndpointLimitExceeded:
                outcomes.append("refused")
            finally:
                connection.close()

        threads = [threading.Thread(target=create, args=(n,)) for n in range(5)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)

        assert sorted(outcomes) == ["created", "created", "refused", "refused", "refused"]
        assert WebhookEndpoint.objects.filter(tenant=tenant).count() == 2
