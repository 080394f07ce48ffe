"""The rubric DSL as pydantic models: what a rubric file may say, and the checks across fields.

Models are frozen and forbid unknown keys, so a typo in a rubric is an error with a
did-you-mean rather than a silently ignored setting. Checks that relate one field to another
(a criterion's dimension must be declared, an image slot must name an image input, ...) live in
`cross_field_problems`, which returns field paths so the loader can point at the exact line.
"""

from __future__ import annotations

import difflib
import math
import re
from enum import Enum
from typing import Annotated, Any, Literal, get_args

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, TypeAdapter, ValidationError, field_validator
from pydantic_core import PydanticCustomError

IDENTIFIER = r"^[A-Za-z][A-Za-z0-9_]*$"
CRITERION_ID = r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$"
RUBRIC_ID = r"^[A-Za-z0-9][A-Za-z0-9_.\-/]*$"
PASS_CONDITION = re.compile(r"^\s*(<=|>=|<|>|==)\s*(-?\d+(\.\d+)?([eE]-?\d+)?)\s*$")


# Validators raise this error type with a `fix` in its context; the loader shows that fix.
RUBRIC_ERROR = "rubric_value"


def invalid(message: str, fix: str) -> PydanticCustomError:
    """A validation error whose message and fix the loader shows as they are."""
    return PydanticCustomError(RUBRIC_ERROR, "{message}", {"message": message, "fix": fix})


# The leaderboard's name for the score pooled over every dimension.
POOLED_DIMENSION = "overall"


