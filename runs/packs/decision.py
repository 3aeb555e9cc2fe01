"""The built-in ``decision`` pack: a multi-criteria decision analysis.

Inputs (validated at submission; see ``input_schema``)::

    {"question": str, "context": str?, "mode": "brief" | "full",
     "options": [{"id", "label", "scores": {criterion_id: number}}, ...],   # 2..50
     "criteria": [{"id", "weight": number >= 0, "direction": "benefit" | "cost"}, ...]}  # 1..30

Method:
- weights are normalised to sum to 1;
- weighted sum: each criterion is min-max normalised to [0, 1] (reversed for ``cost``; a criterion
  on which every option scores the same gives everyone 1), then summed with the weights;
- TOPSIS (Hwang & Yoon, 1981): vector normalisation, weighting, distances to the ideal and the
  anti-ideal, closeness ``C = S- / (S+ + S-)`` (0.5 when an option is both, i.e. all equal);
- rankings by both methods (ties broken by input order); the winner is the weighted-sum winner;
  ``margin`` is its lead over the runner-up; ``agreement`` compares the methods (same winner,
  Spearman's rank correlation);
- ``full`` mode adds a sensitivity analysis: for each criterion, the smallest change of its
  normalised weight (the others rescaled proportionally so the weights still sum to 1) at which
  another option overtakes the winner, solved exactly (every score is linear in that weight);
- a short rationale citing the deciding criteria.

Output ``data``::

    {"question", "mode", "winner": {"id", "label"}, "runner_up": {"id", "label"}, "margin",
     "ranking": [{"id", "label", "weighted_score", "topsis_score", "weighted_rank", "topsis_rank"}],
     "agreement": {"same_winner", "topsis_winner", "spearman"}, "ties": [ids],
     "normalized_weights": {criterion: weight}, "deciding_criteria": [{"id", "contribution"}],
     "sensitivity": [{"criterion", "weight", "critical_weight", "change", "new_winner"}] | null,
     "rationale": str}

Deterministic: no clock or randomness; floats reported rounded to 6 decimals. Cost in integer USD
micros: $0.0100 plus $0.0001 per option x criterion cell, doubled in ``full`` mode; the quote is
that cost.
"""

from __future__ import annotations

import math
from typing import Any

from runs.packs.base import Pack, PackInputError, PackResult

BASE_MICROS = 10_000
PER_CELL_MICROS = 100
FULL_MODE_MULTIPLIER = 2
TIE_EPSILON = 1e-12
PLACES = 6

_ID = {"type": "string", "minLength": 1, "maxLength": 64}

INPUT_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "additionalProperties": False,
    "required": ["question", "options", "criteria"],
    "properties": {
        "question": {"type": "string", "minLength": 1, "maxLength": 2000},
        "context": {"type": "string", "maxLength": 20000},
        "mode": {"enum": ["brief", "full"], "default": "brief"},
        "options": {
            "type": "array", "minItems": 2, "maxItems": 50,
            "items": {
                "type": "object", "additionalProperties": False, "required": ["id", "label", "scores"],
                "properties": {
                    "id": _ID,
                    "label": {"type": "string", "minLength": 1, "maxLength": 200},
                    "scores": {"type": "object", "maxProperties": 30,
                               "additionalProperties": {"type": "number"}},
                },
            },
        },
        "criteria": {
            "type": "array", "minItems": 1, "maxItems": 30,
            "items": {
                "type": "object", "additionalProperties": False, "required": ["id", "weight"],
                "properties": {
                    "id": _ID,
                    "weight": {"type": "number", "minimum": 0},
                    "direction": {"enum": ["benefit", "cost"], "default": "benefit"},
                },
            },
        },
    },
}


def _round(value: float) -> float:
    rounded = round(value, PLACES)
    return 0.0 if rounded == 0 else rounded  # no "-0.0"


def _ranks(scores: list[float]) -> list[int]:
    """Ordinal ranks (1 = best), ties broken by input order."""
    order = sorted(range(len(scores)), key=lambda i: (-scores[i], i))
    ranks = [0] * len(scores)
    for position, index in enumerate(order, start=1):
        ranks[index] = position
    return ranks


