"""The decision pack: TOPSIS against a published example, weighted sums worked by hand, exact
sensitivity, validation naming the field, determinism and exact cost. Pure computation: no database."""

from __future__ import annotations

import copy
import json
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from runs.packs import PackInputError
from runs.packs.decision import (
    DecisionPack,
    decision_analyse,
    minmax_matrix,
    normalised_weights,
    ranking_order,
    sensitivity_points,
    weighted_sum,
)

PACK = DecisionPack()


def run(inputs: dict) -> dict:
    return PACK.execute(PACK.validate(inputs), timebox_sec=10).data


def option(option_id: str, **scores) -> dict:
    return {"id": option_id, "label": option_id.upper(), "scores": scores}


def criterion(criterion_id: str, weight: float, direction: str = "benefit") -> dict:
    return {"id": criterion_id, "weight": weight, "direction": direction}


def by_id(data: dict, field: str) -> dict:
    return {row["id"]: row[field] for row in data["ranking"]}


# Hwang & Yoon's fighter aircraft: speed (Mach), ferry range (NM), payload (lb), acquisition cost
# ($10^6, a cost attribute), reliability and maneuverability (ratings: low 3, average 5, high 7,
# very high 9).
FIGHTERS = {
    "question": "Which fighter aircraft?",
    "options": [
        option("a1", speed=2.0, range=1500, payload=20000, cost=5.5, reliability=5, maneuverability=9),
        option("a2", speed=2.5, range=2700, payload=18000, cost=6.5, reliability=3, maneuverability=5),
        option("a3", speed=1.8, range=2000, payload=21000, cost=4.5, reliability=7, maneuverability=7),
        option("a4", speed=2.2, range=1800, payload=20000, cost=5.0, reliability=5, maneuverability=5),
    ],
    "criteria": [
        criterion("speed", 0.2), criterion("range", 0.1), criterion("payload", 0.1),
        criterion("cost", 0.1, "cost"), criterion("reliability", 0.2), criterion("maneuverability", 0.3),
    ],
}


class TestDecisionPackTopsis:
    def test_matches_the_published_worked_example(self):
        """Hwang, C.-L. and Yoon, K. (1981), *Multiple Attribute Decision Making: Methods and
        Applications. A State-of-the-Art Survey*, Lecture Notes in Economics and Mathematical
        Systems 186, Springer: the fighter aircraft example of the TOPSIS section (four aircraft,
        six attributes, acquisition cost the only cost attribute, qualitative ratings quantified
        on the 1..9 interval scale, weights w = (0.2, 0.1, 0.1, 0.1, 0.2, 0.3)), worked again in
        Yoon, K.P. and Hwang, C.-L. (1995), *Multiple Attribute Decision Making: An Introduction*,
        Sage. Relative closeness to the ideal solution as published, to three decimals:
        C1 = 0.643, C2 = 0.268, C3 = 0.614, C4 = 0.312, so A1 > A3 > A4 > A2. (The figures were
        taken from the literature as remembered, not checked against a copy here; our computation
        reproduces them, and the closing note of issue 4 says so.)"""
        data = run(FIGHTERS)

        closeness = by_id(data, "topsis_score")
        assert {key: round(value, 3) for key, value in closeness.items()} == {
            "a1": 0.643, "a2": 0.268, "a3": 0.614, "a4": 0.312}
        assert data["methods"]["topsis"]["order"] == ["a1", "a3", "a4", "a2"]
        assert data["agreement"]["topsis_winner"] == "a1"

    def test_reports_the_distances_behind_each_closeness(self):
        data = run(FIGHTERS)

        for row in data["methods"]["topsis"]["distances"]:
            closeness = row["to_anti_ideal"] / (row["to_ideal"] + row["to_anti_ideal"])
            assert closeness == pytest.approx(by_id(data, "topsis_score")[row["id"]], abs=2e-6)

    def test_the_cost_direction_takes_the_smallest_value_as_ideal(self):
        # One criterion, scores 1 and 3: vector-normalised 1/sqrt(10) and 3/sqrt(10), weight 1.
        # As a cost the ideal is 1/sqrt(10): a1 is at the ideal (S+ = 0), a3 at the anti-ideal.
        data = run({"question": "q", "options": [option("a1", x=1), option("a3", x=3)],
                    "criteria": [criterion("x", 1, "cost")]})

        assert by_id(data, "topsis_score") == {"a1": 1.0, "a3": 0.0}

    def test_a_column_of_zeros_does_not_divide_by_zero(self):
        # x is 0 everywhere: its vector norm is 0, so r = 0 for everyone and x drops out.
        data = run({"question": "q", "options": [option("a", x=0, y=1), option("b", x=0, y=2)],
                    "criteria": [criterion("x", 1), criterion("y", 1)]})

        assert by_id(data, "topsis_score") == {"a": 0.0, "b": 1.0}

    def test_identical_options_are_at_one_half(self):
        data = run({"question": "q", "options": [option("a", x=3, y=0), option("b", x=3, y=0)],
                    "criteria": [criterion("x", 1), criterion("y", 1)]})

        assert by_id(data, "topsis_score") == {"a": 0.5, "b": 0.5}
        assert data["methods"]["topsis"]["order"] == ["a", "b"]