class StrictModel(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class Batching(str, Enum):
    """How criteria are grouped into judge calls."""

    per_criterion = "per_criterion"
    per_dimension = "per_dimension"
    per_sample = "per_sample"


class JudgeConfig(StrictModel):
    model: str = Field("openai/gpt-4.1", min_length=1, description="any litellm model string")
    temperature: float = Field(0.0, ge=0, le=2)
    max_tokens: int | None = Field(None, gt=0)
    mode: Batching = Batching.per_dimension
    # How instructor asks for structured output; `json` suits servers without tool calling.
    structured_output: Literal["tools", "json", "json_schema", "md_json"] = "tools"


class InputKind(str, Enum):
    text = "text"
    image = "image"


class InputSpec(StrictModel):
    kind: InputKind
    optional: bool = False


_INPUT_FIX = "write `text` or `image`, with a trailing `?` for an optional input: e.g. `prompt: text`, `reference_image: image?`"


def _parse_input(value: Any) -> Any:
    if isinstance(value, str):
        text = value.strip()
        optional = text.endswith("?")
        kind = text.rstrip("?").strip()
        if kind not in {k.value for k in InputKind}:
            close = difflib.get_close_matches(kind.lower(), [k.value for k in InputKind], n=1, cutoff=0.5)
            hint = f"did you mean `{close[0]}{'?' if optional else ''}`? " if close else ""
            raise invalid(f"{value!r} is not an input kind; expected `text` or `image` (`?` marks an optional input)", hint + _INPUT_FIX)
        return {"kind": kind, "optional": optional}
    if value is None:
        raise invalid("the input has no kind", _INPUT_FIX)
    return value


class ImageSlot(StrictModel):
    """One image as the judge sees it: which input, its grounding label, and whether the label
    is drawn in a strip under the image (MedGEN's "image grounding") or only written beside it."""

    field: str
    label: str | None = None
    strip: bool = False


class VerdictSpec(StrictModel):
    kind: Literal["binary", "scale"]
    min: int = 1
    max: int = 10


_SCALE_SHORTHAND = re.compile(r"^scale\(\s*(-?\d+)\s*\.\.\s*(-?\d+)\s*\)$")


def _parse_verdict(value: Any) -> Any:
    if isinstance(value, str):
        text = value.strip()
        if text == "binary":
            return {"kind": "binary"}
        match = _SCALE_SHORTHAND.match(text)
        if match:
            return {"kind": "scale", "min": int(match.group(1)), "max": int(match.group(2))}
        numbers = re.findall(r"(?:(?<=[(\s,])-)?\d+", text)
        if len(numbers) == 2:
            fix = f"write `verdict: scale({numbers[0]}..{numbers[1]})` (two dots between the bounds)"
        else:
            fix = "write `verdict: binary` (yes/no per criterion) or `verdict: scale(1..10)` (a score per criterion)"
        raise invalid(f"verdict {text!r} is not `binary` or `scale(MIN..MAX)`", fix)
    if isinstance(value, dict) and "kind" not in value and "scale" in value and isinstance(value["scale"], dict):
        return {"kind": "scale", **value["scale"]}
    return value


class Dimension(StrictModel):
    id: Annotated[str, Field(pattern=IDENTIFIER)]
    name: str | None = None
    description: str | None = None
    # The dimension applies only to samples whose field equals one of these values
    # (MedGEN's Coherence applies only to MMGeneration samples).
    when: dict[str, list[str]] | None = None

    @field_validator("when", mode="before")
    @classmethod
    def _listify(cls, value: Any) -> Any:
        if isinstance(value, dict):
            return {k: v if isinstance(v, list) else [v] for k, v in value.items()}
        return value

    @property
    def title(self) -> str:
        return self.name or self.id.replace("_", " ").title()

    def applies_to(self, fields: dict[str, Any]) -> bool:
        if not self.when:
            return True
        return all(str(fields.get(key)) in values for key, values in self.when.items())


def _parse_dimension(value: Any) -> Any:
    return {"id": value} if isinstance(value, str) else value


_WEIGHT_FIX = (
    "write a number: positive (e.g. `weight: 5`) for what the output should show, negative (e.g. `weight: -3`) for what it must not show"
)


def _strict_weight(value: Any) -> Any:
    # YAML "5" (quoted) or "heavy" must not become a weight by accident.
    if isinstance(value, str):
        try:
            number = float(value)
        except ValueError:
            raise invalid(f"weight must be a number, not the text {value!r}", _WEIGHT_FIX) from None
        shown = value.strip()
        raise invalid(
            f"weight {value!r} is quoted, so YAML reads it as text, not the number {number:g}", f"remove the quotes: `weight: {shown}`"
        )
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise invalid(f"weight must be a number, not {describe_value(value)}", _WEIGHT_FIX)
    if not math.isfinite(value):
        raise invalid(f"weight must be a finite number, not {value}", _WEIGHT_FIX)
    return value


def _criterion_text(value: Any) -> Any:
    example = 'write what the judge must check, e.g. `text: "The heart has four chambers."`'
    if value is None:
        raise invalid("criterion text is empty", example)
    if isinstance(value, str) and not value.strip():
        raise invalid("criterion text is blank", example)
    return value


def describe_value(value: Any) -> str:
    if value is None:
        return "an empty value"
    if isinstance(value, bool):
        return f"the boolean {str(value).lower()}"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    return repr(value)


class Criterion(StrictModel):
    id: Annotated[str, Field(pattern=CRITERION_ID)]
    dimension: str
    weight: Annotated[float, BeforeValidator(_strict_weight)] = 1.0
    text: Annotated[str, BeforeValidator(_criterion_text)]

    @field_validator("text")
    @classmethod
    def _strip(cls, value: str) -> str:
        return value.strip()


class ScoringMethod(str, Enum):
    weighted_points = "weighted_points"
    mean_scale = "mean_scale"
    pass_rate = "pass_rate"


class MissingOutputPolicy(str, Enum):
    fail = "fail"  # the sample counts; its positive criteria are unmet
    skip = "skip"  # reference-compatible: the sample is left out of the score


class Scoring(StrictModel):
    method: ScoringMethod
    threshold: float | None = None
    criterion: str | None = None  # pass_rate: the criterion whose score is thresholded
    missing_output: MissingOutputPolicy = MissingOutputPolicy.fail
    # A verdict the judge never validly gave: `exclude` leaves it out of the score and counts it
    # as unscored; `fail` counts it as not met, as the official IlluGenBench script does
    # (reference-compatible).
    unscored: Literal["exclude", "fail"] = "exclude"


class MetricName(str, Enum):
    ssim = "ssim"
    psnr = "psnr"
    lpips = "lpips"
    bertscore = "bertscore"


IMAGE_METRICS = {MetricName.ssim, MetricName.psnr, MetricName.lpips}


class MetricSpec(StrictModel):
    metric: MetricName
    output: str
    reference: str
    pass_condition: str | None = Field(None, alias="pass")
    model: str | None = None
    num_layers: int | None = Field(None, gt=0)
    preset: Literal["medgen", "standard"] | None = None

    @field_validator("pass_condition", mode="before")
    @classmethod
    def _condition(cls, value: Any) -> Any:
        if value is None:
            return value
        if isinstance(value, bool) or not isinstance(value, (str, int, float)) or not PASS_CONDITION.match(str(value)):
            number = re.search(r"-?\d+(\.\d+)?", str(value)) if isinstance(value, (str, int, float)) else None
            example = f'`pass: ">= {number.group(0)}"`' if number else '`pass: ">= 0.7"`'
            raise invalid(
                f"`pass` must be a comparison such as >= 0.7 or <= 0.6, not {describe_value(value)}",
                f"write an operator (<, <=, >, >=, ==) and a number, in quotes: {example}",
            )
        return str(value)


def _version(value: Any) -> Any:
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        shown = f"the date {value.isoformat()}" if hasattr(value, "isoformat") else describe_value(value)
        raise invalid(
            f"version must be a whole number or a short text, not {shown}", 'write e.g. `version: 2`, or quote it: `version: "2024-05-01"`'
        )
    return value


class CacheConfig(StrictModel):
    namespace: str | None = None


class Rubric(StrictModel):
    """A fully merged rubric (after `extends`)."""

    rubric: Annotated[str, Field(min_length=1, pattern=RUBRIC_ID)]
    version: Annotated[int | str, BeforeValidator(_version)] = 1
    description: str = ""
    task: str | None = None  # the sample id this (task) rubric judges; None = every sample
    judge: JudgeConfig = JudgeConfig()
    inputs: dict[str, Annotated[InputSpec, BeforeValidator(_parse_input)]]
    outputs: list[str] = Field(default_factory=list)
    images: list[ImageSlot] = Field(default_factory=list)
    verdict: Annotated[VerdictSpec, BeforeValidator(_parse_verdict)] = VerdictSpec(kind="binary")
    dimensions: list[Annotated[Dimension, BeforeValidator(_parse_dimension)]] = Field(min_length=1)
    criteria: list[Criterion] = Field(default_factory=list)
    system: str | None = None
    prompt: Annotated[str, Field(min_length=1)]
    scoring: Scoring
    metrics: list[MetricSpec] = Field(default_factory=list)
    cache: CacheConfig = CacheConfig()

    def dimension(self, dimension_id: str) -> Dimension:
        return next(d for d in self.dimensions if d.id == dimension_id)

    @property
    def text_inputs(self) -> list[str]:
        return [name for name, spec in self.inputs.items() if spec.kind is InputKind.text]

    @property
    def image_inputs(self) -> list[str]:
        return [name for name, spec in self.inputs.items() if spec.kind is InputKind.image]


# Names a template may use besides the rubric's declared inputs.
TEMPLATE_GLOBALS = ("criteria", "dimension", "verdict", "rubric", "sample_id", "images")


Problems = list[tuple[tuple[str | int, ...], str, str]]


def cross_field_problems(rubric: Rubric, unusable: frozenset[str] = frozenset()) -> Problems:
    """Checks that relate fields to each other, as (field path, message, fix).

    `rubric` may be partial (see `partial_rubric`): fields named in `unusable` are missing or
    invalid and are not looked at; list entries that failed validation are None or, for
    criteria and dimensions, carry only their fields that are valid; inputs whose spec failed
    are present with a None spec. A check that needs a whole collection (every dimension id,
    every criterion id) is skipped when one is unknown, so a broken entry never also shows up
    as a chain of "unknown ..." problems elsewhere.
    """
    out: Problems = []

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
    declared = [d for d in dimension_ids if d is not None]

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

    verdict = rubric.verdict if "verdict" not in unusable else None
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

    metrics = rubric.metrics if "metrics" not in unusable else []
    for i, metric in enumerate(metrics):
        if metric is None or not has_inputs:
            continue
        wanted = InputKind.image if metric.metric in IMAGE_METRICS else InputKind.text
        of_kind = [name for name, spec in inputs.items() if spec is not None and spec.kind is wanted]
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


def partial_rubric(data: dict[str, Any]) -> tuple[Rubric, frozenset[str]]:
    """What of `data` validates, for cross-field checks after the whole rubric did not.

    Each top-level field is validated on its own; list entries (criteria, dimensions, images,
    metrics) and input specs one by one, so a bad entry becomes None and the others keep their
    indices. Returns a Rubric built without validation from what passed, and the names of the
    fields that are missing or invalid (see `cross_field_problems`).
    """
    values: dict[str, Any] = {}
    unusable: set[str] = set()
    for name, info in Rubric.model_fields.items():
        key = info.alias or name
        whole = _field_adapter(info)
        if key not in data:
            if info.is_required():
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
