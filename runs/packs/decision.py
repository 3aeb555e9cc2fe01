"""The built-in ``decision`` pack: a multi-criteria decision analysis.

Inputs (validated at submission; see ``INPUT_SCHEMA`` and ``DecisionPack.check``)::

    {"question": str (1..2000), "context": str (<= 20000, default ""), "mode": "brief" | "full",
     "options": [{"id", "label", "scores": {criterion_id: number}}, ...],                 # 2..50
     "criteria": [{"id", "weight": number >= 0, "direction": "benefit" | "cost"}, ...]}  # 1..30

Every option scores every criterion; scores are finite numbers within +-1e15 (so no sum of squares
can overflow); at least one weight is positive.

Method:

- weights are normalised to sum to 1;
- weighted sum: each criterion is min-max normalised to [0, 1] (1 = best; reversed for ``cost``; a
  criterion on which every option scores the same gives everyone 1, so it does not discriminate),
  then summed with the weights;
- TOPSIS (Hwang & Yoon, 1981): vector normalisation ``r = x / sqrt(sum x^2)`` (0 when the column is
  all zeros), weighting, distances ``S+`` to the ideal and ``S-`` to the anti-ideal (best and worst
  per criterion, by direction), closeness ``C = S- / (S+ + S-)``. When both distances are 0 (every
  option identical on every weighted criterion) ``C = 0.5``: the option is as near the ideal as
  the anti-ideal, and a constant keeps the ranking a pure tie;
- rankings by each method: descending score; scores within 1e-12 of each other count as equal and
  are ordered by input order. Ranks are ordinal (1, 2, 3, ... with no shared ranks);
- the winner is the weighted-sum winner (the simpler, more explainable method; TOPSIS is the
  cross-check). ``margin`` is its weighted score minus the runner-up's; ``ties`` lists the options
  tied at the top within 1e-12 (empty when there is no tie); ``agreement`` says whether TOPSIS picks
  the same winner and gives Spearman's rank correlation between the two rankings
  (``1 - 6 sum d^2 / (n (n^2 - 1))``, defined for n >= 2; with n = 2 it is +1 or -1);
- the deciding criteria are the (up to three) criteria contributing most to the winner's lead over
  the runner-up, ``weight x (normalised score of winner - of runner-up)``, positive ones only;
- ``full`` mode adds a sensitivity analysis: for each criterion k, the normalised weight ``t`` in
  [0, 1] nearest to the current ``w_k`` at which another option overtakes the winner, when ``w_k``
  becomes ``t`` and the other weights are rescaled by ``(1 - t) / (1 - w_k)`` so they still sum to 1
  (when ``w_k`` is already 1 the others are all 0 and share ``1 - t`` equally). Each weighted score is
  then linear in ``t``, so every crossing is solved exactly. ``critical_weight`` is that crossing
  (the boundary: just beyond it the new winner leads); ``change = critical_weight - weight``; all
  three are null when no weight in [0, 1] changes the winner. When rivals cross at the same point,
  the one rising fastest beyond it is the new winner; an increase and a decrease of equal size are
  reported as the increase;
- a plain-language rationale: winner, margin, deciding criteria, disagreement of the methods and
  (full mode) the most sensitive criterion.

Output ``data`` (floats rounded to 6 decimals; no clock or randomness, so the same inputs give the
same data)::

    {"question": str,
     "mode": "brief" | "full",
     "winner": {"id", "label"},                       # the weighted-sum winner
     "runner_up": {"id", "label"},                    # second by weighted sum
     "margin": float,                                 # winner's weighted score - runner-up's
     "ranking": [{"id", "label", "weighted_score", "topsis_score",
                  "weighted_rank", "topsis_rank"}, ...],           # in weighted-rank order
     "methods": {
         "weighted_sum": {"normalization": "min-max", "winner": id, "order": [id, ...]},
         "topsis": {"normalization": "vector", "winner": id, "order": [id, ...],
                    "distances": [{"id", "to_ideal", "to_anti_ideal"}, ...]}},  # in input order
     "agreement": {"same_winner": bool, "topsis_winner": id, "spearman": float},
     "ties": [id, ...],                               # tied at the top by weighted sum, or []
     "normalized_weights": {criterion_id: float},     # sums to 1 (before rounding)
     "deciding_criteria": [{"id", "contribution"}, ...],          # 0..3, largest first
     "sensitivity": null | [{"criterion", "weight", "critical_weight", "change", "new_winner"}, ...],
     "rationale": str}

Cost in integer USD micros (no float touches money): 10_000 ($0.0100) plus 100 ($0.0001) per
option x criterion cell, doubled in ``full`` mode. The quote is that cost and so is the actual cost.
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
SCORE_LIMIT = 1e15

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
                    # python-jsonschema's "number" excludes booleans; check() re-checks anyway.
                    "scores": {"type": "object", "maxProperties": 30, "additionalProperties": {"type": "number"}},
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


def _finite(value: Any) -> float | None:
    """``value`` as a finite float, or None (booleans, non-numbers, NaN, infinities, and integers too
    large for a float, which JSON can carry)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    try:
        number = float(value)
    except OverflowError:
        return None
    return number if math.isfinite(number) else None


