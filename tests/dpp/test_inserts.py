"""dpp.db.inserts.model_insert: the row Django's own insert would write, without its compile."""

from __future__ import annotations

import uuid

import pytest
from django.db.models import signals

from dpp.db.inserts import model_insert
from runs.models import Run, RunEvent
from runs.services import RunSubmission, run_create
from tests.factories import TenantFactory
from tests.runs.helpers import decision_inputs

pytestmark = pytest.mark.django_db


def submitted_run() -> Run:
    submission = RunSubmission(
        idempotency_key=uuid.uuid4().hex, payload_hash="0" * 64, pack_type="decision", inputs=decision_inputs(),
        max_cost_micros=50_000, timebox_sec=30, min_reliability_score=None, trace_id="trace-inserts")
    return run_create(tenant=TenantFactory(balance_micros=1_000_000), submission=submission).run


@pytest.mark.parametrize("model", [Run, RunEvent])
def test_the_models_it_writes_have_no_signal_receivers(model):
    # model_insert sends no pre_save/post_save: were a receiver added, this must fail.
    for signal in (signals.pre_save, signals.post_save):
        assert not signal.has_listeners(model), f"{signal} has receivers for {model.__name__}"


def test_an_event_is_written_as_objects_create_writes_it():
    run = submitted_run()
    fields = dict(run=run, kind="NOTE", actor="api", from_status="QUEUED", to_status="QUEUED", money_state="",
                  amount_micros=7, reason="why", data={"k": [1, "x"]})
    created = RunEvent.objects.create(**fields)
    inserted = model_insert(RunEvent(**fields))

    assert inserted.pk is not None and inserted.pk != created.pk
    assert inserted._state.adding is False and inserted._state.db == "default"
    columns = [f.attname for f in RunEvent._meta.concrete_fields if f.attname not in ("id", "created_at")]
    assert (RunEvent.objects.filter(pk=inserted.pk).values(*columns).get()
            == RunEvent.objects.filter(pk=created.pk).values(*columns).get())
    stored = RunEvent.objects.get(pk=inserted.pk)
    assert stored.created_at == inserted.created_at  # auto_now_add applied by pre_save


def test_a_run_is_stored_with_every_field_as_built():
    run = submitted_run()  # run_create writes it with model_insert
    stored = Run.objects.get(pk=run.pk)
    for field in Run._meta.concrete_fields:
        assert getattr(stored, field.attname) == getattr(run, field.attname), field.attname
    assert stored.inputs == decision_inputs() and stored.status == Run.Status.QUEUED