class DecisionPack(Pack):
    pack_type = "decision"
    title = "Multi-criteria decision"
    description = ("Ranks options against weighted criteria by weighted sum and TOPSIS, reports the winner, "
                   "its margin, the agreement of the two methods, a sensitivity analysis (full mode) and a "
                   "rationale citing the deciding criteria.")
    input_schema = INPUT_SCHEMA

    # --- validation ---------------------------------------------------------------------------

    def check(self, inputs: dict[str, Any]) -> dict[str, Any]:
        criteria = inputs["criteria"]
        options = inputs["options"]
        criterion_ids: list[str] = []
        for index, criterion in enumerate(criteria):
            if criterion["id"] in criterion_ids:
                raise PackInputError(f"criteria.{index}.id", f"duplicate criterion id '{criterion['id']}'")
            weight = criterion["weight"]
            if isinstance(weight, bool) or not math.isfinite(weight):
                raise PackInputError(f"criteria.{index}.weight", "must be a finite number")
            criterion_ids.append(criterion["id"])
        if not any(criterion["weight"] > 0 for criterion in criteria):
            raise PackInputError("criteria", "at least one weight must be positive")
        seen: set[str] = set()
        for index, option in enumerate(options):
            if option["id"] in seen:
                raise PackInputError(f"options.{index}.id", f"duplicate option id '{option['id']}'")
            seen.add(option["id"])
            scores = option["scores"]
            for key in scores:
                if key not in criterion_ids:
                    raise PackInputError(f"options.{index}.scores.{key}", "no criterion has this id")
            for criterion_id in criterion_ids:
                if criterion_id not in scores:
                    raise PackInputError(f"options.{index}.scores.{criterion_id}", "missing score")
                value = scores[criterion_id]
                if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                    raise PackInputError(f"options.{index}.scores.{criterion_id}", "must be a finite number")
                if abs(value) > 1e15:
                    raise PackInputError(f"options.{index}.scores.{criterion_id}", "must be within ±1e15")
        return {
            "question": inputs["question"],
            "context": inputs.get("context", ""),
            "mode": inputs.get("mode", "brief"),
            "options": [{"id": o["id"], "label": o["label"], "scores": dict(o["scores"])} for o in options],
            "criteria": [{"id": c["id"], "weight": c["weight"], "direction": c.get("direction", "benefit")}
                         for c in criteria],
        }

    # --- pricing ----------------------------------------------------------------------------------

    def quote_micros(self, inputs: dict[str, Any]) -> int:
        cells = len(inputs["options"]) * len(inputs["criteria"])
        cost = BASE_MICROS + PER_CELL_MICROS * cells
        return cost * FULL_MODE_MULTIPLIER if inputs.get("mode", "brief") == "full" else cost

    def pricing(self) -> dict[str, Any]:
        return {"currency": "USD", "base_usd": "0.0100", "per_cell_usd": "0.0001",
                "full_mode_multiplier": FULL_MODE_MULTIPLIER, "cells": "options x criteria",
                "quote": "the cost; reserve at least this much"}

    # --- analysis ---------------------------------------------------------------------------------

    def execute(self, inputs: dict[str, Any], *, timebox_sec: int) -> PackResult:
        analysis = analyse(inputs)
        logs = [f"{len(inputs['options'])} options x {len(inputs['criteria'])} criteria, mode {inputs['mode']}",
                f"winner {analysis['winner']['id']} by weighted sum; TOPSIS winner "
                f"{analysis['agreement']['topsis_winner']}"]
        return PackResult(data=analysis, actual_cost_micros=self.quote_micros(inputs), logs=logs)


def normalised_weights(criteria: list[dict]) -> list[float]:
    total = math.fsum(c["weight"] for c in criteria)
    return [c["weight"] / total for c in criteria]


def minmax_matrix(options: list[dict], criteria: list[dict]) -> list[list[float]]:
    """n[i][j] in [0, 1]: 1 is the best score on criterion j (reversed for cost criteria)."""
    matrix = [[0.0] * len(criteria) for _ in options]
    for j, criterion in enumerate(criteria):
        column = [option["scores"][criterion["id"]] for option in options]
        low, high = min(column), max(column)
        for i, value in enumerate(column):
            if high == low:
                matrix[i][j] = 1.0
            elif criterion["direction"] == "cost":
                matrix[i][j] = (high - value) / (high - low)
            else:
                matrix[i][j] = (value - low) / (high - low)
    return matrix


