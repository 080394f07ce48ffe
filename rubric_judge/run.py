"""One scoring run end to end: plan -> cache/judge -> DuckDB -> score table.

Outcomes are written to the database as they arrive (in small batches), and every validated
answer is in the verdict cache before it is written, so a run killed at any point resumes by
running the same command again: cached calls cost nothing and the run's rows are replaced.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from rubric_judge.cache.store import CacheMode, VerdictCache
from rubric_judge.errors import UserError
from rubric_judge.job import load_job
from rubric_judge.judge.executor import Executor, ExecutorSettings, Outcome, Progress
from rubric_judge.judge.llm import litellm_module
from rubric_judge.judge.transport import NO_KEY, provider_api_key, resolve_transport
from rubric_judge.metrics import MetricCache, compute_run_metrics, metric_groups
from rubric_judge.redaction import redact_url, register_secret, register_url, url_without_userinfo
from rubric_judge.rubrics.compile import JudgeTarget, build_plan

FLUSH_EVERY = 25
FLUSH_SECONDS = 1.0


@dataclass(frozen=True)
class ScoreOptions:
    rubric: Path
    data: Path
    outputs: Path
    model_name: str
    judge: str | None = None
    offline: bool = False
    api_base: str | None = None
    transport: str = "auto"  # auto | litellm | direct (judge/transport.py)
    concurrency: int = 16
    rpm: float | None = None
    timeout_s: float = 120.0
    db: Path = Path("rubric-judge.duckdb")
    cache_dir: Path = Path(".rubric-judge-cache")
    cache_mode: CacheMode = CacheMode.read_write
    max_cost_usd: float | None = None
    replicates: int = 1
    max_image_side: int | None = None
    device: str = "auto"  # metrics: auto | cpu | cuda | mps
    max_unreachable: int = ExecutorSettings.max_unreachable  # connection failures in a row before the run stops


def score(options: ScoreOptions) -> int:
    """Run the job; returns the exit code (0 done, 1 stopped by budget or with failed calls)."""
    from rubric_judge.cli.output import print_problems, stderr, stdout
    from rubric_judge.judge.estimate import estimate_calls
    from rubric_judge.store.db import ResultStore, RunInfo, StorageError

    job = load_job(options.rubric, options.data, options.outputs)
    base = job.rubrics[0]
    # Opened only for a rubric with metrics: nothing to read or warn about otherwise.
    metric_cache = MetricCache(options.cache_dir, writes=options.cache_mode.writes) if base.metrics and options.cache_mode is not CacheMode.off else None
    # Metrics need only the samples: start them now, so they overlap planning and judging.
    metrics = _MetricsJob(base.metrics, job.samples, options.device, metric_cache) if base.metrics else None
    server = None
    if options.offline:
        from rubric_judge.judge.offline import OFFLINE_JUDGE_API_KEY, OFFLINE_JUDGE_MODEL, start_offline_judge

        server = start_offline_judge()
        # The offline judge is free; tell litellm's price map so costs read $0, not "unknown".
        free = dict.fromkeys(("input_cost_per_token", "output_cost_per_token", "cache_creation_input_token_cost", "cache_read_input_token_cost"), 0.0)
        litellm_module().register_model({OFFLINE_JUDGE_MODEL: {**free, "litellm_provider": "openai", "mode": "chat"}})
        judge_model, identity_base, transport_base, api_key = OFFLINE_JUDGE_MODEL, "builtin:offline", server.base_url, OFFLINE_JUDGE_API_KEY
        stdout.print("[bold yellow]Judge: the built-in OFFLINE judge[/] - deterministic image similarity, NOT a vision-language model; for demos and tests only.")
    else:
        judge_model = options.judge or base.judge.model
        transport_base = options.api_base
        # Credentials say who asks, not who answers: changing a password keeps the cache and run id.
        identity_base = url_without_userinfo(options.api_base) if options.api_base else None
        # A self-hosted server may want no key at all, but the OpenAI clients insist on one.
        api_key = os.environ.get("RUBRIC_JUDGE_API_KEY") or provider_api_key(judge_model)
        register_secret(api_key)  # before anything is printed or stored (redaction.py)
        register_url(options.api_base)
        api_key = api_key or (NO_KEY if options.api_base else None)
    try:
        # The offline judge is there to run the whole real path, so `auto` takes it through litellm.
        requested = "litellm" if options.offline and options.transport == "auto" else options.transport
        transport = resolve_transport(requested, judge_model, transport_base)
        if not options.offline:
            stdout.print(f"Judge: [bold]{judge_model}[/]" + (f" at {redact_url(options.api_base)}" if options.api_base else "")
                         + f" [dim](transport: {transport})[/]")
        target = JudgeTarget(judge_model, identity_base, options.max_image_side)
        plan = build_plan(job.rubrics, job.samples, target, None, options.replicates)
        if plan.problems:
            print_problems(plan.problems)
            raise UserError("fix the problems above before scoring (nothing was judged or written)")
        cache = VerdictCache(options.cache_dir, options.cache_mode)
        calls = plan.calls
        uncached = [c for c in calls if cache.get(c.cache_key) is None]
        estimate = estimate_calls(uncached, judge_model) if uncached and not options.offline else None
        if options.max_cost_usd is not None and estimate is not None:
            if estimate.cost_usd is None:
                raise UserError(f"--max-cost given but {judge_model} has no price in litellm's map, so the cost cannot be estimated")
            if estimate.cost_usd > options.max_cost_usd:
                raise UserError(f"estimated cost ${estimate.cost_usd:.4f} for {len(uncached)} uncached calls exceeds --max-cost ${options.max_cost_usd}")
        stdout.print(f"{len(calls)} judge calls ({len(calls) - len(uncached)} cached), {len(plan.samples)} samples"
                     + (f", estimated ${estimate.cost_usd:.4f}" if estimate and estimate.cost_usd is not None else ""))
        settings = ExecutorSettings(
            concurrency=options.concurrency, requests_per_minute=options.rpm, timeout_s=options.timeout_s,
            api_key=api_key, max_cost_usd=options.max_cost_usd, api_base=transport_base, transport=transport,
            backoff_base_s=_backoff_base_s(), max_unreachable=options.max_unreachable,
        )
        config = {
            "data": str(options.data), "outputs": str(options.outputs), "replicates": options.replicates, "judge_api_base": redact_url(identity_base),
            "concurrency": options.concurrency, "transport": transport, "cache_mode": options.cache_mode.value, "batching": base.judge.mode.value,
            "temperature": base.judge.temperature, "offline_judge": options.offline,
        }
        store = ResultStore(options.db)
        run_id = store.begin_run(RunInfo(base, options.model_name, judge_model, identity_base, config))
        try:
            store.write_samples(run_id, plan.samples, options.replicates)
            progress = _execute(Executor(cache, settings), calls, store, run_id, metrics)
        except BaseException as exc:
            if isinstance(exc, StorageError):
                status, detail = "failed", exc.problems[0].message
            else:
                status, detail = "interrupted", "stopped (Ctrl-C or an error) before it finished; run the same command again to resume"
            # When storage itself failed these may fail too: the run then stays `running`,
            # which the next process to open the file reads as `interrupted`.
            with contextlib.suppress(StorageError):
                store.finish_run(run_id, status, detail)
            with contextlib.suppress(StorageError):
                store.close()
            raise
        finally:
            cache.close()
            if metric_cache is not None:
                metric_cache.close()
        if progress.judge_unreachable:
            status, detail = "failed", progress.judge_unreachable
        elif progress.budget_reached:
            status, detail = "stopped", "the --max-cost budget was reached"
        else:
            status, detail = "finished", None
        store.finish_run(run_id, status, detail)
        _print_summary(store, run_id, progress, judge_model, options.db)
        store.close()
        if progress.judge_unreachable:
            from rich.markup import escape

            stderr.print(f"[bold red]Stopped early:[/] {escape(progress.judge_unreachable)}. Nothing more was sent; check --api-base and "
                         "that the judge's server is up, then run the same command again (answers already paid for are cached).")
        return 0 if status == "finished" and not progress.errors else 1
    finally:
        if server is not None:
            server.stop()


class _MetricsJob:
    """The run's metrics, computed on a background thread from the start of the run: the judge
    waits on the network, the metrics on CPU/GPU, so the two overlap."""

    def __init__(self, specs, samples, device: str, cache: MetricCache | None):
        self.specs, self.samples, self.device, self.cache = specs, samples, device, cache
        self.groups = len(metric_groups(specs))
        self.done = 0
        self.on_group_done: Callable[[], None] | None = None  # set once a progress bar exists
        self.rows: list = []
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._work, name="metrics", daemon=True)
        self._thread.start()

    def _work(self) -> None:
        try:
            self.rows = compute_run_metrics(self.specs, self.samples, self.device, self.cache, self._group_done)
        except BaseException as exc:  # re-raised in the main thread after the judge calls are stored
            self.error = exc

    def _group_done(self, _: int) -> None:
        self.done += 1
        if self.on_group_done is not None:
            self.on_group_done()

    def wait(self) -> list:
        self._thread.join()
        if self.error is not None:
            raise self.error
        return self.rows


def _execute(executor: Executor, calls, store, run_id: str, metrics: _MetricsJob | None) -> Progress:
    from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn, TimeRemainingColumn
    from rich.progress import Progress as Bar

    progress = Progress()
    buffer: list[Outcome] = []
    last_flush = [time.monotonic()]

    def flush() -> None:
        # Taken out of the buffer before writing: a write that fails (disk full) is reported
        # once, not again by the final flush; its answers stay in the verdict cache.
        batch = buffer[:]
        buffer.clear()
        last_flush[0] = time.monotonic()
        if batch:
            store.write_outcomes(run_id, batch)

    def on_outcome(outcome: Outcome) -> None:
        buffer.append(outcome)
        if len(buffer) >= FLUSH_EVERY or time.monotonic() - last_flush[0] >= FLUSH_SECONDS:
            flush()

    from rubric_judge.cli.output import stdout

    with Bar(
        TextColumn("{task.description:8s}"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[stats]}"),
        TimeElapsedColumn(), TimeRemainingColumn(), console=stdout, transient=False,
    ) as bar:
        task = bar.add_task("judging", total=len(calls), stats="")
        if metrics is not None:
            metrics_task = bar.add_task("metrics", total=metrics.groups, completed=metrics.done, stats="metric groups")
            metrics.on_group_done = lambda: bar.update(metrics_task, completed=metrics.done)

        def show(_: Outcome) -> None:
            cost = f"${progress.cost_usd:.4f}" + ("+?" if progress.cost_unknown else "")
            stats = f"hits {progress.cache_hits}  errors {progress.errors}  tokens {progress.prompt_tokens + progress.completion_tokens:,}  {cost}"
            bar.update(task, completed=progress.done, stats=stats)

        progress.listeners.extend([on_outcome, show])
        try:
            executor.run(calls, progress)
        finally:
            flush()
        if metrics is not None:
            store.write_metrics(run_id, metrics.wait())
    return progress


def _print_summary(store, run_id: str, progress: Progress, judge_model: str, db: Path) -> None:
    from rich.table import Table

    from rubric_judge.cli.output import stdout

    rows = [r for r in store.leaderboard() if r["run_id"] == run_id]
    table = Table(title=f"Scores ({judge_model})", title_justify="left")
    for column in ("model", "dimension", "score", "accuracy", "samples", "excluded", "missing outputs", "unscored verdicts"):
        table.add_column(column, justify="left" if column in ("model", "dimension") else "right")
    for row in rows:
        table.add_row(
            row["model_name"], row["dimension"], _fmt(row["score"]), _fmt(row["accuracy_rate"]), str(row["samples_scored"]),
            str(row["samples_excluded"]), str(row["missing_outputs"]), str(row["unscored_verdicts"]),
        )
    stdout.print(table)
    metric_rows = store.metric_summary(run_id)
    if metric_rows:
        metrics = Table(title="Metrics", title_justify="left")
        for column in ("metric", "mean", "accuracy", "ok", "missing outputs", "not computed", "why not computed"):
            metrics.add_column(column, justify="left" if column in ("metric", "why not computed") else "right", overflow="fold")
        for row in metric_rows:
            metrics.add_row(row["metric"], _fmt(row["mean_value"]), _fmt(row["accuracy_rate"]), str(row["samples_ok"]),
                            str(row["missing_outputs"]), str(row["not_computed"]), _first_sentence(row["example_problem"]))
        stdout.print(metrics)
    cost = f"${progress.cost_usd:.4f}" + (" (some calls had no known price)" if progress.cost_unknown else "")
    stdout.print(f"{progress.done} calls: {progress.cache_hits} from cache, {progress.errors} failed; "
                 f"{progress.prompt_tokens:,} prompt + {progress.completion_tokens:,} completion tokens paid, {cost}")
    if progress.budget_reached:
        stdout.print("[yellow]Stopped: the --max-cost budget was reached; re-run with a higher budget to finish (cached calls are free).[/]")
    stdout.print(f"Results in {db} (run {run_id}); try: rubric-judge query \"SELECT * FROM task_scores\" --db {db}")


def _first_sentence(text: str | None) -> str:
    if not text:
        return ""
    head, dot, rest = text.partition(". ")
    return head + (". (full text: metric_values.detail)" if rest else dot)


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def _backoff_base_s() -> float:
    """First retry delay (doubling per attempt); RUBRIC_JUDGE_BACKOFF_BASE_S overrides it (tests use ~0.01)."""
    configured = os.environ.get("RUBRIC_JUDGE_BACKOFF_BASE_S")
    if not configured:
        return ExecutorSettings.backoff_base_s
    try:
        value = float(configured)
    except ValueError:
        raise UserError(f"RUBRIC_JUDGE_BACKOFF_BASE_S must be a number of seconds, not {configured!r}") from None
    if value < 0:
        raise UserError(f"RUBRIC_JUDGE_BACKOFF_BASE_S must not be negative, not {configured!r}")
    return value