class TestDecisionPackWeightedSum:
    def test_matches_a_hand_computed_case(self):
        # weights 2, 1, 1 -> 0.5, 0.25, 0.25
        # price (cost):      a=10, b=20, c=15 -> (20 - x) / 10: a 1.0, b 0.0, c 0.5
        # quality (benefit): a=3,  b=9,  c=6  -> (x - 3) / 6:   a 0.0, b 1.0, c 0.5
        # support (benefit): a=5,  b=5,  c=8  -> (x - 5) / 3:   a 0.0, b 0.0, c 1.0
        # a = 0.5*1.0                          = 0.5
        # b =           0.25*1.0               = 0.25
        # c = 0.5*0.5 + 0.25*0.5 + 0.25*1.0    = 0.625   -> c wins by 0.625 - 0.5 = 0.125
        data = run({"question": "Which vendor?",
                    "options": [option("a", price=10, quality=3, support=5), option("b", price=20, quality=9, support=5),
                                option("c", price=15, quality=6, support=8)],
                    "criteria": [criterion("price", 2, "cost"), criterion("quality", 1), criterion("support", 1)]})

        assert by_id(data, "weighted_score") == {"a": 0.5, "b": 0.25, "c": 0.625}
        assert [row["id"] for row in data["ranking"]] == ["c", "a", "b"]
        assert [row["weighted_rank"] for row in data["ranking"]] == [1, 2, 3]
        assert data["winner"] == {"id": "c", "label": "C"}
        assert data["runner_up"] == {"id": "a", "label": "A"}
        assert data["margin"] == 0.125
        assert data["normalized_weights"] == {"price": 0.5, "quality": 0.25, "support": 0.25}
        assert data["methods"]["weighted_sum"] == {"normalization": "min-max", "winner": "c", "order": ["c", "a", "b"]}

    def test_matches_a_second_hand_computed_case_with_uneven_weights(self):
        # weights 0.2, 0.8 (sum 1)
        # x (benefit): a=0, b=4, c=10 -> x / 10:        a 0.0, b 0.4, c 1.0
        # y (cost):    a=1, b=2, c=5  -> (5 - y) / 4:   a 1.0, b 0.75, c 0.0
        # a = 0.2*0.0 + 0.8*1.0  = 0.8
        # b = 0.2*0.4 + 0.8*0.75 = 0.68
        # c = 0.2*1.0 + 0.8*0.0  = 0.2
        data = run({"question": "q", "options": [option("a", x=0, y=1), option("b", x=4, y=2), option("c", x=10, y=5)],
                    "criteria": [criterion("x", 0.2), criterion("y", 0.8, "cost")]})

        assert by_id(data, "weighted_score") == {"a": 0.8, "b": 0.68, "c": 0.2}
        assert data["margin"] == 0.12

    def test_cost_and_benefit_directions_mirror_each_other(self):
        options = [option("a", x=1), option("b", x=2), option("c", x=4)]

        benefit = run({"question": "q", "options": options, "criteria": [criterion("x", 1)]})
        cost = run({"question": "q", "options": options, "criteria": [criterion("x", 1, "cost")]})

        # benefit: (x - 1) / 3 -> a 0, b 1/3, c 1;  cost: (4 - x) / 3 -> a 1, b 2/3, c 0
        assert by_id(benefit, "weighted_score") == {"a": 0.0, "b": 0.333333, "c": 1.0}
        assert by_id(cost, "weighted_score") == {"a": 1.0, "b": 0.666667, "c": 0.0}
        assert benefit["winner"]["id"] == "c" and cost["winner"]["id"] == "a"

    def test_scaling_all_weights_changes_nothing(self):
        scaled = copy.deepcopy(FIGHTERS)
        for item in scaled["criteria"]:
            item["weight"] *= 10

        assert run({**scaled, "mode": "full"}) == run({**FIGHTERS, "mode": "full"})

    def test_ties_are_reported_and_broken_by_input_order(self):
        options = [option("first", x=1, y=2), option("second", x=2, y=1), option("third", x=0, y=0)]
        inputs = {"question": "q", "options": options, "criteria": [criterion("x", 1), criterion("y", 1)]}

        data = run(inputs)
        swapped = run({**inputs, "options": [options[1], options[0], options[2]]})

        assert data["ties"] == ["first", "second"] and data["margin"] == 0.0
        assert data["winner"]["id"] == "first" and data["runner_up"]["id"] == "second"
        assert [row["weighted_rank"] for row in data["ranking"]] == [1, 2, 3]
        assert swapped["ties"] == ["second", "first"] and swapped["winner"]["id"] == "second"
        assert "tied at the top with SECOND" in data["rationale"]

    def test_no_ties_are_reported_when_the_winner_leads(self):
        assert run(FIGHTERS)["ties"] == []

    def test_float_noise_does_not_break_a_tie(self):
        # 0.1 + 0.2 != 0.3 in binary floating point; the ranking treats them as equal.
        assert ranking_order([0.1 + 0.2, 0.3, 0.1]) == [0, 1, 2]
        assert ranking_order([0.3, 0.1 + 0.2, 0.1]) == [0, 1, 2]

    def test_a_criterion_where_all_options_are_equal_does_not_discriminate(self):
        # x is 4 for everyone: max == min, so everyone gets 1.0 on it (weight 0.5 each):
        # a = 0.5*1 + 0.5*0 = 0.5, b = 0.5*1 + 0.5*1 = 1.0.
        data = run({"question": "q", "options": [option("a", x=4, y=1), option("b", x=4, y=2)],
                    "criteria": [criterion("x", 1), criterion("y", 1)]})

        assert by_id(data, "weighted_score") == {"a": 0.5, "b": 1.0}
        assert data["deciding_criteria"] == [{"id": "y", "contribution": 0.5}]


