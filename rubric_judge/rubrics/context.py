"""What a rubric's prompt template sees: the sample's inputs, the criteria of the call, the
dimension, the verdict scale and the rubric, by the names the DSL documents. `validate` checks
templates against representative values (`trial_fields`); compiling renders them per call."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rubric_judge.rubrics.schema import Criterion, Dimension, InputKind, Rubric, VerdictSpec

# Names a criterion's text may use besides the rubric's inputs: what is fixed for the sample
# (not the call's criteria, dimension or image list, which depend on the batching mode).
CRITERION_GLOBALS = ("sample_id", "rubric", "verdict")


def trial_fields(rubric: Rubric) -> dict[str, Any]:
    """Representative sample values for checking templates at validate time."""
    return {name: (Path("trial.png") if spec.kind is InputKind.image else f"<{name}>") for name, spec in rubric.inputs.items()}


def _input_values(rubric: Rubric, fields: dict[str, Any]) -> dict[str, Any]:
    """The sample's inputs as templates see them: text as text, an image as its label."""
    labels = image_labels(rubric)
    context: dict[str, Any] = {}
    for name, spec in rubric.inputs.items():
        value = fields.get(name)
        if spec.kind is InputKind.image:
            context[name] = labels.get(name, name) if value is not None else None
        else:
            context[name] = None if value is None else str(value)
    return context


def _verdict_value(verdict: VerdictSpec) -> dict[str, Any]:
    return {"kind": verdict.kind, "min": verdict.min, "max": verdict.max}


def criterion_context(rubric: Rubric, sample_id: str, fields: dict[str, Any], verdict: VerdictSpec) -> dict[str, Any]:
    """What a criterion's text sees: the sample's inputs, `sample_id`, `rubric` and the verdict
    of the criterion's dimension (see CRITERION_GLOBALS).

    Args:
        rubric: the rubric the criterion belongs to.
        sample_id: the sample's id.
        fields: the sample's field values.
        verdict: the verdict of the criterion's dimension.

    Returns:
        The template context.
    """
    return {
        **_input_values(rubric, fields),
        "sample_id": sample_id,
        "rubric": {"id": rubric.rubric, "version": str(rubric.version), "description": rubric.description},
        "verdict": _verdict_value(verdict),
    }


def template_context(
    rubric: Rubric,
    sample_id: str,
    fields: dict[str, Any],
    criteria: Sequence[Criterion],
    dimension: Dimension | None,
    verdict: VerdictSpec | None = None,
) -> dict[str, Any]:
    """What the prompt and system templates see for one call (`verdict`: the call's, by default the rubric's)."""
    labels = image_labels(rubric)
    context = _input_values(rubric, fields)
    context.update(
        criteria=[
            {"id": c.id, "text": c.text, "weight": c.weight, "dimension": c.dimension, "number": i} for i, c in enumerate(criteria, start=1)
        ],
        dimension=None if dimension is None else {"id": dimension.id, "name": dimension.title, "description": dimension.description or ""},
        verdict=_verdict_value(verdict or rubric.verdict),
        rubric={"id": rubric.rubric, "version": str(rubric.version), "description": rubric.description},
        sample_id=sample_id,
        images=[labels.get(slot.field, slot.field) for slot in rubric.images if fields.get(slot.field) is not None],
    )
    return context


def image_labels(rubric: Rubric) -> dict[str, str]:
    return {slot.field: slot.label or slot.field for slot in rubric.images}
