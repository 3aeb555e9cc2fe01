"""Every movement of money, as ledger journals.

Invariants kept here (the database keeps them too; see models.py):
- one posting function (``_journal_post``) writes every journal with all its legs and updates
  the wallet cache in the same transaction; the reservation, the hot path, writes its journal,
  legs and wallet UPDATE as one statement (``_RESERVE_SQL``, the same rows);
- reserve moves AVAILABLE -> HELD and takes a concurrency slot (``Wallet.active_runs``) in one
  conditional UPDATE, written last; every settle of a run that held a slot gives it back;
- reserve moves AVAILABLE -> HELD; settle moves HELD -> REVENUE (the charge) and HELD ->
  AVAILABLE (the rest); release moves HELD -> AVAILABLE; top-up moves FUNDING -> AVAILABLE;
- a run has one reserve and at most one settle-or-release (unique constraint), and a charge is
  never above the reservation;
- wallet updates are conditional UPDATEs (F() expressions, or SQL arithmetic): no
  read-then-write in Python.
"""

from __future__ import annotations

from django.db import IntegrityError, connection, transaction
from django.db.models import F
from django.db.models.functions import Greatest
from django.utils import timezone

from billing.models import Account, Journal, JournalLeg, Wallet
from billing.money import MAX_AMOUNT_MICROS
from dpp.errors import DomainError, ValidationProblem
from tenants.models import Tenant


class InsufficientBalance(DomainError):
    slug = "insufficient-balance"


class ConcurrentRunsExceeded(DomainError):
    slug = "concurrent-runs-exceeded"
    policy = "concurrent_runs"  # the metrics label (dpp_rate_limited_total)


class LedgerError(DomainError):
    """An operation that would break a ledger invariant; a programming or data error."""

    slug = "internal-error"


def _require_atomic() -> None:
    if not transaction.get_connection().in_atomic_block:
        raise RuntimeError("ledger services must run inside a transaction")


# Ledger account ids never change once created (accounts are never deleted), so each process
# keeps them: a posting then costs no lookup round trip (bounded; cleared when full).
_ACCOUNT_IDS: dict = {}
_ACCOUNT_IDS_MAX = 50_000


def _accounts(*, tenant_id) -> dict[str, int]:
    """Account key ("REVENUE", "tenant:HELD", ...) -> account id for a tenant's postings."""
    ids = _ACCOUNT_IDS.get(tenant_id)
    if ids is not None:
        return ids
    rows = (Account.objects.filter(tenant_id=tenant_id) | Account.objects.filter(tenant__isnull=True)).values_list(
        "id", "kind", "tenant_id")
    ids = {(kind if owner is None else f"tenant:{kind}"): pk for pk, kind, owner in rows}
    if len(ids) == 4:  # the tenant's two and the platform's two: complete, keep it
        if len(_ACCOUNT_IDS) >= _ACCOUNT_IDS_MAX:
            _ACCOUNT_IDS.clear()
        _ACCOUNT_IDS[tenant_id] = ids
    return ids


def _journal_post(*, kind: str, tenant_id, legs: list[tuple[str, int]], run_id=None, reference=None,
                  memo: str = "") -> Journal:
    """Write one journal with all its legs. ``legs`` are (account key, amount); zero legs are dropped."""
    _require_atomic()
    legs = [(key, amount) for key, amount in legs if amount != 0]
    if sum(amount for _, amount in legs) != 0 or len(legs) < 2:
        raise LedgerError(f"unbalanced {kind} journal: {legs}")
    phase = {"RESERVE": "RESERVE", "SETTLE": "FINALIZE", "RELEASE": "FINALIZE"}.get(kind)
    journal = Journal(kind=kind, phase=phase, tenant_id=tenant_id, run_id=run_id, reference=reference,
                      memo=memo[:500], created_at=timezone.now())
    # One statement, one round trip, for the journal and its legs (every money movement writes
    # one); the deferred trigger still checks the sum at commit.
    with connection.cursor() as cursor:
        cursor.execute(_JOURNAL_INSERT_SQL, _journal_params(journal, legs))
        journal.pk = cursor.fetchone()[0]
    journal._state.adding = False
    return journal


