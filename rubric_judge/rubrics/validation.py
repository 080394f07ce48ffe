"""Cross-field checks of a rubric: the rules that relate one field to another.

A criterion's dimension must be declared, an image slot must name an image input, a metric
must compare inputs of its kind, a scoring method must suit the verdict, ids must be unique
and input names must not shadow template globals. `cross_field_problems` returns each finding
as (field path, message, fix), so the loader can place it at its line in the file (see
`diagnostics.located_problems`). `partial_rubric` salvages what validates of a rubric that
failed pydantic validation, so these checks still run and one pass reports every problem.
The models themselves, and the checks on a single field, live in `schema`.
"""

from __future__ import annotations

import difflib
import re
from typing import Annotated, Any, get_args

from pydantic import TypeAdapter, ValidationError

from rubric_judge.rubrics.schema import (
    IDENTIFIER,
    IMAGE_METRICS,
    POOLED_DIMENSION,
    TEMPLATE_GLOBALS,
    Criterion,
    Dimension,
    InputKind,
    InputSpec,
    Rubric,
    ScoringMethod,
    StrictModel,
    VerdictSpec,
)

Problems = list[tuple[tuple[str | int, ...], str, str]]


def cross_field_problems(rubric: Rubric, unusable: frozenset[str] = frozenset(), fragment: bool = False) -> Problems:
    """Checks that relate fields to each other, as (field path, message, fix).

    `rubric` may be partial (see `partial_rubric`): fields named in `unusable` are missing or
    invalid and are not looked at; list entries that failed validation are None or, for
    criteria and dimensions, carry only their fields that are valid; inputs whose spec failed
    are present with a None spec. A check that needs a whole collection (every dimension id,
    every criterion id) is skipped when one is unknown, so a broken entry never also shows up
    as a chain of "unknown ..." problems elsewhere. A `fragment` (an abstract base) need not
    have a whole judge part.
    """
    out: Problems = [] if fragment else _judge_part_problems(rubric, unusable)

    inputs: dict[str, InputSpec | None] = dict(rubric.inputs) if "inputs" not in unusable else {}
    has_inputs = "inputs" not in unusable
    image_inputs = [name for name, spec in inputs.items() if spec is not None and spec.kind is InputKind.image]

    for name in inputs:
        if not re.match(IDENTIFIER, name):
            out.append(
                (
                    ("inputs", name),
                    f"input name {name!r} is not a plain identifier",
                    f"use letters, digits and underscores, starting with a letter, e.g. `{_identifier(name)}`",
                )
            )
        elif name in TEMPLATE_GLOBALS:
            out.append(
                (
                    ("inputs", name),
                    f"input name {name!r} is reserved for templates",
                    f"rename it, e.g. `{name}_text`; reserved: {', '.join(TEMPLATE_GLOBALS)}",
                )
            )

    # Entries salvaged from a failed validation may lack fields: read them with getattr.
    dimensions = rubric.dimensions if "dimensions" not in unusable else []
    dimension_ids = [getattr(d, "id", None) for d in dimensions]
    all_dimensions_known = "dimensions" not in unusable and None not in dimension_ids
    for i, dim in enumerate(dimensions):
        if dimension_ids[i] is not None and dimension_ids.index(dimension_ids[i]) != i:
            out.append(
                (("dimensions", i, "id"), f"dimension {dimension_ids[i]!r} is declared twice", "remove the duplicate or give it another id")
            )
        if dimension_ids[i] == POOLED_DIMENSION:
            out.append(
                (("dimensions", i, "id"), f"dimension id {POOLED_DIMENSION!r} is reserved for the score pooled over all dimensions", "rename it, e.g. `overall_quality`")
            )
        for field in getattr(dim, "when", None) or {}:
            if has_inputs and field not in inputs:
                out.append(
                    (
                        ("dimensions", i, "when", field),
                        f"`when` uses {field!r}, which is not a declared input",
                        _did_you_mean(field, list(inputs), "inputs", f"or declare it under `inputs:` (e.g. `{field}: text`)"),
                    )
                )
    rubric_verdict = rubric.verdict if "verdict" not in unusable else None
    for i, dim in enumerate(dimensions):
        out += _dimension_verdict_problems(i, dim, rubric_verdict)
    declared = [d for d in dimension_ids if d is not None]
    dimension_by_id = {getattr(d, "id", None): d for d in dimensions if getattr(d, "id", None) is not None}

    criteria = rubric.criteria if "criteria" not in unusable else []
    criterion_ids = [getattr(c, "id", None) for c in criteria]
    all_criteria_known = "criteria" not in unusable and None not in criterion_ids
    seen: dict[str, int] = {}
    for i, crit in enumerate(criteria):
        crit_id, crit_dimension = criterion_ids[i], getattr(crit, "dimension", None)
        if crit_id is not None and crit_id in seen:
            out.append(
                (
                    ("criteria", i, "id"),
                    f"criterion id {crit_id!r} is already used by criteria[{seen[crit_id]}]",
                    f"give every criterion a unique id, e.g. `{_free_id(crit_id, [c for c in criterion_ids if c])}`",
                )
            )
        if crit_id is not None:
            seen.setdefault(crit_id, i)
        crit_weight = getattr(crit, "weight", None)
        if rubric_verdict is not None and crit_dimension in dimension_by_id and crit_weight is not None and crit_weight <= 0:
            dim = dimension_by_id[crit_dimension]
            # Only where a weighted mean is what the rubric asks for: a rubric-level
            # weighted_points over scale verdicts is reported once, as that mistake.
            asked = getattr(dim, "scoring", None) or getattr(dim, "verdict", None) or (
                rubric.scoring is not None and "scoring" not in unusable and rubric.scoring.method is not ScoringMethod.weighted_points)
            if asked and _method_for(rubric, dim) == "mean_scale":
                out.append(
                    (
                        ("criteria", i, "weight"),
                        f"weight {crit_weight:g} in a mean_scale dimension: scores are averaged as sum(w*score)/sum(w), so weights must be positive",
                        "use a positive weight (e.g. `weight: 2` counts this score twice); for something the output must not show, "
                        "write the criterion so that a high score means it is absent",
                    )
                )
        if all_dimensions_known and crit_dimension is not None and crit_dimension not in declared:
            out.append(
                (
                    ("criteria", i, "dimension"),
                    f"unknown dimension {crit_dimension!r}",
                    _did_you_mean(crit_dimension, declared, "declared dimensions", "or add it under `dimensions:`"),
                )
            )

    if has_inputs and "outputs" not in unusable:
        for i, name in enumerate(rubric.outputs):
            if name not in inputs:
                out.append(
                    (
                        ("outputs", i),
                        f"output {name!r} is not a declared input",
                        _did_you_mean(name, list(inputs), "inputs", "or declare it under `inputs:`"),
                    )
                )

    if has_inputs and "required_outputs" not in unusable and "outputs" not in unusable:
        for i, rule in enumerate(rubric.required_outputs):
            if rule is None:
                continue
            for j, name in enumerate(rule.outputs):
                if name not in rubric.outputs:
                    out.append(
                        (
                            ("required_outputs", i, "outputs", j),
                            f"{name!r} is not one of the rubric's outputs",
                            _did_you_mean(name, list(rubric.outputs), "outputs", "or list it under `outputs:`"),
                        )
                    )
            out += _when_problems(("required_outputs", i), rule.when, inputs)

    if has_inputs and "images" not in unusable:
        for i, slot in enumerate(rubric.images):
            if slot is None:
                continue
            if slot.field not in inputs:
                out.append(
                    (
                        ("images", i, "field"),
                        f"image slot uses {slot.field!r}, which is not a declared input",
                        _did_you_mean(slot.field, image_inputs, "image inputs", f"or declare `{slot.field}: image` under `inputs:`"),
                    )
                )
            elif inputs[slot.field] is not None and inputs[slot.field].kind is not InputKind.image:
                out.append(
                    (
                        ("images", i, "field"),
                        f"{slot.field!r} is declared as {inputs[slot.field].kind.value}, not image",
                        _did_you_mean(slot.field, image_inputs, "image inputs", f"or declare `{slot.field}: image` under `inputs:`"),
                    )
                )
            if slot.strip and not slot.label:
                out.append(
                    (
                        ("images", i, "strip"),
                        "a label strip needs a `label`",
                        'add `label: "..."` (the text drawn under the image) or set `strip: false`',
                    )
                )

    verdict = rubric_verdict
    if verdict is not None and dimensions and all_dimensions_known and not fragment:
        kinds = {(getattr(d, "verdict", None) or verdict).kind for d in dimensions}
        if verdict.kind not in kinds:
            out.append(
                (
                    ("verdict",),
                    f"no dimension uses the rubric-level verdict ({verdict.kind}), so the overall score would pool no criteria",
                    "set the rubric-level `verdict:` (and `scoring:`) to the kind most dimensions use: it is the default for "
                    "dimensions and the overall score pools the criteria of that kind",
                )
            )
    if verdict is not None and verdict.kind == "scale" and verdict.min >= verdict.max:
        out.append(
            (
                ("verdict",),
                f"scale minimum {verdict.min} is not below maximum {verdict.max}",
                f"write the smaller bound first: `verdict: scale({min(verdict.min, verdict.max)}..{max(verdict.min, verdict.max) if verdict.min != verdict.max else verdict.min + 9})`",
            )
        )
    scoring = rubric.scoring if "scoring" not in unusable else None
    if scoring is not None:
        method = scoring.method
        if verdict is not None and method is ScoringMethod.weighted_points and verdict.kind != "binary":
            out.append(
                (
                    ("scoring", "method"),
                    "weighted_points needs binary verdicts",
                    "use `verdict: binary`, or `method: mean_scale` / `pass_rate` for a scale",
                )
            )
        if verdict is not None and method is ScoringMethod.mean_scale and verdict.kind != "scale":
            out.append(
                (
                    ("scoring", "method"),
                    "mean_scale needs scale verdicts",
                    "use `verdict: scale(1..10)`, or `method: weighted_points` for binary verdicts",
                )
            )
        if method is ScoringMethod.pass_rate:
            if scoring.threshold is None:
                out.append(
                    (
                        ("scoring",),
                        "pass_rate needs a `threshold`",
                        "add `threshold: 8` under `scoring:` (the score a sample must reach to pass)",
                    )
                )
            if scoring.criterion is not None and all_criteria_known and scoring.criterion not in seen:
                out.append(
                    (
                        ("scoring", "criterion"),
                        f"unknown criterion {scoring.criterion!r}",
                        _did_you_mean(scoring.criterion, list(seen), "criteria"),
                    )
                )
            elif scoring.criterion is not None and scoring.criterion in seen and verdict is not None:
                pass_dimension = dimension_by_id.get(getattr(criteria[seen[scoring.criterion]], "dimension", None))
                own = getattr(pass_dimension, "verdict", None)
                if own is not None and own.kind != "scale":
                    out.append(
                        (
                            ("scoring", "criterion"),
                            f"criterion {scoring.criterion!r} is in the {own.kind} dimension {pass_dimension.id!r}; pass_rate thresholds a scale score",
                            "name a criterion of a scale dimension, or leave `criterion` out to threshold the weighted mean",
                        )
                    )

    metrics = rubric.metrics if "metrics" not in unusable else []
    for i, metric in enumerate(metrics):
        if metric is None or not has_inputs:
            continue
        wanted = InputKind.image if metric.metric in IMAGE_METRICS else InputKind.text
        of_kind = [name for name, spec in inputs.items() if spec is not None and spec.kind is wanted]
        if metric.empty_text != "error" and wanted is InputKind.image:
            out.append(
                (
                    ("metrics", i, "empty_text"),
                    f"`empty_text` applies to text metrics, not to {metric.metric.value}",
                    "remove `empty_text` here (a missing image follows `scoring.missing_output`; an unreadable one is never counted)",
                )
            )
        if metric.text_form != "as_is" and wanted is InputKind.image:
            out.append(
                (
                    ("metrics", i, "text_form"),
                    f"`text_form` applies to text metrics, not to {metric.metric.value}",
                    "remove `text_form` here",
                )
            )
        out += _when_problems(("metrics", i), metric.when, inputs)
        for role in ("output", "reference"):
            field = getattr(metric, role)
            if field not in inputs:
                out.append(
                    (
                        ("metrics", i, role),
                        f"{field!r} is not a declared input",
                        _did_you_mean(field, of_kind, f"{wanted.value} inputs", f"or declare it under `inputs:` as {wanted.value}"),
                    )
                )
            elif inputs[field] is not None and inputs[field].kind is not wanted:
                out.append(
                    (
                        ("metrics", i, role),
                        f"{metric.metric.value} compares {wanted.value}s but {field!r} is {inputs[field].kind.value}",
                        _did_you_mean(field, of_kind, f"{wanted.value} inputs", f"point `{role}` at {_a(wanted.value)} input"),
                    )
                )
    return out


