"""Hostile JSON bodies: each is a 400 problem (never a 500) and moves no money."""

from __future__ import annotations

import json

import pytest

from dpp.parsers import MAX_DEPTH, json_loads_strict
from runs.models import Run
from tests.runs.helpers import ledger_snapshot, new_key, run_body

pytestmark = pytest.mark.django_db

PROBLEM = "application/problem+json"


def _with_question(raw_question: str) -> bytes:
    """A valid run body whose question is the raw JSON string literal ``raw_question``."""
    text = json.dumps(run_body())
    return text.replace('"Which database for the ledger?"', raw_question).encode("utf-8")


def _hostile_bodies():
    nested = '{"pack_type": "decision", "inputs": ' + "[" * 100_000 + "]" * 100_000 + "}"
    key_with_nul = json.dumps(run_body()).replace('"question"', '"ques\\u0000tion"')
    return [
        ("a lone high surrogate in a string", _with_question('"Which \\ud800 database?"')),
        ("a lone low surrogate in a string", _with_question('"\\udfff"')),
        ("a lone surrogate in a key", json.dumps(run_body()).replace('"question"', '"\\ud834q"').encode()),
        ("a NUL character in a string", _with_question('"nul \\u0000 here"')),
        ("a NUL character in a key", key_with_nul.encode()),
        ("nesting past the recursion limit", nested.encode()),
        ("nesting just past the depth limit",
         ('{"pack_type": "decision", "inputs": ' + "[" * MAX_DEPTH + "]" * MAX_DEPTH + "}").encode()),
        ("a number beyond a double", json.dumps(run_body()).replace("0.6", "1e999").encode()),
        ("a negative number beyond a double", json.dumps(run_body()).replace("0.6", "-1e999").encode()),
        ("NaN", json.dumps(run_body()).replace("0.6", "NaN").encode()),
        ("Infinity", json.dumps(run_body()).replace("0.6", "Infinity").encode()),
        ("an integer of 5000 digits", json.dumps(run_body()).replace("0.6", "9" * 5000).encode()),
        ("bytes that are not UTF-8", json.dumps(run_body()).encode().replace(b"Which", b"Wh\xffch")),
        ("a UTF-8 encoded surrogate", json.dumps(run_body()).encode().replace(b"Which", b"Wh\xed\xa0\x80ch")),
    ]


class TestHostileBodies:
    @pytest.mark.parametrize(("case", "raw"), _hostile_bodies(), ids=[c[0] for c in _hostile_bodies()])
    def test_each_is_a_400_problem_and_moves_no_money(self, auth_client, tenant, case, raw):
        before = ledger_snapshot(tenant)
        response = auth_client.generic("POST", "/v1/runs", raw, content_type="application/json",
                                       HTTP_IDEMPOTENCY_KEY=new_key())
        assert response.status_code == 400, response.content[:500]
        assert response["Content-Type"] == PROBLEM
        problem = response.json()
        assert problem["type"] == "/problems/malformed-request"
        assert len(response.content) < 2000  # the refusal never echoes the body
        assert ledger_snapshot(tenant) == before
        assert not Run.objects.exists()

    def test_a_body_nested_exactly_to_the_limit_still_parses(self):
        text = "[" * MAX_DEPTH + "]" * MAX_DEPTH
        assert json_loads_strict(text) == json.loads(text)

    def test_brackets_inside_strings_do_not_count_as_nesting(self):
        text = json.dumps({"question": "[" * 500 + "{" * 500})
        assert json_loads_strict(text) == {"question": "[" * 500 + "{" * 500}

    def test_escaped_quotes_inside_strings_do_not_end_them(self):
        text = json.dumps({"q": '\\"' + "[" * 200})
        assert json_loads_strict(text) == json.loads(text)

    def test_a_valid_body_with_non_ascii_text_is_accepted(self, auth_client):
        raw = _with_question('"Quelle base, \\u00e9t\\u00e9 \\ud83d\\ude00 ?"')  # a surrogate *pair* is fine
        response = auth_client.generic("POST", "/v1/runs", raw, content_type="application/json",
                                       HTTP_IDEMPOTENCY_KEY=new_key())
        assert response.status_code == 202, response.content
        assert Run.objects.get().inputs["question"] == "Quelle base, \u00e9t\u00e9 \U0001F600 ?"


def test_a_long_key_over_many_items_is_not_copied_per_item():
    """The string check builds paths cut to 200 characters: a 128 KiB key over 60,000 items once
    took gigabytes (the key copied into every item's path)."""
    import tracemalloc


    body = '{"' + "k" * 128_000 + '": [' + ",".join(["0"] * 60_000) + '], "x": "\\u00e9"}'
    tracemalloc.start()
    try:
        json_loads_strict(body)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 64 * 1024 * 1024, f"peak {peak / 1e6:.0f} MB"