class TestDecisionPackAgreement:
    def test_reports_when_the_methods_disagree(self):
        # Weighted sum (min-max): a3 0.591667, a1 0.573778 -> a3; TOPSIS prefers a1 (0.643 vs 0.614).
        # Ranks WS a3 1, a1 2, a4 3, a2 4; TOPSIS a1 1, a3 2, a4 3, a2 4: sum d^2 = 2, n = 4,
        # Spearman = 1 - 6*2 / (4*15) = 0.8.
        data = run(FIGHTERS)

        assert data["winner"]["id"] == "a3"
        assert data["agreement"] == {"same_winner": False, "topsis_winner": "a1", "spearman": 0.8}
        assert "TOPSIS ranks A1 first instead" in data["rationale"]

    def test_reports_when_they_agree(self):
        data = run({"question": "q", "options": [option("a", x=1, y=1), option("b", x=5, y=5), option("c", x=3, y=3)],
                    "criteria": [criterion("x", 1), criterion("y", 1)]})

        assert data["agreement"] == {"same_winner": True, "topsis_winner": "b", "spearman": 1.0}
        assert "TOPSIS agrees" in data["rationale"]

    def test_two_options_can_disagree_with_a_correlation_of_minus_one(self):
        # x (w 0.6): a 101 vs b 100, a barely better; y (w 0.4): a 1 vs b 10, b far better.
        # Min-max hides the size of a difference: a = 0.6, b = 0.4. TOPSIS keeps it: a's lead on x
        # is 0.6 * 1/141.8 ~ 0.004, b's on y is 0.4 * 9/10.05 ~ 0.358, so b is far nearer the ideal.
        data = run({"question": "q", "options": [option("a", x=101, y=1), option("b", x=100, y=10)],
                    "criteria": [criterion("x", 0.6), criterion("y", 0.4)]})

        assert data["winner"]["id"] == "a"
        assert data["agreement"] == {"same_winner": False, "topsis_winner": "b", "spearman": -1.0}


