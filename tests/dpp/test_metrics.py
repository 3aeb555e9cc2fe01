"""GET /metrics in one process (the in-process suite runs without PROMETHEUS_MULTIPROC_DIR): every
metric of DESIGN section 9 from the first scrape, the bearer token, bounded labels, the database
gauges read from PostgreSQL under a statement timeout, and what each observer counts. The
multiprocess sums across real gunicorn and Celery processes are in tests/runs/test_metrics_processes.py."""

from __future__ import annotations

import re
import threading
import uuid

import psycopg
import pytest
from django.db import connection
from django.db.models import Sum
from django.test import override_settings
from prometheus_client.parser import text_string_to_metric_families
from rest_framework.test import APIClient

from billing.models import Wallet
from dpp import metrics
from runs.models import Run
from tenants.models import Plan
from tenants.services import api_key_issue
from tests.factories import TenantFactory

# DESIGN section 9, verbatim: the sample names a scrape must carry from the first one.
DESIGN_METRICS = [
    "http_server_request_duration_seconds_bucket",
    "dpp_runs_created_total",
    "dpp_runs_finished_total",
    "dpp_run_queue_wait_seconds_bucket",
    "dpp_run_execution_seconds_bucket",
    "dpp_runs_queued",
    "dpp_runs_oldest_queued_age_seconds",
    "dpp_runs_audit_required",
    "dpp_ledger_held_usd_micros",
    "dpp_ledger_available_usd_micros",
    "dpp_outbox_pending",
    "dpp_reaper_actions_total",
    "dpp_webhook_deliveries_total",
    "dpp_rate_limited_total",
]
UUID_RE = re.compile(r"[0-9a-f]{8}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{12}", re.I)


def samples(text: str) -> list:
    return [sample for family in text_string_to_metric_families(text) for sample in family.samples]


def value(text: str, name: str, **labels) -> float:
    found = [s.value for s in samples(text) if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())]
    assert found, f"{name} {labels} is not in the scrape"
    return sum(found)


def scrape(client) -> str:
    response = client.get("/metrics")
    assert response.status_code == 200, response.content
    return response.content.decode()


