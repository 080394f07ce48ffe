"""The rubric DSL as pydantic models: what a rubric file may say, field by field.

Models are frozen and forbid unknown keys, so a typo in a rubric is an error with a
did-you-mean rather than a silently ignored setting. Checks that relate one field to another
(a criterion's dimension must be declared, an image slot must name an image input, ...) live in
`validation.cross_field_problems`, which returns field paths so the loader can point at the
exact line.
"""

from __future__ import annotations

import difflib
import math
import re
from collections.abc import Mapping
from enum import Enum
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator
from pydantic_core import PydanticCustomError

IDENTIFIER = r"^[A-Za-z][A-Za-z0-9_]*$"
CRITERION_ID = r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$"
RUBRIC_ID = r"^[A-Za-z0-9][A-Za-z0-9_.\-/@]*$"  # `@` names a variant: medgen@reference
PASS_CONDITION = re.compile(r"^\s*(<=|>=|<|>|==)\s*(-?\d+(\.\d+)?([eE]-?\d+)?)\s*$")


# Validators raise this error type with a `fix` in its context; the loader shows that fix.
RUBRIC_ERROR = "rubric_value"


def invalid(message: str, fix: str) -> PydanticCustomError:
    """A validation error whose message and fix the loader shows as they are."""
    return PydanticCustomError(RUBRIC_ERROR, "{message}", {"message": message, "fix": fix})


# The leaderboard's name for the score pooled over every dimension.
POOLED_DIMENSION = "overall"


def _listify_when(value: Any) -> Any:
    """`when: {category: VQA}` means `{category: [VQA]}`: one value or a list of them."""
    if isinstance(value, dict):
        return {k: v if isinstance(v, list) else [v] for k, v in value.items()}
    return value


# A condition on a sample's fields: the field must equal one of the listed values (dimensions
# and metrics that apply to some samples only, e.g. MedGEN's Coherence to MMGeneration).
When = Annotated[dict[str, list[str]] | None, BeforeValidator(_listify_when)]


def fields_match(when: Mapping[str, list[str]], fields: Mapping[str, Any]) -> bool:
    """Whether a sample's `fields` meet a `when` condition (a field the sample lacks reads "None")."""
    return all(str(fields.get(key)) in values for key, values in when.items())


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
    when: When = None
    # This dimension's own verdict kind and scoring method (a binary checklist next to 1-10
    # dimensions in one rubric); absent: the rubric's `verdict`, and the rubric's method when it
    # suits that verdict (see `Rubric.verdict_for` and `Rubric.method_for`).
    verdict: Annotated[VerdictSpec, BeforeValidator(_parse_verdict)] | None = None
    scoring: Literal["weighted_points", "mean_scale"] | None = None

    @property
    def title(self) -> str:
        return self.name or self.id.replace("_", " ").title()

    def applies_to(self, fields: dict[str, Any]) -> bool:
        return not self.when or fields_match(self.when, fields)


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


MAX_TAGS = 20
MAX_TAG_CHARS = 64
_TAG_FIX = f"write a list of short labels, e.g. `tags: [axis:accuracy, theme:emergency]` (at most {MAX_TAGS}, each 1-{MAX_TAG_CHARS} characters)"


def _tags(value: Any) -> Any:
    """`tags: accuracy` means `[accuracy]`; each tag is a short text (HealthBench-style axes or themes)."""
    if value is None:
        return []
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list):
        raise invalid(f"tags must be a list of texts, not {describe_value(value)}", _TAG_FIX)
    if len(value) > MAX_TAGS:
        raise invalid(f"{len(value)} tags; a criterion may have at most {MAX_TAGS}", _TAG_FIX)
    for tag in value:
        if not isinstance(tag, str) or isinstance(tag, bool):
            raise invalid(f"tag {describe_value(tag)} is not a text", "quote it: `tags: [\"2024\"]`" if not isinstance(tag, (dict, list)) else _TAG_FIX)
        if not tag.strip() or len(tag) > MAX_TAG_CHARS:
            raise invalid(f"tag {tag[:80]!r} must be 1 to {MAX_TAG_CHARS} characters", _TAG_FIX)
    if len(set(value)) != len(value):
        duplicate = next(t for t in value if value.count(t) > 1)
        raise invalid(f"tag {duplicate!r} is listed twice", "list each tag once")
    return [tag.strip() for tag in value]


class Criterion(StrictModel):
    """One thing the judge checks. `text` may use template variables (`{{ body_part }}`): the
    sample's inputs, `sample_id`, `rubric` and `verdict`, rendered per sample in the prompt
    sandbox; the rendered text is what the judge sees and what is stored."""

    id: Annotated[str, Field(pattern=CRITERION_ID)]
    dimension: str
    weight: Annotated[float, BeforeValidator(_strict_weight)] = 1.0
    text: Annotated[str, BeforeValidator(_criterion_text)]
    tags: Annotated[tuple[str, ...], BeforeValidator(_tags)] = ()

    @field_validator("text")
    @classmethod
    def _strip(cls, value: str) -> str:
        return value.strip()


