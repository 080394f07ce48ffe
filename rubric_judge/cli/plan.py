"""`rubric-judge plan`: how many judge calls a rubric over a dataset makes, and what they cost."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def command(
    rubric: Annotated[Path, typer.Argument(help="A rubric file, a directory of task rubrics, or a library rubric such as builtin:medgen/holistic-with-gt.yaml.")],
    data: Annotated[Path, typer.Option("--data", help="Dataset manifest (JSONL, one sample per line).")],
    outputs: Annotated[Path | None, typer.Option("--outputs", help="Model outputs: a directory of <id>.png/<id>.txt files or a JSONL file.")] = None,
    judge: Annotated[str | None, typer.Option("--judge", help="litellm model string of the judge (overrides the rubric's).")] = None,
    replicates: Annotated[int, typer.Option(min=1, help="Judge every call this many times.")] = 1,
) -> None:
    """Show judge calls, criteria, images, estimated tokens and cost per batching mode, offline.

    Prices come from litellm's bundled price map (no network); tokens are estimates.
    """
    from rich.table import Table

    from rubric_judge.cli.output import print_warnings, stdout
    from rubric_judge.job import load_job
    from rubric_judge.judge.estimate import COMPLETION_TOKENS_PER_CRITERION, estimate_calls
    from rubric_judge.rubrics.compile import JudgeTarget, build_plan
    from rubric_judge.rubrics.schema import Batching

    job = load_job(rubric, data, outputs)
    model = judge or job.rubrics[0].judge.model
    target = JudgeTarget(model)
    configured = job.rubrics[0].judge.mode
    table = Table(title=f"Plan: {job.rubric_id} v{job.rubric_version} over {len(job.samples)} samples, judge {model}", title_justify="left")
    for column in ("batching", "calls", "criteria", "images", "prompt tokens", "completion tokens", "est. cost (USD)"):
        table.add_column(column, justify="left" if column == "batching" else "right")
    plan = None
    for mode in Batching:
        mode_plan = build_plan(job.rubrics, job.samples, target, mode, replicates)
        if mode is configured:
            plan = mode_plan
        est = estimate_calls(mode_plan.calls, model)
        cost = "unknown (model not in litellm's price map)" if est.cost_usd is None else f"{est.cost_usd:,.4f}"
        label = f"{mode.value} (rubric's)" if mode is configured else mode.value
        table.add_row(label, f"{est.calls:,}", f"{est.criteria:,}", f"{est.images:,}", f"{est.prompt_tokens:,}", f"{est.completion_tokens:,}", cost)
    assert plan is not None
    stdout.print(table)
    missing = [sp for sp in plan.samples if sp.unjudged]
    if missing:
        names = ", ".join(sp.sample.id for sp in missing[:10]) + (" ..." if len(missing) > 10 else "")
        policy = job.rubrics[0].scoring.missing_output.value
        stdout.print(f"[yellow]{len(missing)} sample(s) have no model output[/] ({names}): no judge call; scored by missing_output: {policy}")
    print_warnings(plan.problems)
    stdout.print(f"[dim]Estimates: text tokens by litellm's tokenizer, images by the 512-px tile formula, {COMPLETION_TOKENS_PER_CRITERION} completion tokens per criterion.[/]")
