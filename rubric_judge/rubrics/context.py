"""What a rubric's prompt template sees: the sample's inputs, the criteria of the call, the
dimension, the verdict scale and the rubric, by the names the DSL documents. `validate` checks
templates against representative values (`trial_fields`); compiling renders them per call."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rubric_judge.rubrics.schema import Criterion, Dimension, InputKind, Rubric


def trial_fields(rubric: Rubric) -> dict[str, Any]:
    """Representative sample values for checking templates at validate time."""
    return {name: (Path("trial.png") if spec.kind is InputKind.image else f"<{name}>") for name, spec in rubric.inputs.items()}


def template_context(
    rubric: Rubric, sample_id: str, fields: dict[str, Any], criteria: Sequence[Criterion], dimension: Dimension | None
) -> dict[str, Any]:
    labels = image_labels(rubric)
    context: dict[str, Any] = {}
    for name, spec in rubric.inputs.items():
        value = fields.get(name)
        if spec.kind is InputKind.image:
            context[name] = labels.get(name, name) if value is not None else None
        else:
            context[name] = None if value is None else str(value)
    context.update(
        criteria=[
            {"id": c.id, "text": c.text, "weight": c.weight, "dimension": c.dimension, "number": i} for i, c in enumerate(criteria, start=1)
        ],
        dimension=None if dimension is None else {"id": dimension.id, "name": dimension.title, "description": dimension.description or ""},
        verdict={"kind": rubric.verdict.kind, "min": rubric.verdict.min, "max": rubric.verdict.max},
        rubric={"id": rubric.rubric, "version": str(rubric.version), "description": rubric.description},
        sample_id=sample_id,
        images=[labels.get(slot.field, slot.field) for slot in rubric.images if fields.get(slot.field) is not None],
    )
    return context


def image_labels(rubric: Rubric) -> dict[str, str]:
    return {slot.field: slot.label or slot.field for slot in rubric.images}
