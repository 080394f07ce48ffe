"""`rubric-judge score`: judge a model's outputs against a rubric and store everything in DuckDB."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:
    from rubric_judge.run import RunResult


def command(
    rubric: Annotated[Path, typer.Argument(help="A rubric file, a directory of task rubrics, or a library rubric such as builtin:medgen/holistic-with-gt.yaml.")],
    data: Annotated[Path, typer.Option("--data", help="Dataset manifest (JSONL, one sample per line).")],
    outputs: Annotated[Path, typer.Option("--outputs", help="Model outputs: a directory of <id>.png/<id>.txt files or a JSONL file.")],
    model: Annotated[str, typer.Option("--model", help="Name of the model under test, as it should appear on the leaderboard.")],
    judge: Annotated[list[str] | None, typer.Option("--judge", help="litellm model string of the judge (overrides the rubric's); `offline` = the built-in offline judge (not a VLM). Give it two or more times, with --panel, for a judge panel.")] = None,
    panel: Annotated[str | None, typer.Option("--panel", help="How a panel's verdicts combine: majority | mean | min. Each member judge is stored as its own run; a member without a valid verdict is left out, a binary majority tie is unscored.")] = None,
    probe: Annotated[str | None, typer.Option("--probe", help="After the run, judge every call again with its images in the opposite order (swap-images) and store that as a probe run of this one, for `rubric-judge agree`.")] = None,
    api_base: Annotated[str | None, typer.Option("--api-base", help="Base URL of an OpenAI-compatible server (vLLM, Ollama, ...).")] = None,
    transport: Annotated[str, typer.Option("--transport", help="How requests reach the judge: `litellm` (any provider litellm knows), `direct` (rubric-judge's own HTTP client for an OpenAI-compatible --api-base; about a quarter of litellm's client CPU per call) or `auto`: direct when --api-base is given with an openai/ or hosted_vllm/ model, else litellm.")] = "auto",
    concurrency: Annotated[int, typer.Option(min=1, max=1024, help="Judge calls in flight at once.")] = 16,
    rpm: Annotated[float | None, typer.Option("--rpm", min=0.1, help="Requests-per-minute limit.")] = None,
    timeout: Annotated[float, typer.Option(min=1, help="Seconds before one judge request is abandoned and retried.")] = 120.0,
    db: Annotated[Path | None, typer.Option("--db", help="Results database (default: $RUBRIC_JUDGE_DB, else ./rubric-judge.duckdb).")] = None,
    cache_dir: Annotated[Path | None, typer.Option("--cache-dir", help="Verdict cache (default: $RUBRIC_JUDGE_CACHE_DIR, else ~/.cache/rubric-judge).")] = None,
    cache: Annotated[str, typer.Option("--cache", help="read-write | read-only | refresh | off")] = "read-write",
    max_cost: Annotated[float | None, typer.Option("--max-cost", min=0, help="Refuse to start if the estimate exceeds this many USD; stop when spend reaches it.")] = None,
    replicates: Annotated[int, typer.Option(min=1, help="Judge every call this many times (replicate index is part of the cache key).")] = 1,
    max_image_side: Annotated[int | None, typer.Option(min=64, help="Downscale images whose longer side exceeds this (default: send originals).")] = None,
    device: Annotated[str, typer.Option(help="Where metrics run: auto (cuda, then mps, then cpu) | cpu | cuda | mps.")] = "auto",
    max_unreachable: Annotated[int, typer.Option("--max-unreachable", min=0, help="Stop the run (exit 1) after this many attempts in a row could not connect to the judge at all; 0 = never.")] = 20,
    limit: Annotated[int | None, typer.Option("--limit", min=1, help="Score only the first N samples of the manifest (of the --sample ones, if given), to try a rubric; the run is marked partial.")] = None,
    sample: Annotated[list[str] | None, typer.Option("--sample", help="Score only the sample with this id (repeatable); the run is marked partial.")] = None,
    batch: Annotated[bool, typer.Option("--batch", help="Send the uncached calls through the provider's batch API (about half the price, answers within 24 h); an anthropic/ judge (Message Batches API), or an OpenAI-compatible --api-base with /v1/files and /v1/batches. Running the same command again polls the batches (kept in --db), never submits them twice.")] = False,
    wait: Annotated[bool, typer.Option("--wait/--no-wait", help="With --batch: wait for the batches to end (default), or submit and return (status `submitted`; run the same command later to collect).")] = True,
    provider_batch_size: Annotated[int | None, typer.Option("--provider-batch-size", min=1, help="With --batch: at most this many requests per batch (default: the provider's limit, OpenAI 50,000 requests and 200 MB per file, Anthropic 100,000 requests or 256 MB per batch).")] = None,
    batch_invalid: Annotated[str, typer.Option("--batch-invalid", help="With --batch: a batch answer that fails validation, or a request over the provider's per-request limits (images, bytes), is asked live (reask) or stored unscored (unscored).")] = "reask",
) -> None:
    """Judge model outputs against a rubric: cached, resumable, every call and verdict in DuckDB.

    Re-running the same command is free (verdicts come from the cache) and replaces the run's
    rows; after a crash, run it again to resume. With --limit or --sample the run is `partial`:
    the leaderboard says so and `compare` refuses it unless --allow-partial; the same command
    without them scores the rest (the calls already judged come from the cache).
    """
    from rubric_judge.cli.app import imports_frozen

    with imports_frozen():
        from rubric_judge.cli.progress import RichProgress
        from rubric_judge.run import score

    with RichProgress() as on_progress:
        result = score(
            rubric, data=data, outputs=outputs, model=model, judge=judge, panel=panel, probe=probe, api_base=api_base, transport=transport, concurrency=concurrency,
            rpm=rpm, timeout=timeout, db=db, cache_dir=cache_dir, cache=cache, max_cost=max_cost, replicates=replicates,
            max_image_side=max_image_side, device=device, max_unreachable=max_unreachable, limit=limit, samples=sample,
            batch=batch, batch_wait=wait, provider_batch_size=provider_batch_size, batch_invalid=batch_invalid, on_progress=on_progress,
        )
    print_summary(result)
    raise typer.Exit(result.exit_code)


def print_summary(result: RunResult) -> None:
    """The run's scores and metrics, what it paid, why calls failed, and how it ended."""
    from rich.markup import escape
    from rich.table import Table

    from rubric_judge.cli.output import stderr, stdout

    if result.members:
        _print_members(result, result.results())
    table = Table(title=f"Scores ({result.judge_model})", title_justify="left")
    for column in ("model", "dimension", "score", "accuracy", "samples", "excluded", "missing outputs", "unscored verdicts"):
        table.add_column(column, justify="left" if column in ("model", "dimension") else "right")
    for row in result.scores:
        table.add_row(row["model_name"], row["dimension"], _fmt(row["score"]), _fmt(row["accuracy_rate"]), _count(row["samples_scored"]),
                      _count(row["samples_excluded"]), _count(row["missing_outputs"]), _count(row["unscored_verdicts"]))
    stdout.print(table)
    metric_rows = result.metric_scores
    if metric_rows:
        metrics = Table(title="Metrics", title_justify="left")
        for column in ("metric", "mean", "accuracy", "ok", "missing outputs", "not computed", "why not computed"):
            metrics.add_column(column, justify="left" if column in ("metric", "why not computed") else "right", overflow="fold")
        for row in metric_rows:
            metrics.add_row(row["metric"], _fmt(row["mean_value"]), _fmt(row["accuracy_rate"]), _count(row["samples_ok"]),
                            _count(row["missing_outputs"]), _count(row["not_computed"]), _first_sentence(row["example_problem"]))
        stdout.print(metrics)
    cost = f"${result.cost_usd:.4f}" + (" (some calls had no known price)" if result.cost_unknown else "")
    stdout.print(f"{result.calls} calls: {result.cache_hits} from cache, {result.failed_calls} failed; "
                 f"{result.prompt_tokens:,} prompt + {result.completion_tokens:,} completion tokens paid, {cost}")
    if result.failed_calls and result.status != "failed":  # a failed run says why below, once
        # The commonest reasons, once each: a judge that fails every call fails them all alike.
        # A panel made no calls of its own: its members did.
        call_runs = [m.run_id for m in result.members] or [result.run_id]
        reasons = result.results().records(f"SELECT error, count(*) AS calls FROM judge_calls WHERE run_id IN ({', '.join('?' * len(call_runs))}) "
                                  "AND status <> 'ok' AND error IS NOT NULL GROUP BY error ORDER BY calls DESC, error LIMIT 3", call_runs)
        for reason in reasons:
            stderr.print(f"[red]failed[/] {reason['calls']} call(s): {escape(reason['error'])}")
    if result.status == "partial":
        stdout.print(f"[yellow]Partial run:[/] {escape(result.status_detail or '')}.")
    elif result.status == "stopped":
        stdout.print(f"[yellow]Stopped: {escape(result.status_detail or '')}.[/]")
    elif result.status == "submitted":
        stdout.print(f"[yellow]Submitted:[/] {escape(result.status_detail or '')}.")
    elif result.status == "failed":
        stderr.print(f"[bold red]Stopped early:[/] {escape(result.status_detail or '')}. Nothing more was sent; check --api-base and that the "
                     "judge's server is up, then run the same command again (answers already paid for are cached).")
    if result.probe is not None:
        _print_probe(result.probe)
    stdout.print(f"Results in {result.db} (run {result.run_id}); try: rubric-judge query \"SELECT * FROM task_scores\" --db {result.db}")


