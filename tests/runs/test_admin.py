"""Operators in Django admin: the AUDIT_REQUIRED queue, its decisions, and the ops page."""

from __future__ import annotations

import io
import uuid
from datetime import timedelta

import pytest
from django.contrib.auth.models import Permission, User
from django.core.management import call_command
from django.utils import timezone

from billing.models import Journal, Wallet
from runs import storage
from runs.models import Run, RunEvent
from runs.reaper import claims_reconcile
from runs.services import AuditResolutionRefused, run_resolve_audit
from tests.factories import TenantFactory
from tests.runs.test_reaper import LONG_AGO, finalize_claimed

pytestmark = [pytest.mark.django_db, pytest.mark.emulator]

INITIAL = 10_000_000


@pytest.fixture(autouse=True)
def _broker_and_bucket(no_broker, result_bucket):
    """Every test here: no queue sends, and the results bucket exists."""


@pytest.fixture(autouse=True)
def _ledger_checked_after_each_decision(_broker_and_bucket):
    """check_ledger (S3 receipts included) runs at the end of every test here: a decision that
    leaves the ledger or the receipts check red fails the test that took it."""
    yield
    out = io.StringIO()
    try:
        call_command("check_ledger", stdout=out)
    except SystemExit:
        pytest.fail(f"check_ledger failed after the test:\n{out.getvalue()}")


@pytest.fixture
def audit_run():
    """A run whose receipt names another finalize token: the reconciler asks for an audit."""
    tenant = TenantFactory(balance_micros=INITIAL)
    run, _ = finalize_claimed(tenant, when=timezone.now() - LONG_AGO)
    storage.envelope_put(bucket=run.result_bucket, key=run.result_key, body=b"{}", sha256="e" * 64,
                         actual_cost_micros=12_300, finalize_token=uuid.uuid4())
    assert claims_reconcile(now=timezone.now()) == {"audit_required": 1}
    return Run.objects.get(pk=run.pk)


def staff(*, can_resolve: bool) -> User:
    user = User.objects.create_user(username=f"op-{uuid.uuid4().hex[:6]}", password="pw", is_staff=True)
    user.user_permissions.add(Permission.objects.get(codename="view_run"))
    if can_resolve:
        user.user_permissions.add(Permission.objects.get(codename="resolve_audit"))
    return user


def wallet(tenant_id):
    w = Wallet.objects.get(tenant_id=tenant_id)
    return w.available_micros, w.held_micros


class TestResolveAudit:
    def test_settling_at_the_receipts_cost_completes_the_run_once_with_an_audit_row(self, audit_run, client):
        operator = staff(can_resolve=True)
        client.force_login(operator)
        url = f"/admin/runs/run/{audit_run.pk}/resolve/"
        form = {"action": "settle_receipt", "reason": "receipt verified by hand, token mismatch from a retry",
                "acknowledge_receipt_mismatch": "on"}

        first = client.post(url, form)
        second = client.post(url, form)  # clicked twice

        assert first.status_code == 302
        assert second.status_code == 200 and b"no longer waiting" in second.content
        run = Run.objects.get(pk=audit_run.pk)
        assert (run.status, run.money_state, run.actual_cost_micros) == ("COMPLETED", "SETTLED", 12_300)
        assert Journal.objects.filter(run_id=run.pk, phase="FINALIZE").count() == 1
        assert wallet(run.tenant_id) == (INITIAL - 12_300, 0)
        audit = RunEvent.objects.get(run=run, kind="OPERATOR_SETTLE_RECEIPT")
        assert audit.actor == f"admin:{operator.username}"
        assert audit.reason.startswith("receipt verified") and audit.amount_micros == 12_300

    def test_the_resolve_page_shows_the_token_mismatch(self, audit_run, client):
        client.force_login(staff(can_resolve=True))

        page = client.get(f"/admin/runs/run/{audit_run.pk}/resolve/").content.decode()

        assert "Token mismatch" in page and str(audit_run.finalize_token) in page

    def test_settling_at_a_mismatched_receipt_without_the_acknowledgement_is_refused(self, audit_run, client):
        client.force_login(staff(can_resolve=True))

        response = client.post(f"/admin/runs/run/{audit_run.pk}/resolve/",
                               {"action": "settle_receipt", "reason": "looks fine"})

        assert response.status_code == 200 and b"acknowledge the mismatch" in response.content
        assert Run.objects.get(pk=audit_run.pk).money_state == "AUDIT_REQUIRED"
        assert wallet(audit_run.tenant_id) == (INITIAL - 500_000, 500_000)

    def test_settling_at_an_entered_amount_charges_exactly_that(self, audit_run, client):
        client.force_login(staff(can_resolve=True))
        response = client.post(f"/admin/runs/run/{audit_run.pk}/resolve/",
                               {"action": "settle_amount", "amount_usd": "0.0050", "reason": "goodwill"})
        assert response.status_code == 302
        run = Run.objects.get(pk=audit_run.pk)
        assert (run.status, run.money_state, run.actual_cost_micros) == ("FAILED", "SETTLED", 5_000)
        assert wallet(run.tenant_id) == (INITIAL - 5_000, 0)

    def test_an_amount_above_the_reservation_is_refused(self, audit_run, client):
        client.force_login(staff(can_resolve=True))
        response = client.post(f"/admin/runs/run/{audit_run.pk}/resolve/",
                               {"action": "settle_amount", "amount_usd": "0.5001", "reason": "typo"})
        assert response.status_code == 200
        assert Run.objects.get(pk=audit_run.pk).money_state == "AUDIT_REQUIRED"
        assert wallet(audit_run.tenant_id) == (INITIAL - 500_000, 500_000)

    def test_releasing_everything_refunds_the_run(self, audit_run):
        run = run_resolve_audit(run_id=audit_run.pk, action="release", actor="admin:test", reason="customer refund")
        assert (run.status, run.money_state, run.actual_cost_micros) == ("FAILED", "REFUNDED", 0)
        assert wallet(run.tenant_id) == (INITIAL, 0)

    def test_a_reason_is_required(self, audit_run):
        with pytest.raises(AuditResolutionRefused):
            run_resolve_audit(run_id=audit_run.pk, action="release", actor="admin:test", reason="  ")
        assert Run.objects.get(pk=audit_run.pk).money_state == "AUDIT_REQUIRED"

    def test_staff_without_the_permission_cannot_act(self, audit_run, client):
        client.force_login(staff(can_resolve=False))
        response = client.post(f"/admin/runs/run/{audit_run.pk}/resolve/", {"action": "release", "reason": "x"})
        assert response.status_code == 403
        assert Run.objects.get(pk=audit_run.pk).money_state == "AUDIT_REQUIRED"


