"""The rubric DSL as pydantic models: what a rubric file may say, and the checks across fields.

Models are frozen and forbid unknown keys, so a typo in a rubric is an error with a
did-you-mean rather than a silently ignored setting. Checks that relate one field to another
(a criterion's dimension must be declared, an image slot must name an image input, ...) live in
`cross_field_problems`, which returns field paths so the loader can point at the exact line.
"""

from __future__ import annotations

import math
import re
from enum import Enum
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator

IDENTIFIER = r"^[A-Za-z][A-Za-z0-9_]*$"
CRITERION_ID = r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$"
PASS_CONDITION = re.compile(r"^\s*(<=|>=|<|>|==)\s*(-?\d+(\.\d+)?([eE]-?\d+)?)\s*$")


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


def _parse_input(value: Any) -> Any:
    if isinstance(value, str):
        text = value.strip()
        optional = text.endswith("?")
        return {"kind": text.rstrip("?").strip(), "optional": optional}
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
        raise ValueError("expected `binary` or `scale(MIN..MAX)`, for example `scale(1..10)`")
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


def _finite(value: float) -> float:
    if not math.isfinite(value):
        raise ValueError("must be a finite number")
    return value


class Criterion(StrictModel):
    id: Annotated[str, Field(pattern=CRITERION_ID)]
    dimension: str
    weight: Annotated[float, BeforeValidator(lambda v: _strict_number(v)), Field()] = 1.0
    text: Annotated[str, Field(min_length=1)]

    @field_validator("text")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("criterion text is blank")
        return value.strip()

    @field_validator("weight")
    @classmethod
    def _finite_weight(cls, value: float) -> float:
        return _finite(value)


def _strict_number(value: Any) -> Any:
    # YAML "5" (quoted) or "heavy" must not become a weight by accident.
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError("must be a number such as 5, 1 or -3")
    return value


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

    @field_validator("pass_condition")
    @classmethod
    def _condition(cls, value: str | None) -> str | None:
        if value is not None and not PASS_CONDITION.match(value):
            raise ValueError("expected a comparison such as '>= 0.7' or '<= 0.6'")
        return value


class CacheConfig(StrictModel):
    namespace: str | None = None


class Rubric(StrictModel):
    """A fully merged rubric (after `extends`)."""

    rubric: Annotated[str, Field(min_length=1, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.\-/]*$")]
    version: int | str = 1
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


def cross_field_problems(rubric: Rubric) -> list[tuple[tuple[str | int, ...], str, str]]:
    """Checks that relate fields to each other, as (field path, message, fix)."""
    out: list[tuple[tuple[str | int, ...], str, str]] = []
    for name in rubric.inputs:
        if not re.match(IDENTIFIER, name):
            out.append((("inputs", name), f"input name {name!r} is not a plain identifier", "use letters, digits and underscores, starting with a letter"))
        elif name in TEMPLATE_GLOBALS:
            out.append((("inputs", name), f"input name {name!r} is reserved for templates", f"rename it; reserved: {', '.join(TEMPLATE_GLOBALS)}"))
    dimension_ids = [d.id for d in rubric.dimensions]
    for i, dim in enumerate(rubric.dimensions):
        if dimension_ids.index(dim.id) != i:
            out.append((("dimensions", i), f"dimension {dim.id!r} is declared twice", "remove the duplicate"))
        for field in dim.when or {}:
            if field not in rubric.inputs:
                out.append((("dimensions", i, "when", field), f"`when` uses {field!r}, which is not a declared input", f"declare it under `inputs:` (e.g. `{field}: text`)"))
    seen: dict[str, int] = {}
    for i, crit in enumerate(rubric.criteria):
        if crit.id in seen:
            out.append((("criteria", i, "id"), f"criterion id {crit.id!r} is already used by criteria[{seen[crit.id]}]", "give every criterion a unique id"))
        seen.setdefault(crit.id, i)
        if crit.dimension not in dimension_ids:
            out.append((("criteria", i, "dimension"), f"unknown dimension {crit.dimension!r}", _did_you_mean(crit.dimension, dimension_ids, "declared dimensions")))
    for name in rubric.outputs:
        if name not in rubric.inputs:
            out.append((("outputs",), f"output {name!r} is not a declared input", f"declare it under `inputs:` or remove it from `outputs:`"))
    for i, slot in enumerate(rubric.images):
        spec = rubric.inputs.get(slot.field)
        if spec is None:
            out.append((("images", i, "field"), f"image slot uses {slot.field!r}, which is not a declared input", _did_you_mean(slot.field, rubric.image_inputs, "image inputs")))
        elif spec.kind is not InputKind.image:
            out.append((("images", i, "field"), f"{slot.field!r} is declared as {spec.kind.value}, not image", f"declare `{slot.field}: image`"))
        if slot.strip and not slot.label:
            out.append((("images", i, "strip"), "a label strip needs a `label`", "add `label: ...` or set `strip: false`"))
    verdict = rubric.verdict
    if verdict.kind == "scale" and verdict.min >= verdict.max:
        out.append((("verdict",), f"scale minimum {verdict.min} is not below maximum {verdict.max}", "write `scale(1..10)` with min < max"))
    method = rubric.scoring.method
    if method is ScoringMethod.weighted_points and verdict.kind != "binary":
        out.append((("scoring", "method"), "weighted_points needs binary verdicts", "use `verdict: binary`, or `method: mean_scale` / `pass_rate`"))
    if method is ScoringMethod.mean_scale and verdict.kind != "scale":
        out.append((("scoring", "method"), "mean_scale needs scale verdicts", "use `verdict: scale(1..10)` or `method: weighted_points`"))
    if method is ScoringMethod.pass_rate:
        if rubric.scoring.threshold is None:
            out.append((("scoring",), "pass_rate needs a `threshold`", "add `threshold: 8` (the score a sample must reach)"))
        if rubric.scoring.criterion is not None and rubric.scoring.criterion not in seen:
            out.append((("scoring", "criterion"), f"unknown criterion {rubric.scoring.criterion!r}", _did_you_mean(rubric.scoring.criterion, list(seen), "criteria")))
    for i, metric in enumerate(rubric.metrics):
        wanted = InputKind.image if metric.metric in IMAGE_METRICS else InputKind.text
        for role in ("output", "reference"):
            field = getattr(metric, role)
            spec = rubric.inputs.get(field)
            if spec is None:
                out.append((("metrics", i, role), f"{field!r} is not a declared input", f"declare it under `inputs:` as {wanted.value}"))
            elif spec.kind is not wanted:
                out.append((("metrics", i, role), f"{metric.metric.value} compares {wanted.value}s but {field!r} is {spec.kind.value}", f"point `{role}` at a {wanted.value} input"))
    return out


def _did_you_mean(value: str, choices: list[str], what: str) -> str:
    import difflib

    close = difflib.get_close_matches(value, choices, n=1)
    listing = ", ".join(choices) if choices else "(none)"
    return f"did you mean {close[0]!r}? {what}: {listing}" if close else f"use one of the {what}: {listing}"