def weights_moved(weights: list[float], k: int, t: float) -> list[float]:
    """Move weight k to t, rescaling the others proportionally (equal shares when they are all 0)."""
    rest = 1.0 - weights[k]
    if rest > 0:
        return [t if j == k else w * (1.0 - t) / rest for j, w in enumerate(weights)]
    return [t if j == k else (1.0 - t) / (len(weights) - 1) for j in range(len(weights))]


def winner_at(inputs: dict, criterion_id: str, weight: float) -> str:
    checked = PACK.validate(inputs)
    weights = normalised_weights(checked["criteria"])
    k = [c["id"] for c in checked["criteria"]].index(criterion_id)
    scores = weighted_sum(minmax_matrix(checked["options"], checked["criteria"]), weights_moved(weights, k, weight))
    return checked["options"][ranking_order(scores)[0]]["id"]


class TestDecisionPackSensitivity:
    def test_the_reported_change_flips_the_winner_and_a_slightly_smaller_one_does_not(self):
        inputs = {**FIGHTERS, "mode": "full"}
        data = run(inputs)

        for row in data["sensitivity"]:
            assert row["critical_weight"] is not None, row
            step = 1e-5 if row["change"] > 0 else -1e-5
            assert winner_at(inputs, row["criterion"], row["critical_weight"] + step) == row["new_winner"]
            assert winner_at(inputs, row["criterion"], row["critical_weight"] - step) == "a3"
            assert winner_at(inputs, row["criterion"], row["weight"] + row["change"] * 0.99) == "a3"

    def test_finds_the_crossing_exactly(self):
        # x (w 0.5): a 1.0, b 0.0; y (w 0.5): a 0.0, b 1.0; z (w 0): a 1.0, b 0.0 -> a wins on order.
        # Raising x's weight only helps a. Lowering it to t (y gets 1 - t, z stays 0): a = t,
        # b = 1 - t, a tie at every t... so use z: weights x 0.3, y 0.2, z 0.5 instead:
        #   a = 0.3*1 + 0.5*1 = 0.8, b = 0.2*1 = 0.2.
        # Moving y to t, the others scale by (1 - t)/0.8: a = (1 - t), b = t -> they cross at t = 0.5,
        # a change of 0.5 - 0.2 = +0.3 that b wins (a comes first, so b leads only beyond 0.5).
        data = run({"question": "q", "mode": "full",
                    "options": [option("a", x=1, y=0, z=1), option("b", x=0, y=1, z=0)],
                    "criteria": [criterion("x", 0.3), criterion("y", 0.2), criterion("z", 0.5)]})

        rows = {row["criterion"]: row for row in data["sensitivity"]}
        assert rows["y"] == {"criterion": "y", "weight": 0.2, "critical_weight": 0.5, "change": 0.3, "new_winner": "b"}
        # Moving x (or z) to t: a = t + (1 - t) * 0.5/0.7 (or 0.3/0.5), b = (1 - t) * 0.2/0.7 (or 0.2/0.5);
        # b never catches a for t in [0, 1]: a(0) = 5/7 > b(0) = 2/7, and for z a(0) = 0.6 > b(0) = 0.4.
        assert rows["x"]["change"] is None and rows["z"]["change"] is None

    def test_a_tied_winner_is_flipped_by_any_change_in_either_direction(self):
        # first (x 1, y 2) and second (x 2, y 1) tie at 0.5 each: raising x's weight favours second at
        # once, and so does lowering y's, so the nearest flip is a change of 0 for both.
        data = run({"question": "q", "mode": "full", "options": [option("first", x=1, y=2), option("second", x=2, y=1)],
                    "criteria": [criterion("x", 1), criterion("y", 1)]})

        rows = {row["criterion"]: row for row in data["sensitivity"]}
        assert rows["x"]["change"] == 0.0 and rows["x"]["new_winner"] == "second"
        assert rows["y"]["change"] == 0.0 and rows["y"]["new_winner"] == "second"
        assert "on a knife-edge: the slightest change of the weight of x would make SECOND the winner" in data["rationale"]

    def test_is_null_when_no_weight_change_can_flip_a_dominating_option(self):
        data = run({"question": "q", "mode": "full", "options": [option("a", x=9, y=9), option("b", x=1, y=1)],
                    "criteria": [criterion("x", 1), criterion("y", 1)]})

        assert [row["critical_weight"] for row in data["sensitivity"]] == [None, None]
        assert [row["new_winner"] for row in data["sensitivity"]] == [None, None]
        assert "No change of a single weight alters the winner" in data["rationale"]

    def test_is_null_for_a_single_criterion(self):
        data = run({"question": "q", "mode": "full", "options": [option("a", x=1), option("b", x=2)],
                    "criteria": [criterion("x", 3)]})

        assert data["sensitivity"] == [{"criterion": "x", "weight": 1.0, "critical_weight": None, "change": None,
                                        "new_winner": None}]

    def test_brief_mode_has_no_sensitivity(self):
        assert run(FIGHTERS)["sensitivity"] is None

    def test_the_rationale_names_the_most_sensitive_criterion(self):
        data = run({**FIGHTERS, "mode": "full"})

        most_sensitive = min(data["sensitivity"], key=lambda row: abs(row["change"]))
        assert f"most sensitive to {most_sensitive['criterion']}" in data["rationale"]


