"""The decision pack: TOPSIS against a published example, weighted sum by hand, sensitivity,
validation, determinism and cost. Pure computation: no database."""

from __future__ import annotations

import copy
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from runs.packs import PackInputError
from runs.packs.decision import DecisionPack, analyse, minmax_matrix, normalised_weights, weighted_sum

PACK = DecisionPack()


def run(inputs: dict) -> dict:
    return PACK.execute(PACK.validate(inputs), timebox_sec=10).data


def option(option_id: str, **scores) -> dict:
    return {"id": option_id, "label": option_id.upper(), "scores": scores}


def criterion(criterion_id: str, weight: float, direction: str = "benefit") -> dict:
    return {"id": criterion_id, "weight": weight, "direction": direction}


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
        """The fighter aircraft selection example of Hwang, C.L. and Yoon, K. (1981), *Multiple
        Attribute Decision Making: Methods and Applications*, Springer (Lecture Notes in Economics
        and Mathematical Systems 186), reused in Yoon, K.P. and Hwang, C.L. (1995), *Multiple
        Attribute Decision Making: An Introduction*, Sage: four aircraft on maximum speed, ferry
        range, maximum payload, acquisition cost (a cost attribute), reliability and
        maneuverability (the qualitative ratings quantified as average = 5, low = 3, high = 7,
        very high = 9), weights (0.2, 0.1, 0.1, 0.1, 0.2, 0.3). The published relative closeness
        to the ideal solution is A1 0.643, A2 0.268, A3 0.614, A4 0.312: A1 > A3 > A4 > A2."""
        data = run(FIGHTERS)
        closeness = {row["id"]: row["topsis_score"] for row in data["ranking"]}
        for option_id, published in {"a1": 0.643, "a2": 0.268, "a3": 0.614, "a4": 0.312}.items():
            assert closeness[option_id] == pytest.approx(published, abs=0.0011)
        topsis_order = sorted(data["ranking"], key=lambda row: row["topsis_rank"])
        assert [row["id"] for row in topsis_order] == ["a1", "a3", "a4", "a2"]
        assert data["agreement"]["topsis_winner"] == "a1"

    def test_a_column_of_zeros_does_not_divide_by_zero(self):
        data = run({"question": "q", "options": [option("a", x=0, y=1), option("b", x=0, y=2)],
                    "criteria": [criterion("x", 1), criterion("y", 1)]})
        scores = {row["id"]: row["topsis_score"] for row in data["ranking"]}
        assert scores == {"a": 0.0, "b": 1.0}

    def test_identical_options_are_at_one_half(self):
        data = run({"question": "q", "options": [option("a", x=3), option("b", x=3)],
                    "criteria": [criterion("x", 1)]})
        assert {row["topsis_score"] for row in data["ranking"]} == {0.5}


class TestDecisionPackWeightedSum:
    def test_matches_a_hand_computed_case(self):
        # price (cost, w 2 -> 0.5): a=10, b=20, c=15 -> normalised (20-x)/10: a 1.0, b 0.0, c 0.5
        # quality (benefit, w 1 -> 0.25): a=3, b=9, c=6 -> (x-3)/6: a 0.0, b 1.0, c 0.5
        # support (benefit, w 1 -> 0.25): a=5, b=5, c=8 -> (x-5)/3: a 0.0, b 0.0, c 1.0
        # a = 0.5*1.0 = 0.5; b = 0.25*1.0 = 0.25; c = 0.5*0.5 + 0.25*0.5 + 0.25*1.0 = 0.625
        data = run({"question": "Which vendor?", "options": [option("a", price=10, quality=3, support=5),
                                                             option("b", price=20, quality=9, support=5),
                                                             option("c", price=15, quality=6, support=8)],
                    "criteria": [criterion("price", 2, "cost"), criterion("quality", 1), criterion("support", 1)]})
        scores = {row["id"]: row["weighted_score"] for row in data["ranking"]}
        assert scores == {"a": 0.5, "b": 0.25, "c": 0.625}
        assert data["winner"] == {"id": "c", "label": "C"}
        assert data["runner_up"]["id"] == "a"
        assert data["margin"] == 0.125
        assert data["normalized_weights"] == {"price": 0.5, "quality": 0.25, "support": 0.25}

    def test_cost_and_benefit_directions_mirror_each_other(self):
        benefit = run({"question": "q", "options": [option("a", x=1), option("b", x=2)], "criteria": [criterion("x", 1)]})
        cost = run({"question": "q", "options": [option("a", x=1), option("b", x=2)],
                    "criteria": [criterion("x", 1, "cost")]})
        assert benefit["winner"]["id"] == "b" and cost["winner"]["id"] == "a"

    def test_scaling_all_weights_changes_nothing(self):
        scaled = copy.deepcopy(FIGHTERS)
        for item in scaled["criteria"]:
            item["weight"] *= 10
        assert run(scaled)["ranking"] == run(FIGHTERS)["ranking"]

    def test_ties_are_reported_and_broken_by_input_order(self):
        data = run({"question": "q", "options": [option("first", x=1, y=2), option("second", x=2, y=1)],
                    "criteria": [criterion("x", 1), criterion("y", 1)]})
        assert data["ties"] == ["first", "second"]
        assert data["winner"]["id"] == "first" and data["margin"] == 0.0
        assert "tied" in data["rationale"]

    def test_a_criterion_where_all_options_are_equal_does_not_discriminate(self):
        matrix = minmax_matrix([option("a", x=4, y=1), option("b", x=4, y=2)],
                               [criterion("x", 1), criterion("y", 1)])
        assert [row[0] for row in matrix] == [1.0, 1.0]