def _journal_params(journal: Journal, legs: list[tuple[str, int]]) -> dict:
    """The parameters of ``_JOURNAL_WITH``: the journal's columns and its legs as two arrays."""
    accounts = _accounts(tenant_id=journal.tenant_id)
    return {"kind": journal.kind, "phase": journal.phase, "tenant_id": journal.tenant_id, "run_id": journal.run_id,
            "reference": journal.reference, "memo": journal.memo, "created_at": journal.created_at,
            "accounts": [accounts[key] for key, _ in legs], "amounts": [amount for _, amount in legs]}


# A journal and its legs, as the first two parts of one WITH statement.
_JOURNAL_WITH = f"""
journal AS (
    INSERT INTO {Journal._meta.db_table} (kind, phase, tenant_id, run_id, reference, memo, created_at)
    VALUES (%(kind)s, %(phase)s, %(tenant_id)s, %(run_id)s, %(reference)s, %(memo)s, %(created_at)s)
    RETURNING id
), legs AS (
    INSERT INTO {JournalLeg._meta.db_table} (journal_id, account_id, amount_micros)
    SELECT journal.id, leg.account_id, leg.amount_micros
      FROM journal, unnest(%(accounts)s::bigint[], %(amounts)s::bigint[]) AS leg(account_id, amount_micros)
)"""

_JOURNAL_INSERT_SQL = f"WITH {_JOURNAL_WITH} SELECT id FROM journal"

# The reservation: its journal, its legs and LAST the wallet's conditional UPDATE (balance and
# concurrency slot), one statement; the second column is 1 when the wallet allowed it.
_RESERVE_SQL = f"""WITH {_JOURNAL_WITH}, wallet AS (
    UPDATE {Wallet._meta.db_table}
       SET available_micros = available_micros - %(amount)s, held_micros = held_micros + %(amount)s,
           active_runs = active_runs + 1
     WHERE tenant_id = %(tenant_id)s AND available_micros >= %(amount)s AND active_runs < %(max_active_runs)s
    RETURNING 1
)
SELECT journal.id, (SELECT count(*) FROM wallet) FROM journal"""


def wallet_open(*, tenant: Tenant) -> Wallet:
    """Create a tenant's wallet and its two ledger accounts (idempotent)."""
    with transaction.atomic():
        for kind in (Account.Kind.REVENUE, Account.Kind.FUNDING):
            Account.objects.get_or_create(tenant=None, kind=kind)
        for kind in (Account.Kind.AVAILABLE, Account.Kind.HELD):
            Account.objects.get_or_create(tenant=tenant, kind=kind)
        wallet, _ = Wallet.objects.get_or_create(tenant=tenant)
    return wallet


def wallet_top_up(*, tenant: Tenant, amount_micros: int, reference: str | None = None, memo: str = "") -> Journal:
    """Credit a tenant (FUNDING -> AVAILABLE). With a ``reference``, a retry returns the first journal."""
    if isinstance(amount_micros, bool) or not isinstance(amount_micros, int):
        raise ValidationProblem("amount: must be an integer number of micros")
    if not 0 < amount_micros <= MAX_AMOUNT_MICROS:
        raise ValidationProblem("amount: must be more than 0 and at most 10000.0000 USD")
    try:
        with transaction.atomic():
            journal = _journal_post(
                kind=Journal.Kind.TOPUP, tenant_id=tenant.pk, reference=reference, memo=memo,
                legs=[("FUNDING", -amount_micros), ("tenant:AVAILABLE", amount_micros)],
            )
            Wallet.objects.filter(tenant_id=tenant.pk).update(available_micros=F("available_micros") + amount_micros)
    except IntegrityError:
        if reference is None:
            raise
        return Journal.objects.get(tenant_id=tenant.pk, reference=reference)
    return journal