class TestDecisionPackRationale:
    def test_names_the_winner_the_margin_and_the_deciding_criterion(self):
        # a3's lead over a1, weight x (a3's min-max score - a1's):
        #   speed           0.2 * (0/0.7 - 0.2/0.7)       = -0.057143
        #   range           0.1 * (500/1200 - 0)          = +0.041667
        #   payload         0.1 * (3000/3000 - 2000/3000) = +0.033333
        #   cost (cost)     0.1 * (2/2 - 1/2)             = +0.05
        #   reliability     0.2 * (4/4 - 2/4)             = +0.1
        #   maneuverability 0.3 * (2/4 - 4/4)             = -0.15
        # The three largest positive contributions decide it.
        data = run(FIGHTERS)

        assert data["deciding_criteria"] == [{"id": "reliability", "contribution": 0.1},
                                             {"id": "cost", "contribution": 0.05},
                                             {"id": "range", "contribution": 0.041667}]
        assert data["rationale"].startswith("A3 ranks first by weighted sum")
        assert f"{data['margin']:.3f} ahead of A1" in data["rationale"]
        assert "The deciding criteria are reliability, cost and range" in data["rationale"]


class TestDecisionPackDeterminism:
    def test_same_inputs_give_identical_data_whatever_the_key_order(self):
        inputs = {**FIGHTERS, "mode": "full"}
        reordered = json.loads(json.dumps(inputs, sort_keys=True))
        for item in reordered["options"]:
            item["scores"] = dict(reversed(list(item["scores"].items())))

        first, second, third = run(inputs), run(inputs), run(reordered)

        assert first == second
        assert json.dumps(first) == json.dumps(third)  # same values and same key order

    def test_data_is_plain_json(self):
        data = run({**FIGHTERS, "mode": "full"})

        assert json.loads(json.dumps(data, allow_nan=False)) == data