def _round(value: float) -> float:
    rounded = round(value, PLACES)
    return 0.0 if rounded == 0 else rounded  # never "-0.0"


class DecisionPack(Pack):
    pack_type = "decision"
    title = "Multi-criteria decision"
    description = ("Ranks options against weighted criteria by weighted sum and by TOPSIS; reports the winner, "
                   "its margin, whether the two methods agree, a sensitivity analysis of the weights (full mode) "
                   "and a short rationale citing the deciding criteria.")
    input_schema = INPUT_SCHEMA

    def check(self, inputs: dict[str, Any]) -> dict[str, Any]:
        """The rules the schema cannot express; returns the inputs with defaults filled in.
        Idempotent: checking normalised inputs returns them unchanged."""
        criteria, options = inputs["criteria"], inputs["options"]
        criterion_ids: list[str] = []
        for index, criterion in enumerate(criteria):
            if criterion["id"] in criterion_ids:
                raise PackInputError(f"criteria.{index}.id", f"duplicate criterion id {criterion['id']!r}")
            weight = _finite(criterion["weight"])
            if weight is None or weight < 0:
                raise PackInputError(f"criteria.{index}.weight", "must be a finite number >= 0")
            criterion_ids.append(criterion["id"])
        if not any(criterion["weight"] > 0 for criterion in criteria):
            raise PackInputError("criteria", "at least one weight must be positive")
        known = set(criterion_ids)
        option_ids: set[str] = set()
        for index, option in enumerate(options):
            if option["id"] in option_ids:
                raise PackInputError(f"options.{index}.id", f"duplicate option id {option['id']!r}")
            option_ids.add(option["id"])
            scores = option["scores"]
            for key in scores:
                if key not in known:
                    raise PackInputError(f"options.{index}.scores.{key}", "no criterion has this id")
            for criterion_id in criterion_ids:
                if criterion_id not in scores:
                    raise PackInputError(f"options.{index}.scores.{criterion_id}", "missing score")
                score = _finite(scores[criterion_id])
                if score is None:
                    raise PackInputError(f"options.{index}.scores.{criterion_id}", "must be a finite number")
                if abs(score) > SCORE_LIMIT:
                    raise PackInputError(f"options.{index}.scores.{criterion_id}", "must be within ±1e15")
        return {
            "question": inputs["question"],
            "context": inputs.get("context", ""),
            "mode": inputs.get("mode", "brief"),
            "options": [{"id": o["id"], "label": o["label"], "scores": {c: o["scores"][c] for c in criterion_ids}}
                        for o in options],
            "criteria": [{"id": c["id"], "weight": c["weight"], "direction": c.get("direction", "benefit")}
                         for c in criteria],
        }

    def quote_micros(self, inputs: dict[str, Any]) -> int:
        cells = len(inputs["options"]) * len(inputs["criteria"])
        micros = BASE_MICROS + PER_CELL_MICROS * cells
        return micros * FULL_MODE_MULTIPLIER if inputs.get("mode", "brief") == "full" else micros

    def pricing(self) -> dict[str, Any]:
        return {"currency": "USD", "base_usd": "0.0100", "per_cell_usd": "0.0001",
                "full_mode_multiplier": FULL_MODE_MULTIPLIER, "cells": "options x criteria"}

    def execute(self, inputs: dict[str, Any], *, timebox_sec: int) -> PackResult:
        # Re-normalising is cheap and idempotent, and spares callers that stored raw inputs.
        inputs = self.check(inputs)
        data = decision_analyse(inputs)
        logs = [f"{len(inputs['options'])} options x {len(inputs['criteria'])} criteria, mode {inputs['mode']}",
                f"weighted-sum winner {data['winner']['id']}, TOPSIS winner {data['agreement']['topsis_winner']}"]
        return PackResult(data=data, actual_cost_micros=self.quote_micros(inputs), logs=logs)