class ScoringMethod(str, Enum):
    """How a sample's verdicts become its score (store/views.sql computes them).

    - weighted_points (binary verdicts): sum(w_i * met_i) / sum(w_i for w_i > 0), no clipping;
      negative weights subtract when the described problem is present.
    - mean_scale (scale verdicts): the weighted mean sum(w_i * score_i) / sum(w_i); with every
      weight 1 (the default) the plain mean. Weights must be positive.
    - pass_rate (scale verdicts): the sample passes when its pass criterion's score (or its
      weighted mean score) reaches `threshold`.
    """

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
    # Which samples the metric applies to. Without `when`: the samples that have the reference.
    # With it: the samples whose fields match (as a dimension's `when`), so a matching sample
    # with no reference still gets a value or a status -- MedGEN's official code scores every
    # VQA and MMGeneration answer, whether or not the reference answer is empty.
    when: When = None
    # Text metrics only. `error` (default): an empty or whitespace-only text, or a missing one,
    # has no value (status missing_output or error). `score_zero`: it is scored 0 and counted,
    # as bert_score itself scores an empty candidate or reference (reference-compatible).
    empty_text: Literal["error", "score_zero"] = "error"
    # Text metrics only. `as_is` (default): the texts as they are. `medgen_eval`: both texts as
    # MedGEN-Bench's official evaluation compares them (`metrics/medgen_text.py`: a
    # multiple-choice or blank-filling answer mapped to its option, by the sample's `paper_task`
    # and `choice`; whitespace collapsed).
    text_form: Literal["as_is", "medgen_eval"] = "as_is"

    def applies_to(self, fields: Mapping[str, Any]) -> bool:
        """Whether a sample with these fields is inside the metric (see `when`)."""
        if self.when is not None:
            return fields_match(self.when, fields)
        return fields.get(self.reference) not in (None, "")

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


class RequiredOutputs(StrictModel):
    """Which outputs a sample must have to be judged, for the samples whose fields match `when`
    (all samples without it). `outputs: []` judges a matching sample even with no output at all:
    MedGEN's official evaluation asks the judge about every VQA sample, empty answers included."""

    when: When = None
    outputs: list[str]

    def applies_to(self, fields: Mapping[str, Any]) -> bool:
        """Whether a sample with these fields is one this entry decides for."""
        return not self.when or fields_match(self.when, fields)


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
    # When a sample counts as a missing output, by its fields: the first entry that applies
    # decides; none (or no entries): a required output absent, or every output absent.
    required_outputs: list[RequiredOutputs] = Field(default_factory=list)
    images: list[ImageSlot] = Field(default_factory=list)
    verdict: Annotated[VerdictSpec, BeforeValidator(_parse_verdict)] = VerdictSpec(kind="binary")
    # The judge part: dimensions, prompt and scoring, all or none. A rubric without them is
    # metrics-only (it must then list `metrics:`) and `score` runs no judge for it.
    dimensions: list[Annotated[Dimension, BeforeValidator(_parse_dimension)]] = Field(default_factory=list, min_length=1)  # absent, or at least one
    criteria: list[Criterion] = Field(default_factory=list)
    system: str | None = None
    prompt: Annotated[str, Field(min_length=1)] | None = None
    scoring: Scoring | None = None
    metrics: list[MetricSpec] = Field(default_factory=list)
    cache: CacheConfig = CacheConfig()
    # A base for other rubrics (`extends`), validated as a fragment and never scored.
    abstract: bool = False

    @property
    def judged(self) -> bool:
        """Whether a judge scores this rubric (False: a metrics-only rubric)."""
        return bool(self.dimensions or self.criteria or self.prompt or self.scoring or self.system)

    def dimension(self, dimension_id: str) -> Dimension:
        return next(d for d in self.dimensions if d.id == dimension_id)

    def verdict_for(self, dimension: Dimension) -> VerdictSpec:
        """The verdict a dimension's criteria get: its own `verdict`, else the rubric's."""
        return dimension.verdict or self.verdict

    def method_for(self, dimension: Dimension) -> str:
        """How a dimension is scored: its own `scoring`, else the method of its verdict kind
        (weighted_points for binary, mean_scale for scale; a pass_rate rubric's dimensions are
        reported by their weighted mean, as before)."""
        if dimension.scoring:
            return dimension.scoring
        return "weighted_points" if self.verdict_for(dimension).kind == "binary" else "mean_scale"

    @property
    def mixed_verdicts(self) -> bool:
        """Whether the dimensions use more than one verdict kind."""
        return len({self.verdict_for(d).kind for d in self.dimensions}) > 1

    @property
    def image_inputs(self) -> list[str]:
        return [name for name, spec in self.inputs.items() if spec.kind is InputKind.image]


# Names a template may use besides the rubric's declared inputs.
TEMPLATE_GLOBALS = ("criteria", "dimension", "verdict", "rubric", "sample_id", "images")