class TestDecisionPackCost:
    @pytest.mark.parametrize(("mode", "micros"), [("brief", 10_600), ("full", 21_200)])
    def test_three_options_by_two_criteria(self, mode, micros):
        # 10_000 + 100 * (3 * 2) = 10_600; doubled in full mode.
        inputs = PACK.validate({"question": "q", "mode": mode,
                                "options": [option("a", x=1, y=2), option("b", x=2, y=1), option("c", x=0, y=0)],
                                "criteria": [criterion("x", 1), criterion("y", 1)]})

        assert PACK.quote_micros(inputs) == micros
        result = PACK.execute(inputs, timebox_sec=10)
        assert result.actual_cost_micros == micros and type(result.actual_cost_micros) is int

    def test_the_largest_inputs_cost_their_cells(self):
        # 50 x 30 = 1500 cells: 10_000 + 150_000 = 160_000, full 320_000.
        criteria = [criterion(f"c{j}", 1) for j in range(30)]
        options = [option(f"o{i}", **{f"c{j}": (i * 7 + j * 3) % 11 for j in range(30)}) for i in range(50)]
        inputs = PACK.validate({"question": "q", "mode": "full", "options": options, "criteria": criteria})

        assert PACK.quote_micros(inputs) == 320_000
        assert PACK.execute(inputs, timebox_sec=10).actual_cost_micros == 320_000

    def test_pricing_is_described_in_decimal_strings(self):
        assert PACK.pricing() == {"currency": "USD", "base_usd": "0.0100", "per_cell_usd": "0.0001",
                                  "full_mode_multiplier": 2, "cells": "options x criteria"}


class TestDecisionPackValidate:
    def test_fills_in_the_defaults(self):
        checked = PACK.validate({"question": "q", "options": [option("a", x=1), option("b", x=2)],
                                 "criteria": [{"id": "x", "weight": 1}]})

        assert checked["mode"] == "brief" and checked["context"] == ""
        assert checked["criteria"] == [{"id": "x", "weight": 1, "direction": "benefit"}]
        assert PACK.validate(checked) == checked  # idempotent

    def test_execute_accepts_inputs_that_were_validated_but_not_normalised(self):
        raw = {"question": "q", "options": [option("a", x=1), option("b", x=2)], "criteria": [{"id": "x", "weight": 1}]}

        assert PACK.execute(raw, timebox_sec=10).data == run(raw)


VALID = {"question": "q", "options": [option("a", x=1), option("b", x=2)], "criteria": [criterion("x", 1)]}


def variant(**changes) -> dict:
    inputs = copy.deepcopy(VALID)
    inputs.update(changes)
    return inputs


def without(key: str) -> dict:
    return {k: v for k, v in copy.deepcopy(VALID).items() if k != key}


def scored(value) -> dict:
    return variant(options=[option("a", x=value), option("b", x=2)])


