"""One sample's score from its verdicts, by the rubric's scoring method and policies.

`score` computes scores in SQL (store/views.sql: `_verdicts_scored`, `task_scores`,
`dimension_scores`); a reward server needs the same number for one sample the moment its last
verdict arrives, without a database round trip. `sample_score` is that formula in Python, line
for line with the views (tests/test_serve_scoring.py compares the two on the same verdicts, so
they cannot drift):

- a verdict counts when it is `ok` or `missing_output`, or `error`/`unscored` under
  `unscored: fail`; its scale value is its score (`ok`) or the scale minimum (the others that count);
- weighted_points: sum(weight of met ok verdicts) / sum(positive weights), over counted verdicts;
- mean_scale: the mean scale value; pass_rate: the pass criterion's (or the mean) scale value,
  passed when >= threshold;
- excluded: `missing_output: skip` with a missing output, or weighted_points with no positive
  weight counted (and no missing output).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rubric_judge.judge.executor import Outcome
    from rubric_judge.planning.compile import SamplePlan
    from rubric_judge.rubrics.schema import Rubric


@dataclass(frozen=True)
class Verdict:
    """One criterion's verdict as the `verdicts` table holds it.

    Attributes:
        status: ok | missing_output | unscored | error.
        met: binary verdicts' answer (None when not ok).
        score: scale verdicts' score (None when not ok).
    """

    criterion_id: str
    dimension: str
    weight: float
    status: str
    met: bool | None = None
    score: float | None = None


@dataclass(frozen=True)
class SampleScore:
    """A sample's score, as `task_scores` and `dimension_scores` would have it.

    Attributes:
        score: None when nothing counted (e.g. every verdict unscored under `unscored: exclude`).
        passed: pass_rate only: score >= threshold.
        excluded: left out of averages by the rubric's policy (see the module docstring).
        missing_output: the model produced no output for a required field.
        unscored: verdicts without a valid answer (error or unscored).
        dimensions: dimension id -> its score (None when nothing counted there).
    """

    score: float | None
    passed: bool | None
    excluded: bool
    missing_output: bool
    unscored: int
    dimensions: dict[str, float | None]


def _method_and_policies(rubric: Rubric) -> tuple[str, str, str, float | None, str | None, float | None]:
    scoring = rubric.scoring
    scale_min = float(rubric.verdict.min) if rubric.verdict.kind == "scale" else None
    if scoring is None:  # a metrics-only rubric: the views read it as "metrics_only", scored like pass_rate without criterion
        return "metrics_only", "fail", None, None, None, scale_min  # type: ignore[return-value]
    return scoring.method.value, scoring.missing_output.value, scoring.unscored, scoring.threshold, scoring.criterion, scale_min


def _counted(verdict: Verdict, unscored_policy: str | None) -> bool:
    return verdict.status in ("ok", "missing_output") or (verdict.status in ("error", "unscored") and unscored_policy == "fail")


def _scale_value(verdict: Verdict, unscored_policy: str | None, scale_min: float | None) -> float | None:
    if verdict.status == "ok":
        return verdict.score
    if verdict.status == "missing_output" or (verdict.status in ("error", "unscored") and unscored_policy == "fail"):
        return scale_min
    return None


def _mean(values: Iterable[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return sum(present) / len(present) if present else None


def _points(verdicts: Sequence[Verdict], unscored_policy: str | None) -> tuple[float | None, float | None]:
    """(points, positive_points) as SQL's sum() FILTER gives them: None when nothing matched."""
    counted = [v for v in verdicts if _counted(v, unscored_policy)]
    points = sum(v.weight if v.status == "ok" and v.met else 0.0 for v in counted) if counted else None
    positive = [v.weight for v in counted if v.weight > 0]
    return points, (sum(positive) if positive else None)


def sample_score(rubric: Rubric, verdicts: Sequence[Verdict]) -> SampleScore:
    """The sample's score and per-dimension scores from its verdicts (one replicate).

    Args:
        rubric: the rubric the sample was judged with (its scoring method and policies).
        verdicts: one per criterion judged or left unjudged for a missing output.

    Returns:
        The `SampleScore`; its `score` is None when no verdict counted.
    """
    method, policy, unscored_policy, threshold, pass_criterion, scale_min = _method_and_policies(rubric)
    missing = any(v.status == "missing_output" for v in verdicts)
    unscored = sum(v.status in ("error", "unscored") for v in verdicts)
    points, positive = _points(verdicts, unscored_policy)
    values = [_scale_value(v, unscored_policy, scale_min) for v in verdicts]
    if method == "weighted_points":
        score = None if points is None or not positive else points / positive
    elif method == "mean_scale" or pass_criterion is None:
        score = _mean(values)
    else:
        score = _mean(value for v, value in zip(verdicts, values, strict=True) if v.criterion_id == pass_criterion)
    passed = score >= threshold if method == "pass_rate" and score is not None and threshold is not None else None
    excluded = (policy == "skip" and missing) or (method == "weighted_points" and positive is None and not missing)
    dimensions: dict[str, float | None] = {}
    for dimension in dict.fromkeys(v.dimension for v in verdicts):
        members = [v for v in verdicts if v.dimension == dimension]
        if method == "weighted_points":
            dim_points, dim_positive = _points(members, unscored_policy)
            dimensions[dimension] = None if dim_points is None or not dim_positive else dim_points / dim_positive
        else:
            dimensions[dimension] = _mean(_scale_value(v, unscored_policy, scale_min) for v in members)
    return SampleScore(score, passed, excluded, missing, unscored, dimensions)


def plan_verdicts(plan: SamplePlan, outcomes: Sequence[Outcome]) -> list[Verdict]:
    """A sample's verdicts from its plan and its calls' outcomes, as `ResultStore.write_outcomes`
    and `write_samples` record them (an answer missing for a criterion is unscored, never unmet)."""
    verdicts = [Verdict(c.id, c.dimension, c.weight, "missing_output") for c in plan.unjudged]
    for outcome in outcomes:
        for criterion in outcome.call.criteria:
            answer: dict[str, Any] | None = (outcome.answer or {}).get(criterion.id)
            if outcome.status == "ok" and answer is not None:
                verdicts.append(Verdict(criterion.id, criterion.dimension, criterion.weight, "ok", answer.get("satisfied"), answer.get("score")))
            else:
                status = "unscored" if outcome.status in ("ok", "unscored") else "error"
                verdicts.append(Verdict(criterion.id, criterion.dimension, criterion.weight, status))
    return verdicts
