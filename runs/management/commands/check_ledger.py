"""python manage.py check_ledger: verify every money invariant; exit 1 with a report on any
violation.

It lives in runs, the top of the layering, because it composes billing's ledger checks with the
runs' checks (billing must not import runs)."""

from __future__ import annotations

import sys

from django.core.management.base import BaseCommand

from billing.checks import ledger_violations
from runs.checks import DEFAULT_S3_SAMPLE, receipt_violations, run_money_violations


class Command(BaseCommand):
    help = "Verify every money invariant of the ledger, the wallets, the runs and their S3 receipts."

    def add_arguments(self, parser):
        parser.add_argument("--skip-s3", action="store_true", help="Do not compare completed runs with S3 receipts.")
        parser.add_argument("--s3-limit", type=int, default=DEFAULT_S3_SAMPLE,
                            help=f"Check a random sample of this many S3 receipts (default {DEFAULT_S3_SAMPLE}).")
        parser.add_argument("--s3-all", action="store_true", help="Check the S3 receipt of every completed run.")

    def handle(self, *args, skip_s3: bool = False, s3_limit: int = DEFAULT_S3_SAMPLE, s3_all: bool = False,
               **options):
        violations = ledger_violations() + run_money_violations()
        if not skip_s3:
            violations += receipt_violations(limit=None if s3_all else max(1, s3_limit))
        if not violations:
            self.stdout.write(self.style.SUCCESS("ledger OK: every invariant holds"))
            return
        self.stdout.write(self.style.ERROR(f"ledger check FAILED: {len(violations)} violation(s)"))
        for violation in violations:
            self.stdout.write(f"- [{violation.check}] {violation.detail}")
        sys.exit(1)
