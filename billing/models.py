"""The ledger: double-entry, append-only, in integer USD micros.

Invariants kept here and by the database (see the migrations):
- every Journal's legs sum to zero and it has at least two legs: a deferred constraint trigger
  checks it at commit, whatever wrote the rows;
- Journals and JournalLegs are never updated or deleted: triggers refuse it;
- a run has at most one RESERVE journal and at most one FINALIZE journal (SETTLE or RELEASE):
  unique (run_id, phase);
- a Wallet caches the balances of its tenant's AVAILABLE and HELD accounts, is written in the
  same transaction as the legs, and can never go negative (check constraints);
  ``check_ledger`` proves the cache equals the sums;
- a Wallet counts its tenant's active runs (``active_runs``: runs whose money is RESERVED, i.e.
  QUEUED or PROCESSING and not waiting for an operator), changed in the same transaction as every
  transition that starts or ends one, never negative (check constraint); the submission's
  conditional UPDATE compares it with the plan's limit, so the limit is exact under concurrency.
Sign convention: an account's balance is the sum of its legs' amounts.
"""

from __future__ import annotations

from django.db import models
from django.db.models import Q

from tenants.models import Tenant


class Account(models.Model):
    class Kind(models.TextChoices):
        AVAILABLE = "AVAILABLE"  # tenant: spendable balance
        HELD = "HELD"  # tenant: reserved for runs in flight
        REVENUE = "REVENUE"  # platform: what runs were charged
        FUNDING = "FUNDING"  # platform: the source of top-ups (goes negative)

    tenant = models.ForeignKey(Tenant, on_delete=models.PROTECT, null=True, blank=True, related_name="accounts")
    kind = models.CharField(max_length=16, choices=Kind.choices)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["tenant", "kind"], condition=Q(tenant__isnull=False),
                                    name="account_one_per_tenant_kind"),
            models.UniqueConstraint(fields=["kind"], condition=Q(tenant__isnull=True), name="account_one_platform_kind"),
            models.CheckConstraint(
                condition=(Q(tenant__isnull=False, kind__in=["AVAILABLE", "HELD"])
                           | Q(tenant__isnull=True, kind__in=["REVENUE", "FUNDING"])),
                name="account_kind_matches_owner",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.kind}:{self.tenant_id or 'platform'}"


class Journal(models.Model):
    class Kind(models.TextChoices):
        TOPUP = "TOPUP"
        RESERVE = "RESERVE"
        SETTLE = "SETTLE"
        RELEASE = "RELEASE"

    class Phase(models.TextChoices):
        RESERVE = "RESERVE"
        FINALIZE = "FINALIZE"

    kind = models.CharField(max_length=16, choices=Kind.choices)
    phase = models.CharField(max_length=16, choices=Phase.choices, null=True, blank=True)  # noqa: DJ001 NULL stays out of the unique constraint
    tenant = models.ForeignKey(Tenant, on_delete=models.PROTECT, related_name="journals")
    run_id = models.UUIDField(null=True, blank=True, db_index=True)
    # For top-ups: a caller-chosen reference that makes a retried top-up a no-op.
    reference = models.CharField(max_length=100, null=True, blank=True)  # noqa: DJ001 NULL = no reference
    memo = models.CharField(max_length=500, blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["id"]
        constraints = [
            models.UniqueConstraint(fields=["run_id", "phase"], condition=Q(run_id__isnull=False),
                                    name="journal_one_per_run_phase"),
            models.UniqueConstraint(fields=["tenant", "reference"], condition=Q(reference__isnull=False),
                                    name="journal_unique_reference"),
            models.CheckConstraint(
                condition=(Q(kind="RESERVE", phase="RESERVE", run_id__isnull=False)
                           | Q(kind__in=["SETTLE", "RELEASE"], phase="FINALIZE", run_id__isnull=False)
                           | Q(kind="TOPUP", phase__isnull=True, run_id__isnull=True)),
                name="journal_kind_phase_consistent",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.kind} #{self.pk}"


class JournalLeg(models.Model):
    journal = models.ForeignKey(Journal, on_delete=models.PROTECT, related_name="legs")
    account = models.ForeignKey(Account, on_delete=models.PROTECT, related_name="legs")
    amount_micros = models.BigIntegerField()

    class Meta:
        ordering = ["id"]
        constraints = [models.CheckConstraint(condition=~Q(amount_micros=0), name="leg_amount_nonzero")]

    def __str__(self) -> str:
        return f"{self.amount_micros:+d} {self.account_id} (journal {self.journal_id})"


class Wallet(models.Model):
    tenant = models.OneToOneField(Tenant, on_delete=models.PROTECT, primary_key=True, related_name="wallet")
    available_micros = models.BigIntegerField(default=0)
    held_micros = models.BigIntegerField(default=0)
    active_runs = models.IntegerField(default=0, help_text="Runs holding a concurrency slot (money RESERVED).")
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.CheckConstraint(condition=Q(available_micros__gte=0), name="wallet_available_nonnegative"),
            models.CheckConstraint(condition=Q(held_micros__gte=0), name="wallet_held_nonnegative"),
            models.CheckConstraint(condition=Q(active_runs__gte=0), name="wallet_active_runs_nonnegative"),
        ]

    def __str__(self) -> str:
        return f"wallet {self.tenant_id}"
