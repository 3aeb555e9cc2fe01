"""The run's history: one RunEvent row per transition, operator action or notable event.

Invariants kept here:
- history is append-only: rows are only ever created, never updated or deleted;
- every caller writes its event inside the transaction of the transition it records, so a
  transition and its history row commit together or not at all.
"""

from __future__ import annotations

from dpp.db.inserts import model_insert
from runs.models import Run, RunEvent


def run_event_record(run: Run, *, kind: str, actor: str, from_status: str = "", to_status: str = "",
                     money_state: str = "", amount_micros: int | None = None, reason: str = "",
                     data: dict | None = None) -> None:
    model_insert(RunEvent(
        run=run, kind=kind, actor=actor, from_status=from_status, to_status=to_status, money_state=money_state,
        amount_micros=amount_micros, reason=reason[:1000], data=data or {},
    ))