def _when_problems(at: tuple, when: dict[str, list[str]] | None, inputs: dict[str, InputSpec | None]) -> Problems:
    """A `when` (of a metric or a `required_outputs` entry) that names an undeclared field."""
    return [((*at, "when", key), f"`when` names {key!r}, which is not a declared input",
             _did_you_mean(key, list(inputs), "inputs", "or declare it under `inputs:`")) for key in when or {} if key not in inputs]


def _method_for(rubric: Rubric, dim: Dimension) -> str:
    """`Rubric.method_for` for a possibly partial dimension."""
    own = getattr(dim, "scoring", None)
    if own:
        return own
    verdict = getattr(dim, "verdict", None) or rubric.verdict
    return "weighted_points" if verdict.kind == "binary" else "mean_scale"


def _dimension_verdict_problems(index: int, dim: Dimension | None, rubric_verdict: VerdictSpec | None) -> Problems:
    """A dimension's own `verdict` and `scoring` must fit each other (its verdict by default
    the rubric's)."""
    own = getattr(dim, "verdict", None)
    verdict, method = own or rubric_verdict, getattr(dim, "scoring", None)
    out: Problems = []
    if own is not None and own.kind == "scale" and own.min >= own.max:
        out.append(
            (
                ("dimensions", index, "verdict"),
                f"scale minimum {verdict.min} is not below maximum {verdict.max}",
                f"write the smaller bound first: `verdict: scale({min(verdict.min, verdict.max)}..{max(verdict.min, verdict.max) if verdict.min != verdict.max else verdict.min + 9})`",
            )
        )
    # A salvaged dimension lacks the attribute when its `verdict` is broken (or absent): its
    # method cannot be checked against a verdict that is unknown.
    if method is not None and verdict is not None and hasattr(dim, "verdict"):
        if method == "weighted_points" and verdict.kind != "binary":
            out.append((("dimensions", index, "scoring"), "weighted_points needs binary verdicts",
                        "use `scoring: mean_scale` for a scale dimension, or `verdict: binary`"))
        if method == "mean_scale" and verdict.kind != "scale":
            out.append((("dimensions", index, "scoring"), "mean_scale needs scale verdicts",
                        "use `scoring: weighted_points` for a binary dimension, or `verdict: scale(1..10)`"))
    return out