def weighted_sum(matrix: list[list[float]], weights: list[float]) -> list[float]:
    return [math.fsum(w * n for w, n in zip(weights, row, strict=True)) for row in matrix]


def topsis(options: list[dict], criteria: list[dict], weights: list[float]) -> list[float]:
    """Closeness coefficients C_i = S-_i / (S+_i + S-_i), in [0, 1]."""
    weighted = [[0.0] * len(criteria) for _ in options]
    for j, criterion in enumerate(criteria):
        column = [option["scores"][criterion["id"]] for option in options]
        norm = math.sqrt(math.fsum(value * value for value in column))
        for i, value in enumerate(column):
            weighted[i][j] = weights[j] * (value / norm if norm else 0.0)
    best, worst = [], []
    for j, criterion in enumerate(criteria):
        column = [row[j] for row in weighted]
        high, low = max(column), min(column)
        best.append(low if criterion["direction"] == "cost" else high)
        worst.append(high if criterion["direction"] == "cost" else low)
    closeness = []
    for row in weighted:
        to_best = math.sqrt(math.fsum((v - b) ** 2 for v, b in zip(row, best, strict=True)))
        to_worst = math.sqrt(math.fsum((v - w) ** 2 for v, w in zip(row, worst, strict=True)))
        total = to_best + to_worst
        closeness.append(0.5 if total == 0 else to_worst / total)
    return closeness


def spearman(ranks_a: list[int], ranks_b: list[int]) -> float:
    n = len(ranks_a)
    squared = sum((a - b) ** 2 for a, b in zip(ranks_a, ranks_b, strict=True))
    return 1.0 - 6.0 * squared / (n * (n * n - 1))


def sensitivity(matrix: list[list[float]], weights: list[float], winner: int, options: list[dict],
                criteria: list[dict]) -> list[dict]:
    """For each criterion k, the normalised weight t at which another option first overtakes the
    winner when w_k moves to t and the other weights are rescaled by (1 - t) / (1 - w_k).

    Every weighted score is then S_i(t) = t * a_i + (1 - t) * b_i with a_i = n_ik and
    b_i = sum_{j != k} w_j n_ij / (1 - w_k) (equal shares when w_k = 1), so each rival crosses the
    winner at most once, where (b_o - b_W) + t * ((a_o - a_W) - (b_o - b_W)) = 0.
    """
    results = []
    m = len(criteria)
    for k, criterion in enumerate(criteria):
        w_k = weights[k]
        if m == 1:
            results.append({"criterion": criterion["id"], "weight": _round(w_k), "critical_weight": None,
                            "change": None, "new_winner": None})
            continue
        a = [row[k] for row in matrix]
        if w_k < 1.0:
            b = [math.fsum(weights[j] * row[j] for j in range(m) if j != k) / (1.0 - w_k) for row in matrix]
        else:
            b = [math.fsum(row[j] for j in range(m) if j != k) / (m - 1) for row in matrix]
        best: tuple[float, int, float] | None = None  # (|change|, option, t)
        for other in range(len(matrix)):
            if other == winner:
                continue
            gap_b = b[other] - b[winner]
            slope = (a[other] - a[winner]) - gap_b
            if slope == 0:
                continue
            t = -gap_b / slope
            if not 0.0 <= t <= 1.0:
                continue
            # The rival must be ahead just beyond t, in the direction of the move.
            direction = 1.0 if t >= w_k else -1.0
            if slope * direction <= 0:
                continue
            candidate = (abs(t - w_k), other, t)
            if best is None or candidate[:2] < best[:2]:
                best = candidate
        if best is None:
            results.append({"criterion": criterion["id"], "weight": _round(w_k), "critical_weight": None,
                            "change": None, "new_winner": None})
        else:
            _, other, t = best
            results.append({"criterion": criterion["id"], "weight": _round(w_k), "critical_weight": _round(t),
                            "change": _round(t - w_k), "new_winner": options[other]["id"]})
    return results