@pytest.mark.django_db
class TestTheScrape:
    def test_every_metric_of_the_design_is_there_from_the_first_scrape(self, client):
        names = {s.name for s in samples(scrape(client))}
        assert set(DESIGN_METRICS) <= names, sorted(set(DESIGN_METRICS) - names)

    def test_is_the_prometheus_text_format(self, client):
        response = client.get("/metrics")
        assert response["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8"

    def test_the_database_gauges_are_the_sums_in_postgresql(self, client, tenant, other_tenant):
        Wallet.objects.filter(tenant=tenant).update(held_micros=123_456)
        text = scrape(client)
        totals = Wallet.objects.aggregate(held=Sum("held_micros"), available=Sum("available_micros"))
        assert value(text, "dpp_ledger_held_usd_micros") == totals["held"] >= 123_456
        assert value(text, "dpp_ledger_available_usd_micros") == totals["available"] >= 20_000_000
        assert value(text, "dpp_metrics_database_up") == 1


@pytest.mark.django_db
class TestTheToken:
    @override_settings(DPP_METRICS_TOKEN="s3cret-metrics-token")
    def test_without_the_token_where_one_is_set_the_scrape_is_a_401_problem(self, client):
        response = client.get("/metrics")
        assert response.status_code == 401
        assert response["Content-Type"] == "application/problem+json"
        assert response["WWW-Authenticate"].startswith("Bearer")
        assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer wrong").status_code == 401
        assert client.get("/metrics", HTTP_AUTHORIZATION="Basic s3cret-metrics-token").status_code == 401

    @override_settings(DPP_METRICS_TOKEN="s3cret-metrics-token")
    def test_with_the_token_the_scrape_answers(self, client):
        response = client.get("/metrics", HTTP_AUTHORIZATION="Bearer s3cret-metrics-token")
        assert response.status_code == 200
        assert b"dpp_runs_created_total" in response.content

    def test_without_a_configured_token_the_scrape_is_open(self, client):
        assert client.get("/metrics").status_code == 200


@pytest.mark.django_db
class TestTheObservers:
    def test_requests_are_labelled_by_route_template_never_by_path(self, client, auth_client, tenant):
        missing = uuid.uuid4()
        assert auth_client.get(f"/v1/runs/{missing}").status_code == 404
        assert auth_client.get(f"/v1/tenants/{tenant.pk}/usage?from=2026-01-01&to=2026-01-02").status_code == 200
        assert client.get(f"/no/such/{missing}").status_code == 404
        text = scrape(client)
        assert value(text, "http_server_request_duration_seconds_count", method="GET",
                     route="v1/runs/<str:run_id>", status_code="404") >= 1
        assert value(text, "http_server_request_duration_seconds_count", method="GET",
                     route="v1/tenants/<str:tenant_id>/usage", status_code="200") >= 1
        assert value(text, "http_server_request_duration_seconds_count", method="GET",
                     route=metrics.UNMATCHED_ROUTE, status_code="404") >= 1
        assert str(missing) not in text and str(tenant.pk) not in text

    def test_an_unknown_method_is_one_label(self, client):
        client.generic("BREW", "/health")
        assert value(scrape(client), "http_server_request_duration_seconds_count", method="OTHER",
                     route="health") >= 1

    def test_a_rate_limit_refusal_counts_under_its_policy(self, client):
        plan = Plan.objects.create(code=f"tiny-{uuid.uuid4().hex[:6]}", name="tiny", allowed_pack_types=["decision"],
                                   post_runs_per_minute=10, get_requests_per_minute=1, max_concurrent_runs=10,
                                   max_cost_per_run_micros=1_000_000)
        tenant = TenantFactory(plan=plan, balance_micros=1_000_000)
        api = APIClient()
        api.credentials(HTTP_AUTHORIZATION=f"Bearer {api_key_issue(tenant=tenant, label='t').plaintext}")
        before = value(scrape(client), "dpp_rate_limited_total", policy="get_requests")
        assert api.get("/v1/runs").status_code == 200
        assert api.get("/v1/runs").status_code == 429
        assert value(scrape(client), "dpp_rate_limited_total", policy="get_requests") == before + 1

    def test_reaper_counts_become_actions_and_a_backlog_is_not_one(self):
        before = metrics.PROCESS_REGISTRY.get_sample_value("dpp_reaper_actions_total",
                                                           {"job": "outbox", "action": "resent"})
        metrics.reaper_pass_observe(job="outbox", counts={"resent": 2, "backlog": 40, "surprise": 1})
        registry = metrics.PROCESS_REGISTRY
        assert registry.get_sample_value("dpp_reaper_actions_total", {"job": "outbox", "action": "resent"}) == before + 2
        assert registry.get_sample_value("dpp_reaper_actions_total", {"job": "outbox", "action": "backlog"}) is None
        assert registry.get_sample_value("dpp_reaper_actions_total", {"job": "outbox", "action": "other"}) >= 1

    def test_an_unknown_webhook_outcome_is_refused_rather_than_a_new_label(self):
        with pytest.raises(ValueError):
            metrics.webhook_delivery_observe(outcome="https://example.com/hook")

    def test_a_packs_own_reason_code_is_counted_as_other(self):
        assert metrics.run_reason_label("PACK_FAILED_FOR_TENANT_123") == "OTHER"
        assert metrics.run_reason_label("") == "none"
        assert metrics.run_reason_label("LEASE_EXPIRED") == "LEASE_EXPIRED"


@pytest.mark.django_db
def test_no_label_holds_a_tenant_id_or_a_raw_uuid(client, auth_client, tenant):
    auth_client.get(f"/v1/runs/{uuid.uuid4()}")
    auth_client.get(f"/v1/runs/{uuid.uuid4().hex}")
    auth_client.get(f"/v1/tenants/{tenant.pk}/usage?from=2026-01-01&to=2026-01-02")
    for sample in samples(scrape(client)):
        for label, label_value in sample.labels.items():
            assert not UUID_RE.search(label_value), (sample.name, label, label_value)
            assert str(tenant.pk) not in label_value


@pytest.mark.django_db(transaction=True)
def test_a_database_slower_than_the_statement_timeout_fails_the_gauges_not_the_scrape(client):
    """Another session holds an exclusive lock on the runs table: the gauge query waits, hits
    the statement timeout, and the scrape still answers with the process metrics."""
    settings_dict = connection.settings_dict
    locked, release = threading.Event(), threading.Event()

    def hold_lock():
        with psycopg.connect(host=settings_dict["HOST"] or "127.0.0.1", port=settings_dict["PORT"] or 5432,
                             user=settings_dict["USER"], dbname=settings_dict["NAME"]) as other:
            with other.transaction():
                other.execute(f"LOCK TABLE {Run._meta.db_table} IN ACCESS EXCLUSIVE MODE")
                locked.set()
                release.wait(timeout=30)

    holder = threading.Thread(target=hold_lock)
    holder.start()
    try:
        assert locked.wait(timeout=10)
        with override_settings(DPP_METRICS_DB_TIMEOUT_MS=200):
            text = scrape(client)
    finally:
        release.set()
        holder.join(timeout=10)
    assert value(text, "dpp_metrics_database_up") == 0
    assert "dpp_runs_queued" not in {s.name for s in samples(text)}
    assert "dpp_runs_created_total" in {s.name for s in samples(text)}
