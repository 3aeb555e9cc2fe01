"""check_ledger scales: runs are streamed in batches (never all in memory), and S3 receipts are
sampled by default, every one with --s3-all."""

from __future__ import annotations

import uuid

import pytest
from django.core.management import call_command

from runs import checks
from runs.models import Run
from runs.services import RunSubmission, run_create
from tests.factories import TenantFactory
from tests.runs.helpers import decision_inputs

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _no_broker(no_broker, result_bucket):
    pass


def make_runs(count: int) -> list[Run]:
    tenant = TenantFactory(balance_micros=10_000_000)
    return [run_create(tenant=tenant, submission=RunSubmission(
        idempotency_key=uuid.uuid4().hex, payload_hash="0" * 64, pack_type="decision", inputs=decision_inputs(),
        max_cost_micros=50_000, timebox_sec=30, min_reliability_score=None, trace_id="trace-checks")).run
        for _ in range(count)]


def completed_without_receipt(runs: list[Run]) -> None:
    """Forge COMPLETED runs whose S3 object does not exist: each is a receipt violation."""
    for run in runs:
        Run.objects.filter(pk=run.pk).update(status=Run.Status.COMPLETED, result_bucket="dpp-results",
                                             result_key=f"missing/{run.pk}.json")


class TestRunsAreStreamed:
    def test_a_violation_in_the_last_batch_is_found_and_fetches_are_batched(self, monkeypatch):
        runs = make_runs(7)
        Run.objects.filter(pk=runs[-1].pk).update(reserved_micros=49_999)  # the ledger holds 50,000
        monkeypatch.setattr(checks, "FETCH_ROWS", 2)
        fetched = []
        real = checks._run_rows

        def counting():
            for row in real():
                fetched.append(row[0])
                yield row

        monkeypatch.setattr(checks, "_run_rows", counting)
        violations = checks.run_money_violations()
        assert len(fetched) == 7
        assert [v.detail for v in violations if v.check == "every run has exactly one reservation of its amount"] == [
            f"run {runs[-1].pk}: 1 reserve journals holding 50000, run says 49999"]

    def test_the_rows_come_from_a_server_side_cursor_in_batches(self, monkeypatch):
        make_runs(5)
        monkeypatch.setattr(checks, "FETCH_ROWS", 2)
        assert len(list(checks._run_rows())) == 5


class TestReceiptsAreSampled:
    def test_by_default_a_sample_is_checked(self, monkeypatch):
        completed_without_receipt(make_runs(6))
        assert len(checks.receipt_violations(limit=4)) == 4
        monkeypatch.setattr(checks, "DEFAULT_S3_SAMPLE", 3)
        assert len(checks.receipt_violations(limit=checks.DEFAULT_S3_SAMPLE)) == 3

    def test_the_full_check_reads_every_receipt(self):
        completed_without_receipt(make_runs(6))
        assert len(checks.receipt_violations(limit=None)) == 6

    def test_the_command_samples_unless_told_to_check_all(self, capsys):
        completed_without_receipt(make_runs(5))
        with pytest.raises(SystemExit):
            call_command("check_ledger", "--s3-limit", "2")
        assert capsys.readouterr().out.count("no object") == 2
        with pytest.raises(SystemExit):
            call_command("check_ledger", "--s3-all")
        assert capsys.readouterr().out.count("no object") == 5
