"""Pack input validation is bounded: cheap size checks before the schema, at most a few schema
errors built, and no answer echoes the client's (possibly huge) input."""

from __future__ import annotations

import jsonschema
import pytest

from runs.packs import PackInputError
from runs.packs.base import MAX_SCHEMA_ERRORS, Pack, schema_size_error
from runs.packs.decision import DecisionPack
from tests.runs.helpers import decision_inputs, ledger_snapshot, post_run, run_body

PACK = DecisionPack()
PROBLEM = "application/problem+json"


class UnboundedListPack(Pack):
    """A schema with no maxItems: only the error cap bounds the work."""

    pack_type = "test_unbounded"
    input_schema = {"type": "object", "properties": {"tags": {"type": "array", "items": {"type": "string"}}}}


@pytest.fixture
def counted_schema_errors(monkeypatch):
    """How many errors jsonschema produced (a spy on the real validator, not a fake)."""
    produced = []
    original = jsonschema.Draft202012Validator.iter_errors

    def iter_errors(self, *args, **kwargs):
        for error in original(self, *args, **kwargs):
            produced.append(error)
            yield error

    monkeypatch.setattr(jsonschema.Draft202012Validator, "iter_errors", iter_errors)
    return produced


class TestBoundedValidation:
    def test_fifty_thousand_options_are_refused_by_the_size_check_before_the_schema(self, counted_schema_errors):
        inputs = decision_inputs(options=[{"id": i} for i in range(50_000)])
        with pytest.raises(PackInputError) as error:
            PACK.validate(inputs)
        assert (error.value.field, error.value.message) == ("options", "must have at most 50 items")
        assert counted_schema_errors == []  # the schema never ran

    def test_a_list_the_schema_does_not_bound_stops_after_the_first_errors(self, counted_schema_errors):
        with pytest.raises(PackInputError) as error:
            UnboundedListPack().validate({"tags": list(range(100_000))})
        assert error.value.field == "tags.0"
        assert error.value.message == "must be of type string"
        assert len(counted_schema_errors) <= MAX_SCHEMA_ERRORS

    def test_a_message_never_repeats_the_input(self):
        long_text = "y" * 5000
        for inputs in (decision_inputs(question=long_text * 2), decision_inputs(question=[long_text]),
                       decision_inputs(**{long_text: 1}), decision_inputs(mode=long_text)):
            with pytest.raises(PackInputError) as error:
                PACK.validate(inputs)
            assert long_text not in error.value.message
            assert len(error.value.field) <= 200

    def test_an_unexpected_field_is_named_even_among_thousands(self):
        with pytest.raises(PackInputError) as error:
            PACK.validate(decision_inputs(**{f"extra{i}": i for i in range(20_000)}))
        assert error.value.field.startswith("extra") and error.value.message == "is not an allowed field"

    def test_the_size_walk_names_the_shallowest_offender_and_passes_valid_inputs(self):
        inputs = decision_inputs(question="q" * 2001, options=[{"id": "x" * 65, "label": "L", "scores": {}}] * 2)
        assert schema_size_error(inputs, PACK.input_schema).field == "question"
        assert schema_size_error(decision_inputs(), PACK.input_schema) is None


@pytest.mark.django_db
class TestBoundedAnswers:
    @pytest.mark.parametrize(("case", "body", "detail"), [
        ("50,000 options", run_body(inputs=decision_inputs(options=[0] * 50_000)),
         "inputs.options: must have at most 50 items"),
        ("15,000 unknown input fields", run_body(inputs=decision_inputs(**{f"f{i:05}": 0 for i in range(15_000)})),
         "inputs.f00000: is not an allowed field"),
        ("15,000 unknown body fields", {**run_body(), **{f"f{i:05}": 0 for i in range(15_000)}},
         "f00000: Unknown field."),
    ])
    def test_a_huge_invalid_body_gets_a_short_422(self, auth_client, tenant, case, body, detail):
        before = ledger_snapshot(tenant)
        response = post_run(auth_client, body)
        assert response.status_code == 422, response.content[:300]
        assert response["Content-Type"] == PROBLEM
        assert response.json()["detail"] == detail
        assert len(response.content) < 2000
        assert ledger_snapshot(tenant) == before
