"""The ledger's own money invariants, checked from the database (``check_ledger``).

Each check is one SQL query that returns the offending rows; an empty result means the
invariant holds. Runs' invariants (reserve = charged + released, charge <= reservation, the S3
receipt of completed runs) are in runs/checks.py; the command (runs/management/commands/check_ledger.py) runs both.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.db import connection


@dataclass(frozen=True)
class Violation:
    check: str
    detail: str


def _rows(sql: str, params=None) -> list[tuple]:
    with connection.cursor() as cursor:
        cursor.execute(sql, params or [])
        return cursor.fetchall()


LEDGER_CHECKS: list[tuple[str, str, str]] = [
    (
        "all entries sum to zero",
        "SELECT COALESCE(SUM(amount_micros), 0) FROM billing_journalleg HAVING COALESCE(SUM(amount_micros), 0) <> 0",
        "the ledger's legs sum to {0} micros",
    ),
    (
        "every journal balances",
        """SELECT j.id, j.kind, COALESCE(SUM(l.amount_micros), 0), COUNT(l.id)
             FROM billing_journal j LEFT JOIN billing_journalleg l ON l.journal_id = j.id
            GROUP BY j.id, j.kind HAVING COALESCE(SUM(l.amount_micros), 0) <> 0 OR COUNT(l.id) < 2""",
        "journal {0} ({1}) sums to {2} over {3} legs",
    ),
    (
        "wallets equal their ledger accounts",
        """SELECT w.tenant_id, w.available_micros, COALESCE(av.total, 0), w.held_micros, COALESCE(hd.total, 0)
             FROM billing_wallet w
             LEFT JOIN (SELECT a.tenant_id, SUM(l.amount_micros) AS total FROM billing_journalleg l
                          JOIN billing_account a ON a.id = l.account_id WHERE a.kind = 'AVAILABLE'
                         GROUP BY a.tenant_id) av ON av.tenant_id = w.tenant_id
             LEFT JOIN (SELECT a.tenant_id, SUM(l.amount_micros) AS total FROM billing_journalleg l
                          JOIN billing_account a ON a.id = l.account_id WHERE a.kind = 'HELD'
                         GROUP BY a.tenant_id) hd ON hd.tenant_id = w.tenant_id
            WHERE w.available_micros <> COALESCE(av.total, 0) OR w.held_micros <> COALESCE(hd.total, 0)""",
        "wallet {0}: available {1} but ledger {2}; held {3} but ledger {4}",
    ),
    (
        "no account that must not go negative is negative",
        """SELECT a.id, a.kind, a.tenant_id, SUM(l.amount_micros) FROM billing_account a
             JOIN billing_journalleg l ON l.account_id = a.id
            WHERE a.kind IN ('AVAILABLE', 'HELD', 'REVENUE')
            GROUP BY a.id, a.kind, a.tenant_id HAVING SUM(l.amount_micros) < 0""",
        "account {0} ({1}, tenant {2}) is at {3} micros",
    ),
    (
        "legs belong to their journal's tenant",
        """SELECT j.id, a.tenant_id, j.tenant_id FROM billing_journal j
             JOIN billing_journalleg l ON l.journal_id = j.id JOIN billing_account a ON a.id = l.account_id
            WHERE a.tenant_id IS NOT NULL AND a.tenant_id <> j.tenant_id""",
        "journal {0} of tenant {2} moves money of tenant {1}",
    ),
]


def ledger_violations() -> list[Violation]:
    violations = []
    for name, sql, template in LEDGER_CHECKS:
        for row in _rows(sql):
            violations.append(Violation(check=name, detail=template.format(*row)))
    return violations