# Fixes for a judge part that is only partly there.
_JUDGE_PART_FIX = {
    "dimensions": "add `dimensions:` with at least one entry, e.g. `- id: accuracy`",
    "prompt": "add `prompt: |` with the judge's instructions (a Jinja2 template) on the indented lines below",
    "scoring": "add `scoring:` with `method: weighted_points` (binary verdicts) or `method: mean_scale` / `pass_rate` (scale verdicts)",
}


def _judge_part_problems(rubric: Rubric, unusable: frozenset[str]) -> Problems:
    """A rubric is judged (dimensions, prompt and scoring all given) or metrics-only (none of
    them, and at least one metric): a judge part left half-written is an error, not a silent
    metrics-only rubric."""
    present = {name for name in ("dimensions", "prompt", "scoring") if name in unusable or getattr(rubric, name, None)}
    judged = bool(present) or bool(rubric.criteria) or bool(rubric.system) or "criteria" in unusable
    if not judged:
        if not rubric.metrics and "metrics" not in unusable:
            return [((), "the rubric has neither a judge part (dimensions, prompt, scoring) nor metrics",
                     "add `metrics:` for a metrics-only rubric, or `dimensions:`, `prompt:` and `scoring:` for a judge")]
        return []
    return [((name,), "a rubric needs at least one dimension" if name == "dimensions" else "required field is missing", _JUDGE_PART_FIX[name])
            for name in ("dimensions", "prompt", "scoring") if name not in present]


