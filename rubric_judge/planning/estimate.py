"""Estimate tokens and cost of judge calls before running them, offline.

Text tokens come from litellm's tokenizer for the judge model; image tokens from OpenAI's
published high-detail formula (85 + 170 per 512-pixel tile after scaling), which other
providers approximate; completion tokens from a fixed allowance per criterion. Prices come from
litellm's bundled price map; a model it does not know has an unknown cost, never a zero one.
"""

from __future__ import annotations

import json
import math
import sys
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

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


# Prices set here (the offline judge's: free) win over litellm's map, whichever way it is read.
_REGISTERED: dict[str, tuple[float, float]] = {}


def register_price(model: str, prompt_usd_per_token: float, completion_usd_per_token: float) -> None:
    """Give `model` a price without importing litellm (the offline judge registers $0)."""
    _REGISTERED[model] = (prompt_usd_per_token, completion_usd_per_token)
    _rates.cache_clear()


def has_price(model: str) -> bool:
    """Whether `price` knows this model's rates (without importing litellm when it is not loaded)."""
    return _rates(model, "litellm" in sys.modules) is not None


def price(model: str, prompt_tokens: int, completion_tokens: int) -> float | None:
    """USD for these tokens at the model's base rates; None when its price is unknown.

    Read from litellm itself once litellm is loaded (so prices registered with litellm count),
    else from litellm's bundled price map file, which needs no litellm import (seconds) on the
    paths that never call litellm: the direct transport and a cached re-run.
    """
    rates = _rates(model, "litellm" in sys.modules)
    if rates is None:
        return None
    return prompt_tokens * rates[0] + completion_tokens * rates[1]


@lru_cache(maxsize=256)
def _rates(model: str, litellm_loaded: bool) -> tuple[float, float] | None:
    """USD per prompt and per completion token, looked up once per model: asking litellm on
    every call cost ~1 ms of CPU each (more for unmapped local models)."""
    if model in _REGISTERED:
        return _REGISTERED[model]
    if not litellm_loaded:
        return _bundled_rates(model)
    litellm = litellm_module()
    probe = 1000  # below every tiered-pricing threshold, so this is the base rate
    try:
        prompt_cost, _ = litellm.cost_per_token(model=model, prompt_tokens=probe, completion_tokens=0)
        _, completion_cost = litellm.cost_per_token(model=model, prompt_tokens=0, completion_tokens=probe)
    except Exception:  # litellm raises several types for an unmapped model
        return None
    return prompt_cost / probe, completion_cost / probe


@lru_cache(maxsize=1)
def _bundled_price_text() -> str:
    """litellm's bundled model price map (the file `litellm_module()` pins), as text; "" when
    litellm or the file is not there."""
    import importlib.util
    from pathlib import Path

    spec = importlib.util.find_spec("litellm")
    if spec is None or spec.origin is None:
        return ""
    try:
        return (Path(spec.origin).parent / "model_prices_and_context_window_backup.json").read_text(encoding="utf-8")
    except OSError:
        return ""


@lru_cache(maxsize=1)
def _bundled_price_map() -> dict[str, Any]:
    """litellm's bundled model price map, parsed (3 MB of JSON: about 50 ms)."""
    try:
        value = json.loads(_bundled_price_text() or "{}")
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def _bundled_prices_for(*keys: str) -> dict[str, Any]:
    """The bundled map, or {} when none of `keys` occurs in it as a JSON string: a self-hosted
    judge's name ("openai/Qwen/X" on a vLLM server) is then known to be unpriced without parsing
    the whole map during the run's first answers."""
    text = _bundled_price_text()
    if not any(key and json.dumps(key, ensure_ascii=False) in text for key in keys):
        return {}
    return _bundled_price_map()


def _bundled_rates(model: str) -> tuple[float, float] | None:
    """The base rates of `model` (or of its name without the provider prefix, as litellm looks
    it up) in the bundled map; None when it has none."""
    provider, _, name = model.partition("/")
    prices = _bundled_prices_for(model, name)
    for key in (model, name) if name else (model,):
        entry = prices.get(key)
        if not isinstance(entry, dict) or (key == name and entry.get("litellm_provider") not in (provider, None)):
            continue
        prompt, completion = entry.get("input_cost_per_token"), entry.get("output_cost_per_token")
        if isinstance(prompt, int | float) and isinstance(completion, int | float):
            return float(prompt), float(completion)
    return None


def batch_rates(model: str) -> tuple[tuple[float, float] | None, bool]:
    """USD per prompt and completion token through the provider's batch API, and whether that
    is an assumption: litellm's map has batch prices for some models
    (`input_cost_per_token_batches`); for the others it is half the live price, the discount
    OpenAI, Anthropic and Vertex give.

    Args:
        model: the judge's litellm model string.

    Returns:
        ((prompt rate, completion rate) or None when the live price is unknown too, assumed).
    """
    if model not in _REGISTERED:
        provider, _, name = model.partition("/")
        prices = _bundled_prices_for(model, name)
        for key in (model, name) if name else (model,):
            entry = prices.get(key)
            if isinstance(entry, dict) and (key == model or entry.get("litellm_provider") in (provider, None)):
                prompt, completion = entry.get("input_cost_per_token_batches"), entry.get("output_cost_per_token_batches")
                if isinstance(prompt, int | float) and isinstance(completion, int | float):
                    return (float(prompt), float(completion)), False
    rates = _rates(model, "litellm" in sys.modules)
    return (None if rates is None else (rates[0] / 2, rates[1] / 2)), True


def batch_price(model: str, prompt_tokens: int, completion_tokens: int) -> float | None:
    """USD for these tokens through the batch API (`batch_rates`); None when the price is unknown."""
    rates, _ = batch_rates(model)
    return None if rates is None else prompt_tokens * rates[0] + completion_tokens * rates[1]
