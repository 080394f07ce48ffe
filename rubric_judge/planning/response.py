"""Pydantic response models: the contract between rubric-judge and the judge model.

A judge call's answer is a JSON object with one required property per criterion id. Each holds a
short `reasoning` written before the verdict (so the judge analyses before it judges) and then
the verdict: `satisfied` (+ `confidence`) for binary rubrics, `score` within the scale for scale
rubrics. A criterion left out of the answer fails validation: it is never read as "not met".
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, create_model

from rubric_judge.rubrics.schema import VerdictSpec

REASONING = "Brief analysis of the output against this criterion, written before the verdict."


class BinaryAnswer(BaseModel):
    model_config = ConfigDict(frozen=True)

    reasoning: str = Field(description=REASONING)
    satisfied: bool = Field(
        description="true when the criterion holds for the output; for a criterion that describes something that must not appear, true when it IS present"
    )
    confidence: float = Field(ge=0, le=1, description="confidence in the verdict, from 0 to 1")


@lru_cache(maxsize=64)
def scale_answer(minimum: int, maximum: int) -> type[BaseModel]:
    return create_model(
        f"ScaleAnswer_{minimum}_{maximum}".replace("-", "m"),
        __config__=ConfigDict(frozen=True),
        reasoning=(str, Field(description=REASONING)),
        score=(int, Field(ge=minimum, le=maximum, description=f"integer score from {minimum} (worst) to {maximum} (best)")),
    )


def answer_model(verdict: VerdictSpec) -> type[BaseModel]:
    return BinaryAnswer if verdict.kind == "binary" else scale_answer(verdict.min, verdict.max)


VERDICTS_DOC = "Verdicts for every criterion in this request; each property is one criterion id."
VERDICTS_CONFIG = ConfigDict(frozen=True, populate_by_name=True, extra="ignore")


class VerdictsSchema(BaseModel):
    __doc__ = VERDICTS_DOC
    model_config = VERDICTS_CONFIG


@lru_cache(maxsize=1)
def _instructor_base() -> type[BaseModel]:
    """The base of the models instructor is given, built on first use: instructor imports the
    OpenAI SDK's types (seconds), which planning and a fully cached re-run never need."""
    from instructor import OpenAISchema

    class JudgeVerdicts(OpenAISchema):
        # Subclassing instructor's schema base means instructor uses these classes as they are;
        # otherwise it wraps (and re-derives the JSON schema of) the model on every single call.
        __doc__ = VERDICTS_DOC
        model_config = VERDICTS_CONFIG

    return JudgeVerdicts


def prepare_response_models() -> None:
    """Import what validating answers needs (instructor's base, the OpenAI SDK's chat types)
    now, once, rather than inside the first judge call."""
    _instructor_base()
    import openai.types.chat  # noqa: F401  # instructor parses answers into these


def _fields(criteria: tuple[tuple[str, str], ...], verdict: VerdictSpec) -> dict[str, Any]:
    answer = answer_model(verdict)
    return {f"criterion_{index}": (answer, Field(alias=criterion_id, description=text)) for index, (criterion_id, text) in enumerate(criteria)}


@lru_cache(maxsize=16384)
def response_model(criteria: tuple[tuple[str, str], ...], verdict: VerdictSpec) -> type[BaseModel]:
    """The model instructor validates one call's answer with, over `criteria` ((id, text) pairs, in prompt order)."""
    return create_model("JudgeVerdicts", __base__=_instructor_base(), __doc__=VERDICTS_DOC, **_fields(criteria, verdict))


@lru_cache(maxsize=4096)
def validation_model(criterion_ids: tuple[str, ...], verdict: VerdictSpec) -> type[BaseModel]:
    """The model the direct transport (judge/structured.py) validates one call's answer with:
    `response_model`'s fields, aliases and name without the criterion texts, which only
    describe the schema. Keyed by the ids alone, so the calls of a benchmark's task rubrics
    (ids such as `scientific_accuracy-1` in every task) share a few models instead of building
    one per call (a pydantic model costs milliseconds)."""
    answer = answer_model(verdict)
    fields = {f"criterion_{index}": (answer, Field(alias=criterion_id)) for index, criterion_id in enumerate(criterion_ids)}
    return create_model("JudgeVerdicts", __base__=VerdictsSchema, __doc__=VERDICTS_DOC, **fields)


@lru_cache(maxsize=64)
def _answer_definition(verdict: VerdictSpec) -> tuple[str, dict[str, Any]]:
    """The name and JSON schema of one criterion's answer model, as pydantic writes it."""
    model = answer_model(verdict)
    return model.__name__, model.model_json_schema()


@lru_cache(maxsize=16384)
def response_schema(criteria: tuple[tuple[str, str], ...], verdict: VerdictSpec) -> dict[str, Any]:
    """The JSON schema of `response_model` (part of the cache key), built without instructor.

    Written out directly rather than by pydantic (`response_model(...).model_json_schema`): every
    call of a per-task rubric has criteria of its own, so pydantic would build a model and walk
    its schema for each call (about 10 ms: 9 s of planning for IlluGenBench's 888 calls), while
    the schema is the same answer definition referenced once per criterion. tests/test_plan.py
    checks it equals the schema of instructor's model, key order included (the cache key is
    its JSON). Shared: do not modify it.
    """
    name, definition = _answer_definition(verdict)
    reference = f"#/$defs/{name}"
    return {
        "$defs": {name: definition},
        "description": VERDICTS_DOC,
        "properties": {criterion_id: {"$ref": reference, "description": text} for criterion_id, text in criteria},
        "required": [criterion_id for criterion_id, _ in criteria],
        "title": "JudgeVerdicts",
        "type": "object",
    }


def verdicts_by_id(answer: BaseModel) -> dict[str, BaseModel]:
    """Criterion id -> its answer object, from a validated response."""
    return {info.alias or name: getattr(answer, name) for name, info in type(answer).model_fields.items()}