def partial_rubric(data: dict[str, Any]) -> tuple[Rubric, frozenset[str]]:
    """What of `data` validates, for cross-field checks after the whole rubric did not.

    Each top-level field is validated on its own; list entries (criteria, dimensions, images,
    metrics) and input specs one by one, so a bad entry becomes None and the others keep their
    indices. Returns a Rubric built without validation from what passed, and the names of the
    fields that are missing or invalid (see `cross_field_problems`).
    """
    values: dict[str, Any] = {}
    unusable: set[str] = set()
    fields = {info.alias or name for name, info in Rubric.model_fields.items()}
    unknown = [key for key in data if key not in fields]
    for name, info in Rubric.model_fields.items():
        key = info.alias or name
        whole = _field_adapter(info)
        if key not in data:
            # Required, or misspelt (`prompts:`): the unknown-key problem already says "did you
            # mean `prompt`?", so the field counts as given but unusable, not missing twice.
            if info.is_required() or difflib.get_close_matches(key, unknown, n=1, cutoff=0.8):
                unusable.add(name)
            continue
        raw = data[key]
        try:
            values[name] = whole.validate_python(raw)
            continue
        except ValidationError:
            pass
        if name in _ENTRYWISE and isinstance(raw, list) and raw:
            item = TypeAdapter(get_args(info.annotation)[0])
            model = {"criteria": Criterion, "dimensions": Dimension}.get(name)
            values[name] = [_validated(item, entry, model) for entry in raw]
        elif name == "inputs" and isinstance(raw, dict) and raw:
            item = TypeAdapter(get_args(info.annotation)[1])
            values[name] = {str(key): _validated(item, spec) for key, spec in raw.items()}
        else:
            unusable.add(name)
    return Rubric.model_construct(**values), frozenset(unusable)