class TestAdminPages:
    def test_the_audit_queue_lists_only_runs_needing_a_decision(self, audit_run, client):
        TenantFactory(balance_micros=INITIAL)
        client.force_login(User.objects.create_superuser("root-op", "root@example.com", "pw"))
        page = client.get("/admin/runs/auditrequiredrun/")
        assert page.status_code == 200
        assert str(audit_run.pk) in page.content.decode()

    def test_the_run_page_shows_ledger_legs_receipt_link_and_history(self, audit_run, client):
        client.force_login(User.objects.create_superuser("root-op2", "root2@example.com", "pw"))
        page = client.get(f"/admin/runs/run/{audit_run.pk}/change/").content.decode()
        assert "RESERVE" in page and "fetch the receipt" in page and "AUDIT_REQUIRED" in page
        receipt = client.get(f"/admin/runs/run/{audit_run.pk}/receipt/", follow=True).content.decode()
        assert "actual cost 12300 micros" in receipt

    def test_the_ops_page_shows_counts(self, audit_run, client):
        Run.objects.filter(pk=audit_run.pk).update(updated_at=timezone.now() - timedelta(minutes=1))
        client.force_login(User.objects.create_superuser("root-op3", "root3@example.com", "pw"))
        page = client.get("/admin/runs/run/ops/").content.decode()
        assert "AUDIT_REQUIRED: 1" in page
        assert "Queue depth" in page

    def test_ledger_rows_are_read_only(self, client):
        TenantFactory(balance_micros=INITIAL)
        client.force_login(User.objects.create_superuser("root-op4", "root4@example.com", "pw"))
        journal = Journal.objects.first()
        assert client.get("/admin/billing/journal/add/").status_code == 403
        response = client.post(f"/admin/billing/journal/{journal.pk}/change/", {"memo": "edited"})
        assert response.status_code == 403

    def test_canceled_runs_are_filtered_listed_and_counted(self, client):
        from runs.services import run_cancel
        from tests.runs.test_reaper import make_run

        tenant = TenantFactory(balance_micros=INITIAL)
        canceled, queued = make_run(tenant), make_run(tenant)
        run_cancel(tenant=tenant, run_id=canceled.pk, reason="operator view")
        client.force_login(User.objects.create_superuser("root-op5", "root5@example.com", "pw"))

        listing = client.get("/admin/runs/run/?status__exact=CANCELED").content.decode()
        ops = client.get("/admin/runs/run/ops/").content.decode()
        history = client.get(f"/admin/runs/run/{canceled.pk}/change/").content.decode()

        assert str(canceled.pk) in listing and str(queued.pk) not in listing
        assert "<td>CANCELED</td><td>REFUNDED</td><td>1</td>" in ops
        assert "operator view" in history and "RELEASE" in history
