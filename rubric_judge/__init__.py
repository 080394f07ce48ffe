"""rubric-judge: judge medical image and text generation against YAML rubrics.

The public Python API; everything else is reached through it (the CLI renders these):

    import rubric_judge as rj

    rubric = rj.load_rubric("builtin:medgen/holistic-with-gt.yaml")
    plan = rj.plan(rubric_path, data="manifest.jsonl", outputs="outputs/")   # calls and cost, offline
    shown = rj.preview(rubric_path, data="manifest.jsonl", outputs="outputs/")  # one sample's exact messages, offline
    run = rj.score(rubric_path, data="manifest.jsonl", outputs="outputs/", model="my-model", judge="openai/gpt-4.1")
    board = rj.open_results(run.db).leaderboard()                           # a pandas DataFrame
    trust = rj.agree(run.db)                 # judge vs expert labels, other runs, replicates, probes

`score` works from scripts and inside a running event loop (Jupyter); `score_async` is the
coroutine. Bad input raises `UserError`, whose `problems` name the file, line, field and a fix.

Names are imported on first use, so `import rubric_judge` (and the CLI's `--help`) stays instant.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rubric_judge.errors import Problem, UserError
    from rubric_judge.judge.batch_records import BatchUpdate
    from rubric_judge.judge.preview import Preview, PreviewCall, PreviewImage, PreviewMessage, PreviewText, preview
    from rubric_judge.plan_summary import MetricWork, ModePlan, Plan, plan
    from rubric_judge.rubrics.loader import load_rubric, load_rubric_set
    from rubric_judge.rubrics.schema import Rubric
    from rubric_judge.run import (
        CallsProgress,
        JudgeChosen,
        MetricsProgress,
        Planned,
        RunResult,
        ScoreEvent,
        score,
        score_async,
    )
    from rubric_judge.serve.service import RewardResult, RewardService
    from rubric_judge.store.agreement import agree
    from rubric_judge.store.results import Results, open_results

# Public name -> the module that defines it.
_EXPORTS = {
    "load_rubric": "rubric_judge.rubrics.loader",
    "load_rubric_set": "rubric_judge.rubrics.loader",
    "Rubric": "rubric_judge.rubrics.schema",
    "plan": "rubric_judge.plan_summary",
    "Plan": "rubric_judge.plan_summary",
    "ModePlan": "rubric_judge.plan_summary",
    "MetricWork": "rubric_judge.plan_summary",
    "preview": "rubric_judge.judge.preview",
    "Preview": "rubric_judge.judge.preview",
    "PreviewCall": "rubric_judge.judge.preview",
    "PreviewMessage": "rubric_judge.judge.preview",
    "PreviewText": "rubric_judge.judge.preview",
    "PreviewImage": "rubric_judge.judge.preview",
    "score": "rubric_judge.run",
    "score_async": "rubric_judge.run",
    "RunResult": "rubric_judge.run",
    "ScoreEvent": "rubric_judge.run",
    "JudgeChosen": "rubric_judge.run",
    "Planned": "rubric_judge.run",
    "CallsProgress": "rubric_judge.run",
    "MetricsProgress": "rubric_judge.run",
    "BatchUpdate": "rubric_judge.run",
    "RewardService": "rubric_judge.serve.service",
    "RewardResult": "rubric_judge.serve.service",
    "open_results": "rubric_judge.store.results",
    "agree": "rubric_judge.store.agreement",
    "Results": "rubric_judge.store.results",
    "UserError": "rubric_judge.errors",
    "Problem": "rubric_judge.errors",
}
__all__ = [
    "BatchUpdate",
    "CallsProgress",
    "JudgeChosen",
    "MetricWork",
    "MetricsProgress",
    "ModePlan",
    "Plan",
    "Planned",
    "Preview",
    "PreviewCall",
    "PreviewImage",
    "PreviewMessage",
    "PreviewText",
    "Problem",
    "Results",
    "RewardResult",
    "RewardService",
    "Rubric",
    "RunResult",
    "ScoreEvent",
    "UserError",
    "agree",
    "load_rubric",
    "load_rubric_set",
    "open_results",
    "plan",
    "preview",
    "score",
    "score_async",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'rubric_judge' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
