"""The judge a plan or preview is for, identified as `score` identifies it in cache keys.

A cache key holds the judge's model string and the server's URL (without credentials), so
`plan` and `preview` must name the judge exactly as `score` would to find the calls it cached:
the rubric's model or `--judge`, `--api-base`, and for `--judge offline` the built-in offline
judge's model and identity (run.py's `_run_judge` uses the same values).
"""

from __future__ import annotations

from rubric_judge.planning.compile import JudgeTarget
from rubric_judge.redaction import url_without_userinfo
from rubric_judge.rubrics.schema import Rubric

OFFLINE = "offline"  # --judge offline
# The offline judge's model string, and the api_base that stands for it in cache keys and run ids
# (its real URL is a new loopback port each run). judge/offline.py serves under this name.
OFFLINE_JUDGE_MODEL = "openai/rubric-judge-offline"
OFFLINE_IDENTITY_BASE = "builtin:offline"


def judge_target(rubric: Rubric, judge: str | None = None, api_base: str | None = None, max_image_side: int | None = None) -> JudgeTarget:
    """The `JudgeTarget` whose cache keys `score` would use for these options.

    Args:
        rubric: the run's base rubric (its `judge.model` is the default judge).
        judge: `--judge`: a litellm model string, "offline", or None for the rubric's.
        api_base: `--api-base`; credentials in it are not part of the identity.
        max_image_side: `--max-image-side`.

    Returns:
        The target; for the offline judge its price ($0) is registered, so estimates read $0.
    """
    if judge == OFFLINE:
        from rubric_judge.planning.estimate import register_price

        register_price(OFFLINE_JUDGE_MODEL, 0.0, 0.0)
        return JudgeTarget(OFFLINE_JUDGE_MODEL, OFFLINE_IDENTITY_BASE, max_image_side)
    return JudgeTarget(judge or rubric.judge.model, url_without_userinfo(api_base) if api_base else None, max_image_side)