def _print_members(result: RunResult, results) -> None:
    """One line per panel member: its own overall score, calls and cost (its rows are its own run)."""
    from rich.markup import escape

    from rubric_judge.cli.output import stdout

    overall = _member_scores(results, result.run_id)
    for member in result.members:
        stdout.print(f"member {escape(member.judge_model)}: overall {_fmt(overall.get(member.run_id))}, {member.calls} calls "
                     f"({member.cache_hits} cached, {member.failed_calls} failed), ${member.cost_usd:.4f} [dim](run {member.run_id}, {member.status})[/]")


def _member_scores(results, panel_run_id: str) -> dict[str, float | None]:
    """Each member run's overall score, averaged over its samples as the leaderboard does."""
    rows = results.records("SELECT t.run_id, avg(t.score) FILTER (WHERE NOT t.excluded) AS score FROM task_scores t JOIN runs r USING (run_id) "
                           "WHERE r.parent_run_id = ? AND r.role = 'panel_member' GROUP BY t.run_id", [panel_run_id])
    return {row["run_id"]: row["score"] for row in rows}


def _print_probe(probe: RunResult) -> None:
    from rubric_judge.cli.output import stdout

    cost = f"${probe.cost_usd:.4f}" + (" (some calls had no known price)" if probe.cost_unknown else "")
    stdout.print(f"Probe swap-images: run {probe.run_id} ({probe.status}), {probe.calls} calls: {probe.cache_hits} from cache, "
                 f"{probe.failed_calls} failed, {cost}; its verdicts against this run's: rubric-judge agree")


def _count(value) -> str:
    return "-" if value is None else str(int(value))


def _first_sentence(text: str | None) -> str:
    if not text:
        return ""
    head, dot, rest = text.partition(". ")
    return head + (". (full text: metric_values.detail)" if rest else dot)


def _fmt(value: float | None) -> str:
    import math

    return "-" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.3f}"
