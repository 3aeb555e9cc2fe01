"""docs/OPERATIONS.md and docs/grafana-dashboard.json against a real scrape: every metric the alert
rules and the dashboard name exists, the issue's alerts are there, and every metric the API serves
is described in the table."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

DOCS = Path(__file__).resolve().parents[2] / "docs"
METRIC_NAME = re.compile(r"\b(?:dpp|http_server)_[a-z0-9_]+\b")


def alert_rules() -> list[dict]:
    blocks = re.findall(r"```yaml\n(.*?)```", (DOCS / "OPERATIONS.md").read_text(), re.S)
    documents = [yaml.safe_load(block) for block in blocks]
    groups = [group for document in documents if "groups" in document for group in document["groups"]]
    return [rule for group in groups for rule in group["rules"]]


def dashboard_expressions() -> list[str]:
    dashboard = json.loads((DOCS / "grafana-dashboard.json").read_text())
    return [target["expr"] for panel in dashboard["panels"] for target in panel.get("targets", [])]


@pytest.fixture
def scraped(client, db) -> tuple[set[str], set[str]]:
    response = client.get("/metrics")
    assert response.status_code == 200
    families = list(text_string_to_metric_families(response.content.decode()))
    return {family.name for family in families}, {s.name for family in families for s in family.samples}


class TestTheAlertRules:
    def test_every_rule_has_a_name_an_expression_and_a_summary(self):
        rules = alert_rules()
        assert len(rules) >= 5
        for rule in rules:
            assert rule["alert"] and rule["expr"] and rule["annotations"]["summary"], rule

    def test_every_metric_they_name_exists_in_a_scrape(self, scraped):
        _, sample_names = scraped
        named = {name for rule in alert_rules() for name in METRIC_NAME.findall(rule["expr"])}
        assert named and named <= sample_names, sorted(named - sample_names)

    def test_the_issues_alerts_are_there(self):
        expressions = " ".join(rule["expr"] for rule in alert_rules())
        for needed in ("dpp_runs_audit_required", "dpp_runs_oldest_queued_age_seconds",
                       "dpp_outbox_oldest_pending_age_seconds", 'dpp_webhook_deliveries_total{outcome="dead"}',
                       'http_server_request_duration_seconds_bucket{method="POST"'):
            assert needed in expressions, needed


class TestTheDashboard:
    def test_every_metric_it_names_exists_in_a_scrape(self, scraped):
        _, sample_names = scraped
        named = {name for expr in dashboard_expressions() for name in METRIC_NAME.findall(expr)}
        assert len(named) >= 10 and named <= sample_names, sorted(named - sample_names)


def test_every_metric_the_api_serves_is_described_in_the_table(scraped):
    families, _ = scraped
    text = (DOCS / "OPERATIONS.md").read_text()
    undocumented = [name for name in families if f"`{name}`" not in text and f"`{name}_total`" not in text]
    assert not undocumented, undocumented