def reservation_create(*, tenant_id, run_id, amount_micros: int, max_active_runs: int) -> Journal:
    """Hold ``amount_micros`` for a new run (AVAILABLE -> HELD) and take one of the tenant's
    ``max_active_runs`` concurrency slots. Caller owns the transaction.

    The journal, its legs and the wallet's conditional UPDATE (enough available balance AND a
    free slot) are ONE statement, the caller's last, so the caller's transaction holds the
    tenant's hot wallet row for that one statement and its commit. The caller must write nothing
    after it.
    """
    _require_atomic()
    if amount_micros <= 0:
        raise LedgerError("a reservation must be positive")
    journal = Journal(kind=Journal.Kind.RESERVE, phase=Journal.Phase.RESERVE, tenant_id=tenant_id, run_id=run_id,
                      memo="", created_at=timezone.now())
    # Refused (balance or slot), the statement still wrote the journal: the caller's transaction
    # is rolled back by the raise below.
    with connection.cursor() as cursor:
        cursor.execute(_RESERVE_SQL, {
            **_journal_params(journal, [("tenant:AVAILABLE", -amount_micros), ("tenant:HELD", amount_micros)]),
            "amount": amount_micros, "max_active_runs": max_active_runs})
        journal.pk, moved = cursor.fetchone()
    journal._state.adding = False
    if moved != 1:
        # Refused: say why (a plain read; the transaction is rolled back by the raise).
        wallet = Wallet.objects.filter(tenant_id=tenant_id).values("available_micros", "active_runs").first()
        if wallet is not None and wallet["active_runs"] >= max_active_runs:
            raise ConcurrentRunsExceeded(
                f"{wallet['active_runs']} runs are in flight; the plan allows {max_active_runs}.",
                headers={"Retry-After": "5"},
            )
        raise InsufficientBalance("The available balance is below max_cost_usd.")
    return journal


def wallet_slot_release(*, tenant_id) -> None:
    """A run stops holding a concurrency slot without settling (it now waits for an operator).
    Caller owns the transaction (the run's transition)."""
    _require_atomic()
    # Never below zero and never an error: this runs when something is already wrong (an audit),
    # and check_ledger reports a count that is off.
    Wallet.objects.filter(tenant_id=tenant_id, active_runs__gt=0).update(active_runs=F("active_runs") - 1)


class ReservationMissing(LedgerError):
    """No reserve journal exists for the run: nothing may be settled or released."""


def reservation_amount(*, run_id) -> int | None:
    """What the ledger holds for a run (the positive HELD leg of its RESERVE journal), or None."""
    return (
        JournalLeg.objects.filter(journal__run_id=run_id, journal__phase=Journal.Phase.RESERVE, amount_micros__gt=0)
        .values_list("amount_micros", flat=True)
        .first()
    )


def reservation_settle(*, tenant_id, run_id, charge_micros: int, release_slot: bool, memo: str = "") -> Journal:
    """Charge ``charge_micros`` and release the rest of the run's reservation. Caller owns the
    transaction. The reserved amount is read from the ledger, never trusted from the caller.

    ``release_slot``: the run still held a concurrency slot (its money was RESERVED) and gives it
    back in the same wallet UPDATE; False when it already gave it back (an AUDIT_REQUIRED run
    resolved by an operator).

    A second settle or release of the same run violates journal_one_per_run_phase.
    """
    _require_atomic()
    reserved_micros = reservation_amount(run_id=run_id)
    if reserved_micros is None:
        raise ReservationMissing(f"run {run_id} has no reservation")
    if not 0 <= charge_micros <= reserved_micros:
        raise LedgerError(f"charge {charge_micros} outside 0..{reserved_micros}")
    rest = reserved_micros - charge_micros
    kind = Journal.Kind.SETTLE if charge_micros > 0 else Journal.Kind.RELEASE
    journal = _journal_post(
        kind=kind, tenant_id=tenant_id, run_id=run_id, memo=memo,
        legs=[("tenant:HELD", -reserved_micros), ("REVENUE", charge_micros), ("tenant:AVAILABLE", rest)],
    )
    # The slot count never blocks a settlement: were it ever off (rows written around the
    # services), the money still settles and check_ledger reports the count.
    slots = 1 if release_slot else 0
    moved = Wallet.objects.filter(tenant_id=tenant_id, held_micros__gte=reserved_micros).update(
        held_micros=F("held_micros") - reserved_micros, available_micros=F("available_micros") + rest,
        active_runs=Greatest(F("active_runs") - slots, 0),
    )
    if moved != 1:
        raise LedgerError(f"wallet of {tenant_id} holds less than the reservation of run {run_id}")
    return journal