# --- the analysis (pure functions of validated, normalised inputs) -----------------------------


def normalised_weights(criteria: list[dict]) -> list[float]:
    """Weights scaled to sum to 1. Dividing by the largest first keeps huge weights from
    overflowing the sum."""
    raw = [float(c["weight"]) for c in criteria]
    largest = max(raw)
    scaled = [w / largest for w in raw]
    total = math.fsum(scaled)
    return [w / total for w in scaled]


def minmax_matrix(options: list[dict], criteria: list[dict]) -> list[list[float]]:
    """``n[i][j]`` in [0, 1], 1 the best score on criterion j (reversed for cost criteria); 1.0 for
    everyone on a criterion where all scores are equal."""
    matrix = [[0.0] * len(criteria) for _ in options]
    for j, criterion in enumerate(criteria):
        column = [float(option["scores"][criterion["id"]]) for option in options]
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


def topsis(options: list[dict], criteria: list[dict], weights: list[float]) -> list[tuple[float, float, float]]:
    """``(closeness, distance to ideal, distance to anti-ideal)`` per option, closeness in [0, 1]."""
    weighted = [[0.0] * len(criteria) for _ in options]
    for j, criterion in enumerate(criteria):
        column = [float(option["scores"][criterion["id"]]) for option in options]
        norm = math.sqrt(math.fsum(value * value for value in column))  # |scores| <= 1e15: no overflow
        for i, value in enumerate(column):
            weighted[i][j] = weights[j] * (value / norm) if norm > 0 else 0.0
    ideal, anti_ideal = [], []
    for j, criterion in enumerate(criteria):
        column = [row[j] for row in weighted]
        best, worst = (min(column), max(column)) if criterion["direction"] == "cost" else (max(column), min(column))
        ideal.append(best)
        anti_ideal.append(worst)
    results = []
    for row in weighted:
        to_ideal = math.sqrt(math.fsum((v - b) ** 2 for v, b in zip(row, ideal, strict=True)))
        to_anti = math.sqrt(math.fsum((v - w) ** 2 for v, w in zip(row, anti_ideal, strict=True)))
        total = to_ideal + to_anti
        results.append((0.5 if total == 0 else to_anti / total, to_ideal, to_anti))
    return results


def ranking_order(scores: list[float]) -> list[int]:
    """Indices best first. Scores within TIE_EPSILON of their neighbour form one tie group, ordered
    by input index, so float noise never decides between options that are equal."""
    by_score = sorted(range(len(scores)), key=lambda i: (-scores[i], i))
    order: list[int] = []
    group = [by_score[0]]
    for previous, current in zip(by_score, by_score[1:], strict=False):
        if scores[previous] - scores[current] <= TIE_EPSILON:
            group.append(current)
        else:
            order.extend(sorted(group))
            group = [current]
    order.extend(sorted(group))
    return order


def ranks_from_order(order: list[int]) -> list[int]:
    ranks = [0] * len(order)
    for position, index in enumerate(order, start=1):
        ranks[index] = position
    return ranks


def spearman(ranks_a: list[int], ranks_b: list[int]) -> float:
    n = len(ranks_a)
    squared = sum((a - b) ** 2 for a, b in zip(ranks_a, ranks_b, strict=True))
    return 1.0 - 6.0 * squared / (n * (n * n - 1))