_ENTRYWISE = ("criteria", "dimensions", "images", "metrics")


def _validated(adapter: TypeAdapter, value: Any, salvage: type[StrictModel] | None = None) -> Any:
    """The validated value; else, for a `salvage` model, an instance carrying only the fields
    that are valid on their own (built without checks); else None."""
    try:
        return adapter.validate_python(value)
    except ValidationError:
        pass
    if salvage is Dimension and isinstance(value, str):
        value = {"id": value}
    if salvage is None or not isinstance(value, dict):
        return None
    fields = {}
    for name, info in salvage.model_fields.items():
        key = info.alias or name
        if key in value:
            try:
                fields[name] = _field_adapter(info).validate_python(value[key])
            except ValidationError:
                continue
    instance = salvage.model_construct(**fields)
    for name in set(salvage.model_fields) - set(fields):
        instance.__dict__.pop(name, None)  # a default would hide that the field is broken
    return instance


def _field_adapter(info: Any) -> TypeAdapter:
    return TypeAdapter(Annotated[(info.annotation, *info.metadata)]) if info.metadata else TypeAdapter(info.annotation)


def _did_you_mean(value: str, choices: list[str], what: str, otherwise: str = "") -> str:
    close = difflib.get_close_matches(value, choices, n=1)
    listing = ", ".join(choices)
    if close:
        return f"did you mean {close[0]!r}? {what}: {listing}"
    if choices:
        return f"use one of the {what}: {listing}" + (f"; {otherwise}" if otherwise else "")
    return otherwise.removeprefix("or ") or f"there are no {what} yet; declare one first"


def _free_id(taken_id: str, ids: list[str]) -> str:
    match = re.match(r"^(.*?)(\d+)$", taken_id)
    stem, number = (match.group(1), int(match.group(2))) if match else (taken_id + "-", 1)
    while f"{stem}{number}" in ids:
        number += 1
    return f"{stem}{number}"


def _identifier(name: str) -> str:
    cleaned = re.sub(r"\W+", "_", name).strip("_") or "name"
    return cleaned if cleaned[0].isalpha() else f"x_{cleaned}"


def _a(word: str) -> str:
    return f"an {word}" if word[:1] in "aeiou" else f"a {word}"
