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
    cache_dir: Annotated[Path | None, typer.Option("--cache-dir", help="Verdict cache to read for calls already paid (default: $RUBRIC_JUDGE_CACHE_DIR, else ~/.cache/rubric-judge).")] = None,
) -> None:
    """Show judge calls, criteria, images, estimated tokens and cost per batching mode, offline,
    and how many calls are already in the verdict cache (free) and what the rest would cost.

    Prices come from litellm's bundled price map (no network); tokens are estimates.
    """
    from rich.table import Table

    from rubric_judge.cli.output import print_warnings, stdout
    from rubric_judge.planning.estimate import COMPLETION_TOKENS_PER_CRITERION
    from rubric_judge.planning.summary import plan

    summary = plan(rubric, data=data, outputs=outputs, judge=judge, replicates=replicates, cache_dir=cache_dir)
    table = Table(title=f"Plan: {summary.rubric_id} v{summary.rubric_version} over {summary.samples} samples, judge {summary.judge_model}",
                  title_justify="left")
    for column in ("batching", "calls", "cached", "criteria", "images", "prompt tokens", "completion tokens", "est. cost (USD)", "to pay (USD)"):
        table.add_column(column, justify="left" if column == "batching" else "right")

    def usd(value: float | None) -> str:
        return "unknown" if value is None else f"{value:,.4f}"

    for mode in summary.modes:
        label = f"{mode.mode} (rubric's)" if mode.configured else mode.mode
        table.add_row(label, f"{mode.calls:,}", f"{mode.cached_calls:,}", f"{mode.criteria:,}", f"{mode.images:,}", f"{mode.prompt_tokens:,}",
                      f"{mode.completion_tokens:,}", usd(mode.cost_usd), usd(mode.to_pay_cost_usd))
    stdout.print(table)
    if summary.missing_outputs:
        names = ", ".join(summary.missing_outputs[:10]) + (" ..." if len(summary.missing_outputs) > 10 else "")
        stdout.print(f"[yellow]{len(summary.missing_outputs)} sample(s) have no model output[/] ({names}): no judge call; "
                     f"scored by missing_output: {summary.missing_output_policy}")
    print_warnings(summary.warnings)
    if summary.configured.cost_usd is None:
        stdout.print(f"[yellow]{summary.judge_model} has no price in litellm's map, so costs are unknown[/] (not zero).")
    stdout.print(f"[dim]Estimates: text tokens by litellm's tokenizer, images by the 512-px tile formula, {COMPLETION_TOKENS_PER_CRITERION} "
                 "completion tokens per criterion; `cached` calls are in the verdict cache and cost nothing again.[/]")
