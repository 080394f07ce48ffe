"""The offline judge: a deterministic stand-in for a VLM, for demos with no network and no API key.

It is deliberately not a vision-language model and says so in every verdict's reasoning. For each
request it compares the FIRST image (the reference) with the LAST image (the generated one): the
similarity is 1 minus the mean absolute difference of 64x64 grayscale thumbnails, in [0, 1]. Each
criterion gets a fixed threshold in [0.55, 0.95] derived from sha256 of its text, so different
criteria disagree in a stable, reproducible way:

- binary: satisfied iff similarity >= threshold, confidence = similarity;
- scale: score = round(minimum + similarity * (maximum - minimum)).

With fewer than two images (or images Pillow cannot read) there is nothing to compare, and the
similarity is a neutral 0.5; text is not compared, because prompt templates give no reliable way
to tell a reference text from a generated one.

Serve it with `start_offline_judge()` and point litellm at it with `OFFLINE_JUDGE_MODEL` and the
server's `base_url`.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image

from rubric_judge.imageio import ImageError, open_image
from rubric_judge.planning.target import OFFLINE_JUDGE_MODEL
from rubric_judge.testing.loopback import CriterionQuestion, LoopbackJudge, criterion_digest, scale_bounds

OFFLINE_JUDGE_API_KEY = "sk-offline-judge"  # litellm's openai provider insists on some key
THRESHOLD_RANGE = (0.55, 0.95)
NEUTRAL_SIMILARITY = 0.5
THUMBNAIL_SIZE = (64, 64)


@dataclass(frozen=True)
class Similarity:
    value: float  # in [0, 1]
    basis: str  # how it was obtained, quoted in the reasoning


def image_similarity(reference: bytes, generated: bytes) -> float:
    """1 - mean absolute difference of the two images as 64x64 grayscale, in [0, 1]."""
    reference_pixels, generated_pixels = (_thumbnail(data) for data in (reference, generated))
    return float(1.0 - np.abs(reference_pixels - generated_pixels).mean())


def _thumbnail(data: bytes) -> np.ndarray:
    with open_image(data) as image:  # refuses images over the pixel limit before decoding
        small = image.convert("L").resize(THUMBNAIL_SIZE, Image.Resampling.BILINEAR)
        return np.asarray(small, dtype=np.float32) / 255.0


# Keyed on the request's image tuple, which the server builds once per request and hands to every
# criterion: each request decodes its images once, however many criteria it asks about.
@functools.lru_cache(maxsize=64)
def request_similarity(images: tuple[bytes, ...]) -> Similarity:
    if len(images) < 2:
        return Similarity(NEUTRAL_SIMILARITY, f"neutral similarity (only {len(images)} image(s) to compare)")
    try:
        value = image_similarity(images[0], images[-1])
    except (ImageError, OSError, ValueError):
        return Similarity(NEUTRAL_SIMILARITY, "neutral similarity (an image could not be decoded)")
    return Similarity(min(1.0, max(0.0, value)), "image similarity")


def criterion_threshold(text: str) -> float:
    """A stable threshold in THRESHOLD_RANGE, different for each criterion text."""
    low, high = THRESHOLD_RANGE
    fraction = int.from_bytes(criterion_digest(text)[:4], "big") / 0xFFFFFFFF
    return low + fraction * (high - low)


def offline_policy(question: CriterionQuestion) -> dict[str, Any]:
    similarity = request_similarity(question.images)
    if question.kind == "binary":
        threshold = criterion_threshold(question.text)
        reasoning = f"offline judge (not a VLM): {similarity.basis} {similarity.value:.2f} vs threshold {threshold:.2f}"
        return {"reasoning": reasoning, "satisfied": similarity.value >= threshold, "confidence": round(similarity.value, 4)}
    low, high = scale_bounds(question.minimum, question.maximum)
    score = round(low + similarity.value * (high - low))
    reasoning = f"offline judge (not a VLM): {similarity.basis} {similarity.value:.2f} mapped onto {low}..{high}"
    return {"reasoning": reasoning, "score": score}


def start_offline_judge(latency: float = 0.0) -> LoopbackJudge:
    """A running loopback server answering with `offline_policy`; stop it with `.stop()`.

    It serves files and batches too, so `score --judge offline --batch` shows the batch path
    (its batches end at the first poll)."""
    from rubric_judge.testing.batch_loopback import BatchLoopbackJudge

    return BatchLoopbackJudge(policy=offline_policy, polls_to_finish=0, latency=latency, model_name=OFFLINE_JUDGE_MODEL.removeprefix("openai/")).start()