class TestDecisionPackAgreement:
    def test_reports_when_the_methods_disagree(self):
        data = run(FIGHTERS)  # weighted sum prefers a3 (0.5917 vs 0.5738), TOPSIS a1
        assert data["winner"]["id"] == "a3"
        assert data["agreement"] == {"same_winner": False, "topsis_winner": "a1", "spearman": 0.8}
        assert "TOPSIS prefers a1" in data["rationale"]

    def test_reports_when_they_agree(self):
        data = run({"question": "q", "options": [option("a", x=1, y=1), option("b", x=5, y=5), option("c", x=3, y=3)],
                    "criteria": [criterion("x", 1), criterion("y", 1)]})
        assert data["agreement"] == {"same_winner": True, "topsis_winner": "b", "spearman": 1.0}


def scores_with_weight(inputs: dict, criterion_id: str, new_weight: float) -> list[float]:
    """Weighted sums after moving one normalised weight, the others rescaled proportionally."""
    checked = PACK.validate(inputs)
    weights = normalised_weights(checked["criteria"])
    k = [c["id"] for c in checked["criteria"]].index(criterion_id)
    rest = 1 - weights[k]
    moved = [new_weight if j == k else w * (1 - new_weight) / rest for j, w in enumerate(weights)]
    return weighted_sum(minmax_matrix(checked["options"], checked["criteria"]), moved)


class TestDecisionPackSensitivity:
    def test_the_reported_change_flips_the_winner_and_a_smaller_one_does_not(self):
        inputs = {**FIGHTERS, "mode": "full"}
        data = run(inputs)
        ids = [o["id"] for o in FIGHTERS["options"]]
        for row in data["sensitivity"]:
            assert row["critical_weight"] is not None, row
            step = 1e-4 if row["change"] > 0 else -1e-4
            beyond = scores_with_weight(inputs, row["criterion"], row["critical_weight"] + step)
            before = scores_with_weight(inputs, row["criterion"], row["critical_weight"] - step)
            assert ids[beyond.index(max(beyond))] == row["new_winner"]
            assert ids[before.index(max(before))] == data["winner"]["id"]
        most_sensitive = min(data["sensitivity"], key=lambda r: abs(r["change"]))
        assert most_sensitive["criterion"] == "maneuverability" and most_sensitive["change"] == 0.024138
        assert "most sensitive to maneuverability" in data["rationale"]

    def test_no_change_can_flip_a_dominating_option(self):
        data = run({"question": "q", "mode": "full", "options": [option("a", x=9, y=9), option("b", x=1, y=1)],
                    "criteria": [criterion("x", 1), criterion("y", 1)]})
        assert all(row["critical_weight"] is None for row in data["sensitivity"])
        assert "No single weight change" in data["rationale"]

    def test_brief_mode_has_no_sensitivity(self):
        assert run(FIGHTERS)["sensitivity"] is None


class TestDecisionPackRationale:
    def test_names_the_winner_and_the_deciding_criteria(self):
        data = run(FIGHTERS)
        assert data["deciding_criteria"][0] == {"id": "reliability", "contribution": 0.1}
        assert data["rationale"].startswith("A3 ranks first")
        assert "reliability" in data["rationale"]


class TestDecisionPackDeterminism:
    def test_same_inputs_give_identical_data_whatever_the_key_order(self):
        reordered = json.loads(json.dumps(FIGHTERS, sort_keys=True))
        assert json.dumps(run(FIGHTERS), sort_keys=True) == json.dumps(run(reordered), sort_keys=True)
        assert run(FIGHTERS) == run(FIGHTERS)