@pytest.mark.parametrize(("inputs", "field"), [
    pytest.param(without("question"), "question", id="missing question"),
    pytest.param(variant(question=""), "question", id="blank question"),
    pytest.param(variant(question="x" * 2001), "question", id="too-long question"),
    pytest.param(variant(question=7), "question", id="non-string question"),
    pytest.param(variant(context="x" * 20001), "context", id="too-long context"),
    pytest.param(without("options"), "options", id="missing options"),
    pytest.param(variant(options=[option("a", x=1)]), "options", id="one option"),
    pytest.param(variant(options=[option(f"o{i}", x=i) for i in range(51)]), "options", id="51 options"),
    pytest.param(variant(criteria=[]), "criteria", id="no criteria"),
    pytest.param(variant(criteria=[criterion(f"c{i}", 1) for i in range(31)]), "criteria", id="31 criteria"),
    pytest.param(variant(options=[option("", x=1), option("b", x=2)]), "options.0.id", id="empty option id"),
    pytest.param(variant(options=[option("a" * 65, x=1), option("b", x=2)]), "options.0.id", id="long option id"),
    pytest.param(variant(options=[{"id": "a", "label": "x" * 201, "scores": {"x": 1}}, option("b", x=2)]),
                 "options.0.label", id="long label"),
    pytest.param(variant(options=[{"id": "a", "scores": {"x": 1}}, option("b", x=2)]), "options.0.label",
                 id="missing label"),
    pytest.param(variant(options=[option("a", x=1), option("a", x=2)]), "options.1.id", id="duplicate option id"),
    pytest.param(variant(criteria=[criterion("x", 1), criterion("x", 1)]), "criteria.1.id",
                 id="duplicate criterion id"),
    pytest.param(variant(options=[option("a", x=1), option("b")]), "options.1.scores.x", id="missing score"),
    pytest.param(variant(options=[option("a", x=1, z=2), option("b", x=2)]), "options.0.scores.z",
                 id="unknown criterion score"),
    pytest.param(variant(criteria=[criterion("x", -1)]), "criteria.0.weight", id="negative weight"),
    pytest.param(variant(criteria=[criterion("x", 0), criterion("y", 0)],
                         options=[option("a", x=1, y=1), option("b", x=2, y=2)]), "criteria", id="all weights zero"),
    pytest.param(variant(criteria=[criterion("x", True)]), "criteria.0.weight", id="bool weight"),
    pytest.param(variant(criteria=[criterion("x", float("inf"))]), "criteria.0.weight", id="infinite weight"),
    pytest.param(variant(criteria=[criterion("x", 10**400)]), "criteria.0.weight", id="huge integer weight"),
    pytest.param(scored(True), "options.0.scores.x", id="bool score"),
    pytest.param(scored("1"), "options.0.scores.x", id="string score"),
    pytest.param(scored(None), "options.0.scores.x", id="null score"),
    pytest.param(scored(float("nan")), "options.0.scores.x", id="NaN score"),
    pytest.param(scored(float("inf")), "options.0.scores.x", id="infinite score"),
    pytest.param(scored(float("-inf")), "options.0.scores.x", id="minus infinite score"),
    pytest.param(scored(10**400), "options.0.scores.x", id="huge integer score"),
    pytest.param(scored(1e16), "options.0.scores.x", id="score beyond 1e15"),
    pytest.param(variant(extra=1), "extra", id="unknown top-level field"),
    pytest.param(variant(options=[{"id": "a", "label": "A", "scores": {"x": 1}, "colour": "red"}, option("b", x=2)]),
                 "options.0.colour", id="unknown option field"),
    pytest.param(variant(criteria=[{"id": "x", "weight": 1, "unit": "kg"}]), "criteria.0.unit",
                 id="unknown criterion field"),
    pytest.param(variant(mode="long"), "mode", id="bad mode"),
    pytest.param(variant(criteria=[criterion("x", 1, "up")]), "criteria.0.direction", id="bad direction"),
])
def test_invalid_inputs_are_refused_naming_the_field(inputs, field):
    with pytest.raises(PackInputError) as error:
        PACK.validate(inputs)

    assert error.value.field == field


def test_inputs_that_are_not_an_object_are_refused():
    with pytest.raises(PackInputError) as error:
        PACK.validate(["not", "an", "object"])

    assert error.value.field == "inputs"


def test_scores_at_the_limit_are_analysed():
    data = run(variant(options=[option("a", x=1e15), option("b", x=-1e15), option("c", x=0)]))

    assert data["winner"]["id"] == "a" and by_id(data, "topsis_score")["a"] == 1.0


# --- properties -------------------------------------------------------------------------------

TOLERANCE = 1e-9


