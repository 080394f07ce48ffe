"""`rubric-judge plan`: how many judge calls a rubric over a dataset makes, and what they cost."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def command(
    rubric: Annotated[Path, typer.Argument(help="A rubric file, a directory of task rubrics, or a library rubric such as builtin:medgen/holistic-with-gt.yaml.")],
    data: Annotated[Path, typer.Option("--data", help="Dataset manifest (JSONL, one sample per line).")],
    outputs: Annotated[Path | None, typer.Option("--outputs", help="Model outputs: a directory of <id>.png/<id>.txt files or a JSONL file.")] = None,
    judge: Annotated[str | None, typer.Option("--judge", help="litellm model string of the judge (overrides the rubric's); `offline` = the built-in offline judge.")] = None,
    api_base: Annotated[str | None, typer.Option("--api-base", help="Base URL of the judge's OpenAI-compatible server, as given to `score` (part of the cache key).")] = None,
    replicates: Annotated[int, typer.Option(min=1, help="Judge every call this many times.")] = 1,
    max_image_side: Annotated[int | None, typer.Option(min=64, help="Downscale images as `score --max-image-side` would (part of the cache key).")] = None,
    cache_dir: Annotated[Path | None, typer.Option("--cache-dir", help="Verdict cache to read for calls already paid (default: $RUBRIC_JUDGE_CACHE_DIR, else ~/.cache/rubric-judge).")] = None,
) -> None:
    """Show judge calls, criteria, images, estimated tokens and cost per batching mode, offline,
    how many calls are already in the verdict cache (free) and what the rest would cost, and the
    metric work (samples per metric, weights present or not).

    Prices come from litellm's bundled price map (no network); tokens are estimates. Give the
    same --judge, --api-base and --max-image-side as `score`: they are part of the cache key.
    """
    from rich.table import Table
    from rich.text import Text

    from rubric_judge.cli.output import print_warnings, stdout
    from rubric_judge.plan_summary import plan
    from rubric_judge.planning.estimate import COMPLETION_TOKENS_PER_CRITERION

    summary = plan(rubric, data=data, outputs=outputs, judge=judge, api_base=api_base, replicates=replicates,
                   max_image_side=max_image_side, cache_dir=cache_dir)
    if not summary.judged:
        stdout.print(f"Plan: {summary.rubric_id} v{summary.rubric_version} over {summary.samples} samples: a metrics-only rubric, no judge calls.",
                     markup=False)
        _print_metrics(summary)
        return
    table = Table(title=f"Plan: {summary.rubric_id} v{summary.rubric_version} over {summary.samples} samples, judge {summary.judge_model}",
                  title_justify="left")
    for column in ("batching", "calls", "cached", "criteria", "images", "prompt tokens", "completion tokens", "est. cost (USD)", "to pay (USD)",
                   "to pay, --batch (USD)"):
        table.add_column(column, justify="left" if column == "batching" else "right")

    def usd(value: float | None) -> str:
        return "unknown" if value is None else f"{value:,.4f}"

    for mode in summary.modes:
        label = f"{mode.mode} (rubric's)" if mode.configured else mode.mode
        if mode.unusable and not mode.calls:  # zeros would read as "free": say it cannot be used
            table.add_row(label, "-", "-", "-", "-", "-", "-", "cannot be used", "-", "-", style="dim")
            continue
        table.add_row(label, f"{mode.calls:,}", f"{mode.cached_calls:,}", f"{mode.criteria:,}", f"{mode.images:,}", f"{mode.prompt_tokens:,}",
                      f"{mode.completion_tokens:,}", usd(mode.cost_usd), usd(mode.to_pay_cost_usd), usd(mode.batch_to_pay_cost_usd))
    stdout.print(table)
    for mode in summary.modes:
        if mode.unusable:
            stdout.print(Text.assemble((f"{mode.mode} cannot be used with this rubric's templates: ", "yellow"), mode.unusable,
                                       " (guard it with {% if ... %} to allow this mode)"))
    configured = summary.configured
    stdout.print(Text.assemble(("This rubric's mode: ", "bold"),
                               f"{configured.calls:,} calls, {configured.cached_calls:,} in the verdict cache (free), {configured.to_pay_calls:,} to pay, "
                               f"estimated {usd(configured.to_pay_cost_usd)} USD to pay (of {usd(configured.cost_usd)} in all), "
                               f"{usd(configured.batch_to_pay_cost_usd)} USD with score --batch."))
    if summary.missing_outputs:
        names = ", ".join(summary.missing_outputs[:10]) + (" ..." if len(summary.missing_outputs) > 10 else "")
        stdout.print(f"[yellow]{len(summary.missing_outputs)} sample(s) have no model output[/] ({names}): no judge call; "
                     f"scored by missing_output: {summary.missing_output_policy}")
    print_warnings(summary.warnings)
    if summary.configured.cost_usd is not None:
        stdout.print("[dim]--batch prices: " + ("assumed half the live price (litellm's map has no batch price for this judge)[/]"
                                                 if summary.batch_price_assumed else "the provider's batch prices, from litellm's map[/]"))
    if summary.configured.cost_usd is None:
        stdout.print(f"[yellow]{summary.judge_model} has no price in litellm's map, so costs are unknown[/] (not zero).")
    stdout.print(f"[dim]Estimates: text tokens by litellm's tokenizer, images by the 512-px tile formula, {COMPLETION_TOKENS_PER_CRITERION} "
                 "completion tokens per criterion; `cached` calls are in the verdict cache and cost nothing again.[/]")
    _print_metrics(summary)


def _print_metrics(summary) -> None:
    """The metric work: samples each metric computes, and whether the weights it needs are here."""
    from rich.table import Table

    from rubric_judge.cli.output import stdout

    if not summary.metrics:
        return
    table = Table(title="Metrics (computed locally, no judge)", title_justify="left")
    for column in ("metric", "output vs reference", "pairs", "missing outputs", "weights"):
        table.add_column(column, justify="right" if column in ("pairs", "missing outputs") else "left", overflow="fold")
    for work in summary.metrics:
        weights = "; ".join(f"{w.name}: {'present' if w.present else 'ABSENT'}" for w in work.weights) or "none needed"
        table.add_row(work.metric, f"{work.output} vs {work.reference}", f"{work.pairs:,}", f"{work.missing_outputs:,}", weights)
    stdout.print(table)
    if any(not w.present for work in summary.metrics for w in work.weights):
        stdout.print("[yellow]Some weights are absent:[/] those metrics would be reported as not computed; `rubric-judge weights --download` fetches them.")