def analyse(inputs: dict[str, Any]) -> dict[str, Any]:
    options, criteria = inputs["options"], inputs["criteria"]
    weights = normalised_weights(criteria)
    matrix = minmax_matrix(options, criteria)
    scores = weighted_sum(matrix, weights)
    closeness = topsis(options, criteria, weights)
    weighted_ranks, topsis_ranks = _ranks(scores), _ranks(closeness)
    winner = weighted_ranks.index(1)
    runner_up = weighted_ranks.index(2)
    topsis_winner = topsis_ranks.index(1)
    top = max(scores)
    ties = [options[i]["id"] for i in range(len(options)) if top - scores[i] <= TIE_EPSILON]
    contributions = sorted(
        ((weights[j] * (matrix[winner][j] - matrix[runner_up][j]), j) for j in range(len(criteria))),
        key=lambda item: (-item[0], item[1]),
    )
    deciding = [{"id": criteria[j]["id"], "contribution": _round(value)}
                for value, j in contributions[:3] if value > TIE_EPSILON]
    analysis = {
        "question": inputs["question"],
        "mode": inputs["mode"],
        "winner": {"id": options[winner]["id"], "label": options[winner]["label"]},
        "runner_up": {"id": options[runner_up]["id"], "label": options[runner_up]["label"]},
        "margin": _round(scores[winner] - scores[runner_up]),
        "ranking": sorted(
            ({"id": option["id"], "label": option["label"], "weighted_score": _round(scores[i]),
              "topsis_score": _round(closeness[i]), "weighted_rank": weighted_ranks[i],
              "topsis_rank": topsis_ranks[i]} for i, option in enumerate(options)),
            key=lambda row: row["weighted_rank"],
        ),
        "agreement": {"same_winner": winner == topsis_winner, "topsis_winner": options[topsis_winner]["id"],
                      "spearman": _round(spearman(weighted_ranks, topsis_ranks))},
        "ties": ties if len(ties) > 1 else [],
        "normalized_weights": {c["id"]: _round(w) for c, w in zip(criteria, weights, strict=True)},
        "deciding_criteria": deciding,
        "sensitivity": None,
    }
    if inputs["mode"] == "full":
        analysis["sensitivity"] = sensitivity(matrix, weights, winner, options, criteria)
    analysis["rationale"] = rationale(analysis, criteria)
    return analysis


def rationale(analysis: dict[str, Any], criteria: list[dict]) -> str:
    winner, runner_up = analysis["winner"], analysis["runner_up"]
    scores = {row["id"]: row["weighted_score"] for row in analysis["ranking"]}
    parts = [f"{winner['label']} ranks first with a weighted score of {scores[winner['id']]:.3f}, "
             f"{analysis['margin']:.3f} ahead of {runner_up['label']}."]
    if analysis["ties"]:
        tied = ", ".join(analysis["ties"])
        parts.append(f"It is tied at the top with {tied}; the tie is broken by the order the options were given.")
    deciding = analysis["deciding_criteria"]
    if deciding:
        names = [item["id"] for item in deciding]
        listed = names[0] if len(names) == 1 else ", ".join(names[:-1]) + f" and {names[-1]}"
        parts.append(f"The deciding {'criterion is' if len(names) == 1 else 'criteria are'} {listed}, "
                     f"where {winner['label']} does better than {runner_up['label']} on the weights given.")
    agreement = analysis["agreement"]
    if agreement["same_winner"]:
        parts.append(f"TOPSIS agrees (rank correlation {agreement['spearman']:.2f}).")
    else:
        parts.append(f"TOPSIS prefers {agreement['topsis_winner']} instead (rank correlation "
                     f"{agreement['spearman']:.2f}), so the choice depends on the method.")
    sensitive = [row for row in analysis["sensitivity"] or [] if row["change"] is not None]
    if sensitive:
        row = min(sensitive, key=lambda r: (abs(r["change"]), r["criterion"]))
        parts.append(f"The result is most sensitive to {row['criterion']}: moving its weight from "
                     f"{row['weight']:.3f} to {row['critical_weight']:.3f} would make {row['new_winner']} win.")
    elif analysis["sensitivity"] is not None:
        parts.append("No single weight change can alter the winner.")
    return " ".join(parts)