def sensitivity_points(matrix: list[list[float]], weights: list[float], winner: int) -> list[tuple[float, int] | None]:
    """Per criterion k: ``(t, new_winner)``, the normalised weight of k nearest to ``w_k`` at which
    another option overtakes ``winner`` (the others rescaled proportionally), or None.

    With ``w_k -> t`` every weighted score is ``S_i(t) = t a_i + (1 - t) b_i``, where ``a_i = n_ik``
    and ``b_i = sum_{j != k} w_j n_ij / (1 - w_k)`` (the mean of the other columns when ``w_k = 1``).
    A rival o leads the winner W where ``d(t) = g + s t > 0`` with ``g = b_o - b_W`` and
    ``s = (a_o - a_W) - g``: beyond the root ``-g / s``, upwards if ``s > 0``, downwards if ``s < 0``.
    At the root itself they tie, which the rival wins only when it comes first in the input.
    """
    m = len(weights)
    results: list[tuple[float, int] | None] = []
    for k in range(m):
        if m == 1:
            results.append(None)  # a single weight is always 1: nothing to move
            continue
        w_k = weights[k]
        a = [row[k] for row in matrix]
        if w_k < 1.0:
            b = [math.fsum(weights[j] * row[j] for j in range(m) if j != k) / (1.0 - w_k) for row in matrix]
        else:
            b = [math.fsum(row[j] for j in range(m) if j != k) / (m - 1) for row in matrix]
        best: tuple[float, int, float, int] | None = None  # (|t - w_k|, prefer increase, -slope beyond, rival)
        crossing = 0.0
        for rival in range(len(matrix)):
            if rival == winner:
                continue
            g = b[rival] - b[winner]
            s = (a[rival] - a[winner]) - g
            if s == 0:
                continue  # parallel: the gap never changes
            root = -g / s
            if s > 0:  # the rival leads above the root
                if root > 1.0 or (root == 1.0 and rival > winner):
                    continue
                t = max(root, w_k)
            else:  # the rival leads below the root
                if root < 0.0 or (root == 0.0 and rival > winner):
                    continue
                t = min(root, w_k)
            upward = t > w_k or (t == w_k and s > 0)
            key = (abs(t - w_k), 0 if upward else 1, -abs(s), rival)
            if best is None or _before(key, best):
                best, crossing = key, t
        results.append(None if best is None else (crossing, best[3]))
    return results


def _before(key: tuple[float, int, float, int], best: tuple[float, int, float, int]) -> bool:
    """Order candidate crossings: nearest first (crossings within TIE_EPSILON count as the same
    point), then increases before decreases, then the steepest rival (it leads just beyond), then
    input order."""
    if abs(key[0] - best[0]) > TIE_EPSILON:
        return key[0] < best[0]
    return key[1:] < best[1:]


