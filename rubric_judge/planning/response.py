"""Pydantic response models: the contract between rubric-judge and the judge model.

A judge call's answer is a JSON object with one required property per criterion id. Each holds a
short `reasoning` written before the verdict (so the judge analyses before it judges) and then
the verdict: `satisfied` (+ `confidence`) for binary rubrics, `score` within the scale for scale
rubrics. A criterion left out of the answer fails validation: it is never read as "not met".
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from instructor import OpenAISchema
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


class JudgeVerdicts(OpenAISchema):
    """Verdicts for every criterion in this request; each property is one criterion id."""

    # Subclassing instructor's schema base means instructor uses these classes as they are;
    # otherwise it wraps (and re-derives the JSON schema of) the model on every single call.
    model_config = ConfigDict(frozen=True, populate_by_name=True, extra="ignore")


@lru_cache(maxsize=16384)
def response_model(criteria: tuple[tuple[str, str], ...], verdict: VerdictSpec) -> type[BaseModel]:
    """The model for one call over `criteria` ((id, text) pairs, in prompt order)."""
    answer = answer_model(verdict)
    fields: dict[str, Any] = {
        f"criterion_{index}": (answer, Field(alias=criterion_id, description=text)) for index, (criterion_id, text) in enumerate(criteria)
    }
    return create_model("JudgeVerdicts", __base__=JudgeVerdicts, __doc__=JudgeVerdicts.__doc__, **fields)


@lru_cache(maxsize=16384)
def response_schema(criteria: tuple[tuple[str, str], ...], verdict: VerdictSpec) -> dict[str, Any]:
    return response_model(criteria, verdict).model_json_schema(by_alias=True)


def verdicts_by_id(answer: BaseModel) -> dict[str, BaseModel]:
    """Criterion id -> its answer object, from a validated response."""
    return {info.alias or name: getattr(answer, name) for name, info in type(answer).model_fields.items()}