class TestDecisionPackCost:
    @pytest.mark.parametrize(("mode", "micros"), [("brief", 10_600), ("full", 21_200)])
    def test_three_options_by_two_criteria(self, mode, micros):
        inputs = PACK.validate({"question": "q", "mode": mode,
                                "options": [option("a", x=1, y=2), option("b", x=2, y=1), option("c", x=0, y=0)],
                                "criteria": [criterion("x", 1), criterion("y", 1)]})
        assert PACK.quote_micros(inputs) == micros
        assert PACK.execute(inputs, timebox_sec=10).actual_cost_micros == micros


VALID = {"question": "q", "options": [option("a", x=1), option("b", x=2)], "criteria": [criterion("x", 1)]}


def variant(**changes):
    inputs = copy.deepcopy(VALID)
    inputs.update(changes)
    return inputs


@pytest.mark.parametrize(("inputs", "field"), [
    ({k: v for k, v in VALID.items() if k != "question"}, "question"),
    (variant(question=""), "question"),
    (variant(question="x" * 2001), "question"),
    (variant(context="x" * 20001), "context"),
    (variant(options=[option("a", x=1)]), "options"),
    (variant(options=[option(f"o{i}", x=i) for i in range(51)]), "options"),
    (variant(criteria=[criterion(f"c{i}", 1) for i in range(31)]), "criteria"),
    (variant(options=[option("a", x=1), option("a", x=2)]), "options.1.id"),
    (variant(criteria=[criterion("x", 1), criterion("x", 1)]), "criteria.1.id"),
    (variant(options=[option("a", x=1), option("b")]), "options.1.scores.x"),
    (variant(options=[option("a", x=1, z=2), option("b", x=2)]), "options.0.scores.z"),
    (variant(criteria=[criterion("x", -1)]), "criteria.0.weight"),
    (variant(criteria=[criterion("x", 0)]), "criteria"),
    (variant(options=[option("a", x=True), option("b", x=2)]), "options.0.scores.x"),
    (variant(options=[option("a", x="1"), option("b", x=2)]), "options.0.scores.x"),
    (variant(options=[option("a", x=float("nan")), option("b", x=2)]), "options.0.scores.x"),
    (variant(options=[option("a", x=float("inf")), option("b", x=2)]), "options.0.scores.x"),
    (variant(extra=1), "extra"),
    (variant(options=[{"id": "a", "label": "A", "scores": {"x": 1}, "colour": "red"}, option("b", x=2)]),
     "options.0.colour"),
    (variant(mode="long"), "mode"),
    (variant(criteria=[criterion("x", 1, "up")]), "criteria.0.direction"),
])
def test_invalid_inputs_name_the_field(inputs, field):
    with pytest.raises(PackInputError) as error:
        PACK.validate(inputs)
    assert error.value.field == field


@st.composite
def decisions(draw):
    n_options = draw(st.integers(min_value=2, max_value=8))
    n_criteria = draw(st.integers(min_value=1, max_value=5))
    criteria = [criterion(f"c{j}", draw(st.integers(min_value=0, max_value=10)),
                          draw(st.sampled_from(["benefit", "cost"]))) for j in range(n_criteria)]
    if all(c["weight"] == 0 for c in criteria):
        criteria[0]["weight"] = 1
    options = [option(f"o{i}", **{f"c{j}": draw(st.integers(min_value=-1000, max_value=1000)
                                                 | st.floats(min_value=-1e6, max_value=1e6))
                                  for j in range(n_criteria)}) for i in range(n_options)]
    return {"question": "q", "mode": draw(st.sampled_from(["brief", "full"])), "options": options,
            "criteria": criteria}


@settings(max_examples=100, deadline=None)
@given(decisions())
def test_any_valid_decision_is_analysed_consistently(inputs):
    checked = PACK.validate(inputs)
    result = PACK.execute(checked, timebox_sec=10)
    data = result.data
    assert sum(data["normalized_weights"].values()) == pytest.approx(1.0, abs=1e-5)
    assert data["ranking"][0]["id"] == data["winner"]["id"] and data["ranking"][0]["weighted_rank"] == 1
    assert all(0.0 <= row["topsis_score"] <= 1.0 for row in data["ranking"])
    cells = len(inputs["options"]) * len(inputs["criteria"])
    assert result.actual_cost_micros == (10_000 + 100 * cells) * (2 if inputs["mode"] == "full" else 1)
    assert data == analyse(checked)  # deterministic
