"""Estimate tokens and cost of judge calls before running them, offline.

Text tokens come from litellm's tokenizer for the judge model; image tokens from OpenAI's
published high-detail formula (85 + 170 per 512-pixel tile after scaling), which other
providers approximate; completion tokens from a fixed allowance per criterion. Prices come from
litellm's bundled price map; a model it does not know has an unknown cost, never a zero one.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from functools import lru_cache

from rubric_judge.llm import litellm_module
from rubric_judge.planning.compile import JudgeCall, TextPart
from rubric_judge.planning.response import response_schema

COMPLETION_TOKENS_PER_CRITERION = 80  # a two-sentence reasoning plus the verdict fields
COMPLETION_TOKENS_PER_CALL = 20


@dataclass(frozen=True)
class Estimate:
    calls: int
    criteria: int
    images: int
    prompt_tokens: int
    completion_tokens: int
    cost_usd: float | None  # None: the model has no price in litellm's map

    def __add__(self, other: Estimate) -> Estimate:
        cost = None if self.cost_usd is None or other.cost_usd is None else self.cost_usd + other.cost_usd
        return Estimate(
            self.calls + other.calls,
            self.criteria + other.criteria,
            self.images + other.images,
            self.prompt_tokens + other.prompt_tokens,
            self.completion_tokens + other.completion_tokens,
            cost,
        )


def image_tokens(width: int, height: int) -> int:
    scale = min(1.0, 2048 / max(width, height))
    width, height = width * scale, height * scale
    scale = min(1.0, 768 / min(width, height))
    width, height = width * scale, height * scale
    return 85 + 170 * math.ceil(width / 512) * math.ceil(height / 512)


def estimate_calls(calls: list[JudgeCall], model: str) -> Estimate:
    litellm = litellm_module()
    prompt = completion = images = criteria = 0
    schema_tokens: dict[tuple, int] = {}
    for call in calls:
        text = "\n".join([call.system or ""] + [p.text for p in call.parts if isinstance(p, TextPart)])
        prompt += litellm.token_counter(model=model, text=text)
        key = (call.criterion_texts, call.verdict)
        if key not in schema_tokens:
            schema = json.dumps(response_schema(call.criterion_texts, call.verdict))
            schema_tokens[key] = litellm.token_counter(model=model, text=schema)
        prompt += schema_tokens[key]
        for image in call.images:
            images += 1
            prompt += image_tokens(image.info.width, image.info.height)
        criteria += len(call.criteria)
        completion += COMPLETION_TOKENS_PER_CALL + COMPLETION_TOKENS_PER_CRITERION * len(call.criteria)
    return Estimate(len(calls), criteria, images, prompt, completion, price(model, prompt, completion))


def price(model: str, prompt_tokens: int, completion_tokens: int) -> float | None:
    rates = _rates(model)
    if rates is None:
        return None
    return prompt_tokens * rates[0] + completion_tokens * rates[1]


@lru_cache(maxsize=256)
def _rates(model: str) -> tuple[float, float] | None:
    """USD per prompt and per completion token, read from litellm's map once per model: asking
    litellm on every call cost ~1 ms of CPU each (more for unmapped local models)."""
    litellm = litellm_module()
    probe = 1000  # below every tiered-pricing threshold, so this is the base rate
    try:
        prompt_cost, _ = litellm.cost_per_token(model=model, prompt_tokens=probe, completion_tokens=0)
        _, completion_cost = litellm.cost_per_token(model=model, prompt_tokens=0, completion_tokens=probe)
    except Exception:  # litellm raises several types for an unmapped model
        return None
    return prompt_cost / probe, completion_cost / probe
