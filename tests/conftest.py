"""Shared fixtures: a loopback judge server in the test process and paths to the IlluGenBench example."""

from __future__ import annotations

import os

# Before litellm is imported anywhere: use the bundled model cost map instead of fetching it.
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from rubric_judge.testing.loopback import CriterionQuestion, LoopbackJudge, criterion_digest

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "illugenbench"


def id_policy(question: CriterionQuestion) -> dict[str, Any]:
    """Deterministic from the criterion id: every `*-1` is met, and so is the negatively weighted
    `scientific_accuracy-2` (so negative weights enter the scores); everything else is not."""
    met = question.criterion_id.endswith("-1") or question.criterion_id == "scientific_accuracy-2"
    return {"reasoning": f"policy answer for {question.criterion_id}", "satisfied": met, "confidence": 0.9}


def mixed_policy(question: CriterionQuestion) -> dict[str, Any]:
    """`id_policy` for binary criteria; a scale score that depends on what was sent (so
    different responses get different rewards) for scale criteria."""
    if question.kind == "binary":
        return id_policy(question)
    low, high = question.minimum or 1, question.maximum or 10
    return {"reasoning": "policy score", "score": low + criterion_digest(question.prompt_text + question.criterion_id)[0] % (high - low + 1)}


class RecordingJudge(LoopbackJudge):
    """The loopback judge, with each request's Authorization header at hand (test-only)."""

    @property
    def authorization(self) -> list[str | None]:
        return [headers.get("Authorization") for headers in self.request_headers]


@pytest.fixture
def judge_server() -> Iterator[RecordingJudge]:
    """A fresh loopback judge answering with `id_policy`; tests may set faults, fault_rule, latency."""
    with RecordingJudge(policy=id_policy) as server:
        yield server


@pytest.fixture(scope="module")
def module_judge_server() -> Iterator[RecordingJudge]:
    with RecordingJudge(policy=id_policy) as server:
        yield server


@pytest.fixture(autouse=True)
def _fast_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RUBRIC_JUDGE_BACKOFF_BASE_S", "0.01")


@pytest.fixture
def cli_warnings() -> Iterator[None]:
    """The library's warnings printed on stderr in the CLI's style, as `rubric-judge` shows them."""
    import logging

    from rubric_judge.cli.app import show_library_warnings
    from rubric_judge.errors import LOGGER

    logger = logging.getLogger(LOGGER)
    handler = show_library_warnings()
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.propagate = True