def decision_analyse(inputs: dict[str, Any]) -> dict[str, Any]:
    """The ``data`` of a decision run (see the module docstring) from validated, normalised inputs."""
    options, criteria = inputs["options"], inputs["criteria"]
    ids = [option["id"] for option in options]
    weights = normalised_weights(criteria)
    matrix = minmax_matrix(options, criteria)
    scores = weighted_sum(matrix, weights)
    closeness_rows = topsis(options, criteria, weights)
    closeness = [row[0] for row in closeness_rows]

    weighted_order, topsis_order = ranking_order(scores), ranking_order(closeness)
    weighted_ranks, topsis_ranks = ranks_from_order(weighted_order), ranks_from_order(topsis_order)
    winner, runner_up, topsis_winner = weighted_order[0], weighted_order[1], topsis_order[0]
    ties = [ids[i] for i in weighted_order if scores[winner] - scores[i] <= TIE_EPSILON]

    contributions = sorted(((weights[j] * (matrix[winner][j] - matrix[runner_up][j]), j)
                            for j in range(len(criteria))), key=lambda item: (-item[0], item[1]))
    deciding = [{"id": criteria[j]["id"], "contribution": _round(value)}
                for value, j in contributions[:3] if value > TIE_EPSILON]

    sensitivity = None
    if inputs["mode"] == "full":
        sensitivity = []
        for criterion, weight, point in zip(criteria, weights, sensitivity_points(matrix, weights, winner),
                                            strict=True):
            row = {"criterion": criterion["id"], "weight": _round(weight), "critical_weight": None,
                   "change": None, "new_winner": None}
            if point is not None:
                t, rival = point
                row.update(critical_weight=_round(t), change=_round(t - weight), new_winner=ids[rival])
            sensitivity.append(row)

    data: dict[str, Any] = {
        "question": inputs["question"],
        "mode": inputs["mode"],
        "winner": {"id": ids[winner], "label": options[winner]["label"]},
        "runner_up": {"id": ids[runner_up], "label": options[runner_up]["label"]},
        "margin": _round(scores[winner] - scores[runner_up]),
        "ranking": [{"id": ids[i], "label": options[i]["label"], "weighted_score": _round(scores[i]),
                     "topsis_score": _round(closeness[i]), "weighted_rank": weighted_ranks[i],
                     "topsis_rank": topsis_ranks[i]} for i in weighted_order],
        "methods": {
            "weighted_sum": {"normalization": "min-max", "winner": ids[winner],
                             "order": [ids[i] for i in weighted_order]},
            "topsis": {"normalization": "vector", "winner": ids[topsis_winner],
                       "order": [ids[i] for i in topsis_order],
                       "distances": [{"id": ids[i], "to_ideal": _round(row[1]), "to_anti_ideal": _round(row[2])}
                                     for i, row in enumerate(closeness_rows)]},
        },
        "agreement": {"same_winner": winner == topsis_winner, "topsis_winner": ids[topsis_winner],
                      "spearman": _round(spearman(weighted_ranks, topsis_ranks))},
        "ties": ties if len(ties) > 1 else [],
        "normalized_weights": {c["id"]: _round(w) for c, w in zip(criteria, weights, strict=True)},
        "deciding_criteria": deciding,
        "sensitivity": sensitivity,
    }
    data["rationale"] = decision_rationale(data, labels={o["id"]: o["label"] for o in options})
    return data


def _listed(names: list[str]) -> str:
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + f" and {names[-1]}"


def decision_rationale(data: dict[str, Any], *, labels: dict[str, str]) -> str:
    winner, runner_up = data["winner"], data["runner_up"]
    score = data["ranking"][0]["weighted_score"]
    if data["ties"]:
        others = [labels[option_id] for option_id in data["ties"] if option_id != winner["id"]]
        parts = [f"{winner['label']} is tied at the top with {_listed(others)} (weighted score {score:.3f}); "
                 f"it is named first only because it was listed first."]
    else:
        parts = [f"{winner['label']} ranks first by weighted sum with a score of {score:.3f}, "
                 f"{data['margin']:.3f} ahead of {runner_up['label']}."]
    deciding = data["deciding_criteria"]
    if deciding:
        names = [item["id"] for item in deciding]
        noun = "criterion is" if len(names) == 1 else "criteria are"
        parts.append(f"The deciding {noun} {_listed(names)}, where {winner['label']} does better than "
                     f"{runner_up['label']} for the weights given.")
    agreement = data["agreement"]
    if agreement["same_winner"]:
        parts.append(f"TOPSIS agrees (rank correlation {agreement['spearman']:.2f}).")
    else:
        parts.append(f"TOPSIS ranks {labels[agreement['topsis_winner']]} first instead (rank correlation "
                     f"{agreement['spearman']:.2f}), so the choice depends on the method.")
    if data["sensitivity"] is not None:
        movable = [row for row in data["sensitivity"] if row["change"] is not None]
        if movable:
            row = min(movable, key=lambda r: abs(r["change"]))  # min() keeps the first on ties: input order
            if row["change"] == 0:
                parts.append(f"The result is on a knife-edge: the slightest change of the weight of "
                             f"{row['criterion']} would make {labels[row['new_winner']]} the winner.")
            else:
                parts.append(f"The result is most sensitive to {row['criterion']}: moving its weight from "
                             f"{row['weight']:.3f} to {row['critical_weight']:.3f} would make "
                             f"{labels[row['new_winner']]} the winner.")
        else:
            parts.append("No change of a single weight alters the winner.")
    return " ".join(parts)