@st.composite
def decisions(draw):
    n_options = draw(st.integers(min_value=2, max_value=8))
    n_criteria = draw(st.integers(min_value=1, max_value=5))
    criteria = [criterion(f"c{j}", draw(st.integers(min_value=0, max_value=10) | st.floats(min_value=0, max_value=100)),
                          draw(st.sampled_from(["benefit", "cost"]))) for j in range(n_criteria)]
    if all(c["weight"] == 0 for c in criteria):
        criteria[draw(st.integers(min_value=0, max_value=n_criteria - 1))]["weight"] = 1
    # Small integer ranges make ties and constant columns common; floats cover the rest.
    score = st.integers(min_value=0, max_value=3) | st.integers(min_value=-1000, max_value=1000) | st.floats(
        min_value=-1e6, max_value=1e6, allow_nan=False, allow_infinity=False)
    options = [option(f"o{i}", **{f"c{j}": draw(score) for j in range(n_criteria)}) for i in range(n_options)]
    return {"question": "q", "mode": draw(st.sampled_from(["brief", "full"])), "options": options,
            "criteria": criteria}


@settings(max_examples=100, deadline=None)
@given(decisions())
def test_any_valid_decision_is_analysed_consistently(inputs):
    checked = PACK.validate(inputs)
    result = PACK.execute(checked, timebox_sec=10)
    data = result.data

    assert math.fsum(normalised_weights(checked["criteria"])) == pytest.approx(1.0, abs=TOLERANCE)
    # Reported weights are rounded to 6 places: at most 5e-7 off each.
    assert sum(data["normalized_weights"].values()) == pytest.approx(1.0, abs=5e-7 * len(inputs["criteria"]))
    assert data["ranking"][0]["id"] == data["winner"]["id"] and data["ranking"][0]["weighted_rank"] == 1
    assert [row["weighted_rank"] for row in data["ranking"]] == list(range(1, len(inputs["options"]) + 1))
    assert sorted(row["topsis_rank"] for row in data["ranking"]) == list(range(1, len(inputs["options"]) + 1))
    assert all(0.0 <= row["topsis_score"] <= 1.0 for row in data["ranking"])
    assert all(0.0 <= row["weighted_score"] <= 1.0 for row in data["ranking"])
    assert -1.0 <= data["agreement"]["spearman"] <= 1.0
    assert data["margin"] >= 0.0
    cells = len(inputs["options"]) * len(inputs["criteria"])
    assert result.actual_cost_micros == PACK.quote_micros(checked) == (10_000 + 100 * cells) * (
        2 if inputs["mode"] == "full" else 1)
    assert data == decision_analyse(checked)
    assert (data["sensitivity"] is None) == (inputs["mode"] == "brief")


@settings(max_examples=100, deadline=None)
@given(decisions())
def test_the_sensitivity_crossing_is_exact(inputs):
    checked = PACK.validate(inputs)
    weights = normalised_weights(checked["criteria"])
    matrix = minmax_matrix(checked["options"], checked["criteria"])
    winner = ranking_order(weighted_sum(matrix, weights))[0]

    def leads(k: int, t: float, option_index: int) -> bool:
        scores = weighted_sum(matrix, weights_moved(weights, k, t))
        return scores[option_index] >= max(scores) - TOLERANCE

    for k, point in enumerate(sensitivity_points(matrix, weights, winner)):
        w_k = weights[k]
        if point is None:
            if len(weights) > 1:  # no weight in [0, 1] lets anyone overtake the winner
                assert all(leads(k, step / 40, winner) for step in range(41))
            continue
        t, rival = point
        assert 0.0 <= t <= 1.0 and rival != winner
        # Short of the crossing the winner still leads ...
        assert all(leads(k, w_k + (t - w_k) * step / 20, winner) for step in range(20))
        # ... and just beyond it the new winner leads.
        beyond = min(1.0, max(0.0, t + (1e-7 if t > w_k or (t == w_k and t < 1.0) else -1e-7)))
        assert leads(k, beyond, rival) or leads(k, t - (beyond - t), rival)
