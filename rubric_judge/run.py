"""The score pipeline: load and plan -> cache/judge -> DuckDB, for the CLI, notebooks and servers.

`score()` and `score_async()` take keyword arguments named like `rubric-judge score`'s options,
report progress through one callback (`on_progress`, called with the events below; the CLI draws
rich bars from them, the library default is silence) and return a `RunResult`. `score()` also
works inside a running event loop (a Jupyter cell): it then runs on a thread of its own.

Outcomes are written to the database as they arrive (in small batches), and every validated
answer is in the verdict cache before it is written, so a run killed at any point resumes by
running the same call again: cached calls cost nothing and the run's rows are replaced.
"""

from __future__ import annotations

import asyncio
import concurrent.futures  # asyncio imports it anyway
import contextlib
import os
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rubric_judge.cache.verdicts import CacheMode, VerdictCache
from rubric_judge.errors import Location, Problem, UserError, warn
from rubric_judge.judge.batch_records import BatchUpdate  # a progress event of `score --batch`
from rubric_judge.judge.executor import Executor, ExecutorSettings, Outcome, Progress, backoff_base_s
from rubric_judge.judge.transport import NO_KEY, provider_api_key, resolve_transport
from rubric_judge.planning.compile import (
    JudgeTarget,
    SamplePlan,
    build_plan,
    image_header_problems,
    match_rubrics,
    outline_sample,
    plan_samples,
)
from rubric_judge.planning.job import Job, load_job
from rubric_judge.planning.probe import PROBES, check_probe, probed_plan, swapped_rubrics
from rubric_judge.planning.selection import SampleSelection, select_samples
from rubric_judge.planning.target import OFFLINE  # judge="offline": the built-in deterministic judge (not a VLM)
from rubric_judge.redaction import redact_url, register_secret, register_url, url_without_userinfo
from rubric_judge.store.panel import PANEL_RULES

if TYPE_CHECKING:
    from rubric_judge.metrics import MetricCache
    from rubric_judge.store.results import Results

# Outcomes are written to the database once a second (an interrupted run shows what was judged
# until then), or at FLUSH_EVERY waiting outcomes, which bounds the memory they hold. A write
# costs 35-45 ms whatever its size (a few rows or a hundred): on the database's own thread, so
# the event loop is not held, but still CPU taken from judging at each write.
FLUSH_EVERY = 1000
FLUSH_SECONDS = 1.0
NO_JUDGE = "none"  # judge model and transport of a run of a metrics-only rubric


# Progress events, in the order a run emits them. Metrics events come from the metrics thread.
# A panel or a probe emits SubRun, then a plain run's events, once for each run it makes.
@dataclass(frozen=True)
class SubRun:
    """A run of a judge panel's member, or a bias probe, begins (its own events follow).

    Attributes:
        role: panel_member | probe.
        label: the member's judge, or the probe's kind.
        index, count: this run's place among the runs of its kind (1-based).
    """

    role: str
    label: str
    index: int
    count: int


@dataclass(frozen=True)
class JudgeChosen:
    """Which judge answers, and how requests reach it (api_base without credentials)."""

    model: str
    api_base: str | None
    transport: str
    offline: bool


@dataclass(frozen=True)
class Planned:
    """How many calls the run makes, how many the cache already answers, the estimate.

    Planning streams into judging, so a run emits this first when judging starts
    (`complete=False`: the counts so far; later samples are still being prepared) and again
    with the final counts once every sample is planned (`complete=True`). A run with a cost
    limit plans everything first (the estimate must be known before any call) and emits only
    the complete one.
    """

    calls: int
    cached: int
    samples: int
    estimated_cost_usd: float | None
    metric_groups: int
    metric_groups_done: int
    complete: bool = True
    batch_price: bool = False  # the estimate is at the provider's batch price (score --batch)


@dataclass(frozen=True)
class CallsProgress:
    """After each finished judge call (answered, cached, failed or skipped)."""

    done: int
    total: int
    cache_hits: int
    errors: int
    tokens: int
    cost_usd: float
    cost_unknown: bool


@dataclass(frozen=True)
class MetricsProgress:
    """After each metric group (one model load and its batch) is computed."""

    done: int
    total: int


# How a run that judged everything it was asked to ends: over the whole manifest, or a selection.
COMPLETE = ("finished", "partial")

ScoreEvent = SubRun | JudgeChosen | Planned | CallsProgress | MetricsProgress | BatchUpdate
ProgressCallback = Callable[[ScoreEvent], None]


@dataclass(frozen=True)
class RunResult:
    """What one `score` did.

    Attributes:
        run_id: the run's id in the results database.
        status: finished | partial (finished, over the samples chosen with `limit`/`samples`) |
            stopped (cost budget) | failed (judge unreachable) | interrupted | submitted (calls wait in
            provider batches, `batch_wait=False`: run the same call again to collect them).
        status_detail: why a run that did not finish stopped, or which samples a partial run
            scored; None when finished.
        db: the results database.
        model, judge_model, transport: what was scored, by which judge, over which transport.
        samples: samples scored (all of the manifest's unless `limit`/`samples` chose some).
        calls, cache_hits: judge calls, and those answered from the verdict cache.
        failed_calls: calls with no valid answer (error or unscored); their verdicts are unscored, never "not met".
        unscored_calls: of those, calls the judge answered but never validly.
        prompt_tokens, completion_tokens, cost_usd: what this run paid (cache hits cost nothing).
        cost_unknown: some paid call's model has no known price, so cost_usd is a lower bound.
        role: run | panel | panel_member | probe.
        members: a panel's member runs, in the order given; their totals add up to the panel's.
        probe: the bias probe run of this run (`probe=`), when one was made.
        scores: the run's `leaderboard` rows ('overall' first), as the database had them when the run ended.
        metric_scores: the run's `metric_summary` rows (one per metric); empty without metrics.
    """

    run_id: str
    status: str
    status_detail: str | None
    db: Path
    model: str
    judge_model: str
    transport: str
    samples: int
    calls: int
    cache_hits: int
    failed_calls: int
    unscored_calls: int
    prompt_tokens: int
    completion_tokens: int
    cost_usd: float
    cost_unknown: bool
    role: str = "run"
    members: tuple[RunResult, ...] = ()
    probe: RunResult | None = None
    scores: tuple[Mapping[str, Any], ...] = ()
    metric_scores: tuple[Mapping[str, Any], ...] = ()

    @property
    def exit_code(self) -> int:
        """The CLI's exit code: 0 when finished (or partial) with every call answered (the probe's too), else 1."""
        # `submitted`: the batches are in (score --batch --no-wait); not a failure of the command.
        ok = self.status in (*COMPLETE, "submitted") and not self.failed_calls
        return 0 if ok and (self.probe is None or self.probe.exit_code == 0) else 1

    def results(self) -> Results:
        """The results database this run wrote, as DataFrames (`open_results(self.db)`)."""
        from rubric_judge.store.results import open_results

        return open_results(self.db)


@dataclass(frozen=True)
class ScoreOptions:
    """`score`'s keyword arguments, checked and with defaults filled in."""

    rubric: Path
    data: Path
    outputs: Path
    model: str
    judge: str | None = None
    # A judge panel: two or more judges and how their verdicts combine (store/panel.py).
    judges: tuple[str, ...] = ()
    panel: str | None = None
    probe: str | None = None  # a bias probe run after the run (planning/probe.py), e.g. swap-images
    api_base: str | None = None
    transport: str = "auto"  # auto | litellm | direct (judge/transport.py)
    concurrency: int = 16
    rpm: float | None = None
    timeout: float = 120.0
    db: Path = Path("rubric-judge.duckdb")
    cache_dir: Path = Path(".rubric-judge-cache")
    cache: CacheMode = CacheMode.read_write
    max_cost: float | None = None
    replicates: int = 1
    max_image_side: int | None = None
    device: str = "auto"  # metrics: auto | cpu | cuda | mps
    max_unreachable: int = ExecutorSettings.max_unreachable  # connection failures in a row before the run stops
    limit: int | None = None  # score only the first N samples (after `samples`)
    samples: tuple[str, ...] = ()  # score only these sample ids
    selection: SampleSelection | None = None  # what `limit`/`samples` chose, filled in by run_score
    # Provider batch API (judge/batch.py): uncached calls go in batches at the batch price.
    batch: bool = False
    batch_wait: bool = True  # poll until the batches end; False: submit (or poll once) and return `submitted`
    provider_batch_size: int | None = None  # requests per batch input file (default: the provider's limit)
    batch_invalid: str = "reask"  # a batch answer that fails validation: reask (live) | unscored

    @property
    def offline(self) -> bool:
        return self.judge == OFFLINE


def score(
    rubric: str | Path,
    *,
    data: str | Path,
    outputs: str | Path,
    model: str,
    judge: str | Sequence[str] | None = None,
    panel: str | None = None,
    probe: str | None = None,
    api_base: str | None = None,
    transport: str = "auto",
    concurrency: int = 16,
    rpm: float | None = None,
    timeout: float = 120.0,
    db: str | Path | None = None,
    cache_dir: str | Path | None = None,
    cache: str | CacheMode = "read-write",
    max_cost: float | None = None,
    replicates: int = 1,
    max_image_side: int | None = None,
    device: str = "auto",
    max_unreachable: int = ExecutorSettings.max_unreachable,
    limit: int | None = None,
    samples: Sequence[str] | None = None,
    batch: bool = False,
    batch_wait: bool = True,
    provider_batch_size: int | None = None,
    batch_invalid: str = "reask",
    on_progress: ProgressCallback | None = None,
) -> RunResult:
    """Judge a model's outputs against a rubric and store every call and verdict in DuckDB.

    Re-running the same call is free (answers come from the verdict cache) and replaces the
    run's rows; after a crash, run it again to resume. Works from scripts and inside a running
    event loop (a Jupyter cell), where it runs on a thread of its own.

    Args:
        rubric: a rubric file, a directory of task rubrics, or `builtin:medgen/holistic-with-gt.yaml`.
        data: the dataset manifest (JSONL, one sample per line).
        outputs: the model's outputs: a directory of <id>.png/<id>.txt files or a JSONL file.
        model: name of the model under test, as the leaderboard shows it.
        judge: litellm model string of the judge (default: the rubric's); "offline" for the
            built-in deterministic judge (not a VLM; demos and tests). A list of two or more
            judges makes a panel (give `panel`); each member is stored as its own run.
        panel: how a panel's verdicts combine: majority | mean | min (store/panel.py has the
            rules, ties and unscored members included).
        probe: "swap-images" judges every call again with its images in the opposite order and
            stores that as a probe run of this run (role 'probe', parent_run_id = this run).
        api_base: base URL of an OpenAI-compatible server (vLLM, Ollama, ...).
        transport: auto | litellm | direct (rubric-judge's own client for an OpenAI-compatible api_base).
        concurrency: judge calls in flight at once.
        rpm: requests-per-minute limit.
        timeout: seconds before one judge request is abandoned and retried.
        db: results database (default: $RUBRIC_JUDGE_DB, else ./rubric-judge.duckdb).
        cache_dir: verdict cache (default: $RUBRIC_JUDGE_CACHE_DIR, else ~/.cache/rubric-judge).
        cache: read-write | read-only | refresh | off.
        max_cost: refuse to start if the estimate exceeds this many USD; stop when spend reaches it.
        replicates: judge every call this many times (the replicate index is in the cache key).
        max_image_side: downscale images whose longer side exceeds this many pixels.
        device: where metrics run: auto | cpu | cuda | mps.
        max_unreachable: stop after this many attempts in a row could not connect to the judge; 0 = never.
        limit: score only the first N samples of the manifest (of those in `samples`, if given).
        samples: score only the samples with these ids. Either makes a run that leaves samples
            out `partial`: the leaderboard says so, and `compare` refuses it unless asked.
        batch: send the calls the cache cannot answer through the provider's batch API (half the
            price, answered within 24 h; an OpenAI-compatible `api_base` with /files and
            /batches). Batches are recorded in `db`: running the same call again polls them
            and stores their answers, and never submits the same calls twice.
        batch_wait: wait for the batches to end (polling); False returns at once with status
            `submitted` (run the same call again to collect).
        provider_batch_size: at most this many requests per batch (default: 50,000, OpenAI's limit).
        batch_invalid: what becomes of a batch answer that fails validation: reask (asked live) | unscored.
        on_progress: called with each progress event (JudgeChosen, Planned, CallsProgress, MetricsProgress, BatchUpdate).

    Returns:
        A `RunResult`; its `status` says whether the run finished. A panel's has its members'
        results in `members`; a probed run's has the probe's in `probe`.

    Raises:
        UserError: bad input (rubric, data, outputs, options; a `samples` id not in the manifest), a storage failure, or a cost
            estimate over `max_cost`; nothing is judged or written for bad input.
    """
    options = _options(rubric, data, outputs, model, judge, panel, probe, api_base, transport, concurrency, rpm, timeout, db, cache_dir, cache,
                       max_cost, replicates, max_image_side, device, max_unreachable, limit, samples,
                       batch=batch, batch_wait=batch_wait, provider_batch_size=provider_batch_size, batch_invalid=batch_invalid)
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(run_score(options, on_progress))
    # Inside a running event loop (a notebook cell): asyncio.run would refuse, so run on a thread.
    with concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="rubric-judge-score") as pool:
        return pool.submit(asyncio.run, run_score(options, on_progress)).result()


async def score_async(
    rubric: str | Path,
    *,
    data: str | Path,
    outputs: str | Path,
    model: str,
    judge: str | Sequence[str] | None = None,
    panel: str | None = None,
    probe: str | None = None,
    api_base: str | None = None,
    transport: str = "auto",
    concurrency: int = 16,
    rpm: float | None = None,
    timeout: float = 120.0,
    db: str | Path | None = None,
    cache_dir: str | Path | None = None,
    cache: str | CacheMode = "read-write",
    max_cost: float | None = None,
    replicates: int = 1,
    max_image_side: int | None = None,
    device: str = "auto",
    max_unreachable: int = ExecutorSettings.max_unreachable,
    limit: int | None = None,
    samples: Sequence[str] | None = None,
    batch: bool = False,
    batch_wait: bool = True,
    provider_batch_size: int | None = None,
    batch_invalid: str = "reask",
    on_progress: ProgressCallback | None = None,
) -> RunResult:
    """`score` as a coroutine, judging on the caller's event loop; same arguments and result."""
    options = _options(rubric, data, outputs, model, judge, panel, probe, api_base, transport, concurrency, rpm, timeout, db, cache_dir, cache,
                       max_cost, replicates, max_image_side, device, max_unreachable, limit, samples,
                       batch=batch, batch_wait=batch_wait, provider_batch_size=provider_batch_size, batch_invalid=batch_invalid)
    return await run_score(options, on_progress)


def _options(rubric, data, outputs, model, judge, panel, probe, api_base, transport, concurrency, rpm, timeout, db, cache_dir, cache,
             max_cost, replicates, max_image_side, device, max_unreachable, limit=None, samples=None,
             batch=False, batch_wait=True, provider_batch_size=None, batch_invalid="reask") -> ScoreOptions:
    from rubric_judge.cache.verdicts import default_cache_dir
    from rubric_judge.store.db import default_db_path

    try:
        cache_mode = CacheMode(cache)
    except ValueError:
        raise UserError(Problem(Location(None), f"must be one of {', '.join(m.value for m in CacheMode)}, not {cache!r}", field="cache")) from None
    checked = (("concurrency", concurrency, 1), ("replicates", replicates, 1), ("timeout", timeout, 1), ("max_unreachable", max_unreachable, 0),
               ("limit", 1 if limit is None else limit, 1), ("provider_batch_size", 1 if provider_batch_size is None else provider_batch_size, 1))
    for name, value, least in checked:
        if value < least:
            raise UserError(Problem(Location(None), f"must be at least {least}, not {value!r}", field=name))
    if batch_invalid not in ("reask", "unscored"):
        raise UserError(Problem(Location(None), f"must be reask or unscored, not {batch_invalid!r}", field="batch_invalid"))
    judges = _judges(judge, panel, probe)
    return ScoreOptions(
        rubric=Path(rubric), data=Path(data), outputs=Path(outputs), model=model, judge=judges[0] if len(judges) == 1 else None,
        judges=judges if len(judges) > 1 else (), panel=panel, probe=probe, api_base=api_base, transport=transport,
        concurrency=concurrency, rpm=rpm, timeout=timeout, db=Path(db) if db is not None else default_db_path(),
        cache_dir=Path(cache_dir) if cache_dir is not None else default_cache_dir(), cache=cache_mode, max_cost=max_cost,
        replicates=replicates, max_image_side=max_image_side, device=device, max_unreachable=max_unreachable,
        limit=limit, samples=(samples,) if isinstance(samples, str) else tuple(samples or ()),
        batch=batch, batch_wait=batch_wait, provider_batch_size=provider_batch_size, batch_invalid=batch_invalid,
    )


def _judges(judge: str | Sequence[str] | None, panel: str | None, probe: str | None) -> tuple[str, ...]:
    """The judges asked for, checked against `panel` and `probe`: one (or none: the rubric's) for
    a plain run, two or more for a panel."""
    judges = (judge,) if isinstance(judge, str) else tuple(judge or ())
    if len(judges) > 1:
        if panel is None:
            raise UserError(Problem(Location(None), f"{len(judges)} judges given, but not how their verdicts combine", field="panel",
                                    fix=f"add --panel {'|'.join(PANEL_RULES)}, or give one --judge"))
        repeated = sorted({j for j in judges if judges.count(j) > 1})
        if repeated:
            raise UserError(Problem(Location(None), f"a panel lists {', '.join(repeated)} more than once; its members would be the same run",
                                    field="judge", fix="give each judge once (use --replicates to ask one judge several times)"))
        if probe is not None:
            raise UserError(Problem(Location(None), "a probe of a judge panel is not supported", field="probe",
                                    fix="probe each judge in a run of its own (one --judge with --probe)"))
    elif panel is not None:
        raise UserError(Problem(Location(None), f"a panel needs two or more judges, got {len(judges)}", field="panel",
                                fix="give --judge once per member, or leave out --panel"))
    if panel is not None and panel not in PANEL_RULES:
        raise UserError(Problem(Location(None), f"must be one of {', '.join(PANEL_RULES)}, not {panel!r}", field="panel"))
    if probe is not None and probe not in PROBES:
        raise UserError(Problem(Location(None), f"must be one of {', '.join(PROBES)}, not {probe!r}", field="probe"))
    return judges


@dataclass(frozen=True)
class _Link:
    """How a run relates to others (the runs table's role, parent_run_id and probe)."""

    role: str = "run"
    parent_run_id: str | None = None
    probe: str | None = None


async def run_score(options: ScoreOptions, on_progress: ProgressCallback | None = None) -> RunResult:
    """The pipeline behind `score` and `score_async`, for callers that built `ScoreOptions`."""
    emit = on_progress or (lambda event: None)
    # Loading and planning are CPU work (reading and hashing every image): off the event loop.
    job = await asyncio.to_thread(load_job, options.rubric, options.data, options.outputs)
    # Every run knows its manifest's size (the leaderboard's samples_total), also one that ends
    # before its samples are written; `limit`/`samples` may choose some of them.
    job, selection = select_samples(job, options.data, options.limit, options.samples)
    options = replace(options, selection=selection)
    if options.probe:
        check_probe(options.probe, job.rubrics, options.rubric)  # before anything is paid for
    if options.judges:
        return await _run_panel(options, job, emit)
    result = await _run_judge(options, job, emit)
    if options.probe is None or result.status not in COMPLETE:
        return result  # a run that stopped has nothing sound to probe; its status says why
    emit(SubRun("probe", options.probe, 1, 1))
    probe_options = replace(options, max_cost=_left(options.max_cost, result.cost_usd))
    probe = await _run_judge(probe_options, job, emit, _Link("probe", result.run_id, options.probe), with_metrics=False)
    return replace(result, probe=probe)


def _complete_status(options: ScoreOptions) -> tuple[str, str | None]:
    """Status and detail of a run that judged everything it was asked to: `partial` when
    `limit`/`samples` left samples of the manifest out, so its scores are not the dataset's."""
    selection = options.selection
    if selection is None or not selection.partial:
        return "finished", None
    return "partial", (f"scored {selection.describe()}; run without --limit/--sample to score every sample "
                       "(the calls judged so far are cached and cost nothing again)")


def _manifest_samples(options: ScoreOptions) -> int | None:
    """The manifest's sample count (the leaderboard's `samples_total`): also what a run over part
    of it, or one that failed before writing its samples, is measured against."""
    selection = options.selection
    return selection.manifest_samples if selection is not None else None


def _suite(options: ScoreOptions, rubrics):
    """The rubrics a run's content digest covers: the whole suite loaded, also when a selection
    left some task rubrics out (store/db.py RunInfo.rubric_digest)."""
    selection = options.selection
    return selection.suite if selection is not None and selection.suite else rubrics


def _with_selection(config: dict, options: ScoreOptions) -> dict:
    """The run's config, with the sample selection when one was made (`limit`, `samples`)."""
    selection = options.selection
    if selection is None or not selection.partial:
        return config
    return {**config, "limit": selection.limit, "samples": list(selection.ids), "samples_scored": list(selection.chosen)}


def _left(budget: float | None, spent: float) -> float | None:
    """What a cost budget leaves for the next run of a panel or probe."""
    return None if budget is None else max(0.0, budget - spent)


async def _run_panel(options: ScoreOptions, job: Job, emit: ProgressCallback) -> RunResult:
    """Each member judge as a run of its own (role panel_member), one after another, then the
    panel run (role panel) with the combined verdicts; the panel's totals are the members' sums.

    Members run one after another, each with the run's full concurrency: a member already keeps
    its judge as busy as --concurrency allows, progress reads one judge at a time, and each
    member's spend is known before the next one starts, so --max-cost holds for the panel.
    """
    from rubric_judge.store.db import ResultStore, RunInfo, StorageError
    from rubric_judge.store.panel import copy_rows, panel_label, write_panel_verdicts

    assert options.panel is not None
    base = job.rubrics[0]
    label = panel_label(options.panel, options.judges)
    identity_base = url_without_userinfo(options.api_base) if options.api_base else None
    config = {"data": str(options.data), "outputs": str(options.outputs), "replicates": options.replicates, "judge_api_base": redact_url(identity_base),
              "panel": options.panel, "judges": list(options.judges), "cache_mode": options.cache.value, "batching": base.judge.mode.value}
    panel_info = RunInfo(base, options.model, label, identity_base, _with_selection(config, options), role="panel",
                         manifest_samples=_manifest_samples(options), rubrics=_suite(options, job.rubrics))
    store = ResultStore(options.db)
    panel_id = store.begin_run(panel_info)
    store.close()
    members: list[RunResult] = []
    try:
        for index, judge in enumerate(options.judges, start=1):
            emit(SubRun("panel_member", judge, index, len(options.judges)))
            member_options = replace(options, judge=judge, judges=(), panel=None,
                                     max_cost=_left(options.max_cost, sum(m.cost_usd for m in members)))
            # Metrics do not depend on the judge: the first member computes them, the panel copies them.
            member = await _run_judge(member_options, job, emit, _Link("panel_member", panel_id), with_metrics=index == 1)
            members.append(member)
            if member.status == "stopped":  # the budget is spent: the members after it would be skipped call by call
                break
    except BaseException as exc:
        detail = exc.problems[0].message if isinstance(exc, StorageError) else "stopped before every member finished; run the same command again to resume"
        with contextlib.suppress(UserError):
            store = ResultStore(options.db)
            store.finish_run(panel_id, "failed" if isinstance(exc, StorageError) else "interrupted", detail)
            store.close()
        raise
    # The panel finished only if every member did; otherwise it reads as its first unfinished member.
    unfinished = [(judge, m) for judge, m in zip(options.judges, members, strict=False) if m.status not in COMPLETE]
    status, detail = _complete_status(options)
    if unfinished:
        judge, first = unfinished[0]
        status, detail = first.status, f"panel member {judge}: {first.status_detail}"
        skipped = options.judges[len(members):]
        if skipped:
            detail += f"; members {', '.join(skipped)} did not run"
    store = ResultStore(options.db)
    try:
        copy_rows(store, members[0].run_id, panel_id)
        write_panel_verdicts(store, panel_id, [(m.run_id, m.judge_model) for m in members], options.panel, base.verdict.kind)
        store.finish_run(panel_id, status, detail)
        scores, metric_scores = _summary(store, panel_id)
    finally:
        store.close()
    return RunResult(
        run_id=panel_id, status=status, status_detail=detail, db=options.db, model=options.model, judge_model=label,
        transport=",".join(dict.fromkeys(m.transport for m in members)), samples=len(job.samples),
        calls=sum(m.calls for m in members), cache_hits=sum(m.cache_hits for m in members), failed_calls=sum(m.failed_calls for m in members),
        unscored_calls=sum(m.unscored_calls for m in members), prompt_tokens=sum(m.prompt_tokens for m in members),
        completion_tokens=sum(m.completion_tokens for m in members), cost_usd=sum(m.cost_usd for m in members),
        cost_unknown=any(m.cost_unknown for m in members), role="panel", members=tuple(members), scores=scores, metric_scores=metric_scores,
    )


def _summary(store, run_id: str) -> tuple[tuple[Mapping[str, Any], ...], tuple[Mapping[str, Any], ...]]:
    """The run's leaderboard and metric rows, read-only views of them for the immutable RunResult."""
    from types import MappingProxyType

    return (tuple(MappingProxyType(row) for row in store.run_scores(run_id)),
            tuple(MappingProxyType(row) for row in store.metric_summary(run_id)))


async def _run_judge(options: ScoreOptions, job: Job, emit: ProgressCallback, link: _Link = _Link(), with_metrics: bool = True) -> RunResult:
    """One judge's run: plan, judge (cache first), store; a probe run judges the probed calls."""
    from rubric_judge.store.db import RunInfo, StorageError

    rubrics = swapped_rubrics(job.rubrics) if link.probe == "swap-images" else job.rubrics
    base = rubrics[0]
    specs = base.metrics if with_metrics else []
    if specs:  # torch and the metric stack only for a rubric with metrics
        from rubric_judge.metrics import MetricCache
    # Opened only for a rubric with metrics: nothing to read or warn about otherwise.
    metric_cache = MetricCache(options.cache_dir, writes=options.cache.writes) if specs and options.cache is not CacheMode.off else None
    # Metrics need only the samples: start them now, so they overlap planning and judging.
    metrics = _MetricsJob(specs, job.samples, options.device, metric_cache, emit) if specs else None
    server = None
    if not base.judged:
        # A metrics-only rubric: no judge, no server, no calls.
        judge_model, identity_base, transport_base, api_key = NO_JUDGE, None, None, None
    elif options.offline:
        from rubric_judge.judge.offline import OFFLINE_JUDGE_API_KEY, start_offline_judge
        from rubric_judge.planning.estimate import register_price
        from rubric_judge.planning.target import OFFLINE_IDENTITY_BASE, OFFLINE_JUDGE_MODEL

        server = start_offline_judge()
        register_price(OFFLINE_JUDGE_MODEL, 0.0, 0.0)  # the offline judge is free: costs read $0, not "unknown"
        judge_model, identity_base, transport_base, api_key = OFFLINE_JUDGE_MODEL, OFFLINE_IDENTITY_BASE, server.base_url, OFFLINE_JUDGE_API_KEY
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
        transport = resolve_transport(requested, judge_model, transport_base) if base.judged else NO_JUDGE
        if base.judged:
            emit(JudgeChosen(judge_model, redact_url(options.api_base), transport, options.offline))
        target = JudgeTarget(judge_model, identity_base, options.max_image_side)
        cache = VerdictCache(options.cache_dir, options.cache)
        planner = _Planner(rubrics, job, target, options, link, metrics, emit, cache)
        try:
            await planner.check()
            if options.max_cost is not None or (options.batch and base.judged):
                await planner.plan_all()  # the estimate (the batches' calls) must be known before the first call
        except BaseException:
            cache.close()
            raise
        settings = ExecutorSettings(
            concurrency=options.concurrency, requests_per_minute=options.rpm, timeout_s=options.timeout,
            api_key=api_key, max_cost_usd=options.max_cost, api_base=transport_base, transport=transport,
            backoff_base_s=backoff_base_s(), max_unreachable=options.max_unreachable,
        )
        config = {
            "data": str(options.data), "outputs": str(options.outputs), "replicates": options.replicates, "judge_api_base": redact_url(identity_base),
            "concurrency": options.concurrency, "transport": transport, "cache_mode": options.cache.value, "batching": base.judge.mode.value,
            "temperature": base.judge.temperature, "offline_judge": options.offline,
        }
        # The results database opens (a new file: seconds of DDL on a slow disk) while the
        # first calls are judged; their outcomes wait in memory until it is ready. A database
        # that cannot be opened stops the run with those answers in the verdict cache.
        info = RunInfo(base, options.model, judge_model, identity_base, _with_selection(config, options), link.role,
                       link.parent_run_id, link.probe, manifest_samples=_manifest_samples(options),
                       rubrics=rubrics if link.probe else _suite(options, rubrics))
        batches = None
        if options.batch and base.judged:
            try:
                batches = await _submit_and_poll(options, planner, cache, info.run_id, judge_model, transport_base, identity_base, api_key, emit)
            except BaseException:
                cache.close()
                raise
        progress = Progress(first_request=planner.first_request, wave_sent=planner.wave_sent, first_outcome=planner.first_outcome)
        opening = _StoreOpening(options.db, info, planner.outline, options.replicates, after=planner.first_outcome,
                                checked=planner.inputs_checked, inputs_ok=lambda: not planner.input_problems and planner.input_error is None)
        try:
            await _execute(Executor(cache, settings, batches.decided if batches else None), planner, opening, metrics, emit, progress)
            store, run_id = opening.store, opening.run_id
            # The outline written at the start did not know which output images are unreadable:
            # those samples' rows again, now with the output absent (and, when that leaves the
            # sample a missing output, its criteria unjudged).
            if unreadable := [sample_plan for sample_plan in planner.samples if sample_plan.unreadable_outputs]:
                store.write_samples(run_id, unreadable, options.replicates)
            if batches is not None:  # their answers are in the run's rows now: later runs need not poll them
                batches.ledger_for(store).mark_collected([r.batch_id for r in batches.result.batches if r.terminal])
        except BaseException as exc:
            if isinstance(exc, StorageError):
                status, detail = "failed", exc.problems[0].message
            else:
                status, detail = "interrupted", "stopped (Ctrl-C or an error) before it finished; run the same command again to resume"
            await opening.abandon(status, detail)
            raise
        finally:
            cache.close()
            if metric_cache is not None:
                metric_cache.close()
        if planner.problems:
            # An image that passed the header check but cannot be decoded: its sample was not judged.
            first = planner.problems[0]
            status, detail = "failed", (f"{len(planner.problems)} sample(s) could not be planned and were not judged, e.g. "
                                        f"{first.location}: {first.message}; fix them and run again (judged calls are cached)")
        elif progress.judge_unreachable:
            status, detail = "failed", progress.judge_unreachable
        elif progress.budget_reached:
            status, detail = "stopped", "the cost budget (max_cost) was reached; run again with a higher one to finish (cached calls are free)"
        elif batches is not None and batches.result.pending:
            pending = batches.result.pending
            status, detail = "submitted", (f"{sum(len(r.custom_ids) for r in pending)} call(s) wait in batch(es) {', '.join(r.batch_id for r in pending)}; "
                                           "run the same command again to collect their answers (it polls them, never submits them twice)")
        else:
            status, detail = _complete_status(options)
        store.finish_run(run_id, status, detail)
        scores, metric_scores = _summary(store, run_id)
        store.close()
        return RunResult(
            run_id=run_id, status=status, status_detail=detail, db=options.db, model=options.model, judge_model=judge_model, transport=transport,
            samples=len(job.samples), calls=progress.done, cache_hits=progress.cache_hits, failed_calls=progress.errors,
            unscored_calls=progress.unscored, prompt_tokens=progress.prompt_tokens, completion_tokens=progress.completion_tokens,
            cost_usd=progress.cost_usd, cost_unknown=progress.cost_unknown, role=link.role, scores=scores, metric_scores=metric_scores,
        )
    finally:
        if server is not None:
            server.stop()


@dataclass(frozen=True)
class _Batches:
    """The batch phase's result, and how to reach the run's batch ledger again."""

    result: Any  # judge.batch.BatchResult
    decided: Mapping[str, Outcome]
    run_id: str
    identity_base: str | None

    def ledger_for(self, store):
        from rubric_judge.store.batches import BatchLedgerDB

        return BatchLedgerDB(store, self.run_id, self.identity_base)


async def _submit_and_poll(options: ScoreOptions, planner: _Planner, cache: VerdictCache, run_id: str, judge_model: str,
                           api_base: str | None, identity_base: str | None, api_key: str | None, emit: ProgressCallback) -> _Batches:
    """`score --batch`: the planned calls the cache cannot answer go to the provider's batch API
    (judge/batch.py); the run's batches are kept in the results database, polled, and their
    answers handed to the executor as decided outcomes."""
    from rubric_judge.judge.batch import batch_provider, decided_for, run_batches
    from rubric_judge.store.batches import BatchLedgerDB
    from rubric_judge.store.db import ResultStore

    calls = [call for sample in planner.samples_planned for call in sample.calls]
    provider = batch_provider(judge_model, api_base, api_key, max(options.timeout, 60.0), options.provider_batch_size)  # a UserError first
    store = ResultStore(options.db)
    try:
        ledger = BatchLedgerDB(store, run_id, identity_base)
        async with provider as api:
            result = await run_batches(calls, api, ledger, cache, wait=options.batch_wait, invalid=options.batch_invalid, on_update=emit)
    finally:
        store.close()
    return _Batches(result, decided_for(result, calls), run_id, identity_base)


class _MetricsJob:
    """The run's metrics, computed on a background thread from the start of the run: the judge
    waits on the network, the metrics on CPU/GPU, so the two overlap."""

    def __init__(self, specs, samples, device: str, cache: MetricCache | None, emit: ProgressCallback):
        from rubric_judge.metrics import metric_groups

        self.specs, self.samples, self.device, self.cache, self.emit = specs, samples, device, cache, emit
        self.groups = len(metric_groups(specs))
        self.done = 0
        self.rows: list = []
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._work, name="metrics", daemon=True)
        self._thread.start()

    def _work(self) -> None:
        try:
            from rubric_judge.metrics import compute_run_metrics

            self.rows = compute_run_metrics(self.specs, self.samples, self.device, self.cache, self._group_done)
        except BaseException as exc:  # re-raised in the main thread after the judge calls are stored
            self.error = exc

    def _group_done(self, _: int) -> None:
        self.done += 1
        self.emit(MetricsProgress(self.done, self.groups))

    async def wait(self) -> list:
        await asyncio.to_thread(self._thread.join)
        if self.error is not None:
            raise self.error
        return self.rows


class _Planner:
    """The run's plan, streamed: checked up front (cheap), then compiled sample by sample on a
    thread pool while the executor judges the calls already planned.

    Problems that planning finds are handled in three tiers. Samples without a rubric stop the
    run with exit 2 before anything is judged or written. Every judged image's file, format and
    declared size (its header only) is checked on a thread of its own while the first calls are
    judged, so the first request does not wait for thousands of headers: at most one wave
    (`concurrency` calls) leaves before the check ends, and a problem there stops the run with
    exit 2 once those calls are answered (and cached), before anything is written to the
    database. An image that passes those checks but cannot be decoded, or a template that
    cannot render for one sample, is found while judging runs: that sample is not judged, the
    problem is kept in `problems`, and the run ends `failed` naming it (exit 1; the calls judged
    are cached).
    """

    def __init__(self, rubrics, job: Job, target: JudgeTarget, options: ScoreOptions, link: _Link, metrics, emit: ProgressCallback, cache: VerdictCache):
        self.rubrics, self.job, self.target, self.options, self.link = rubrics, job, target, options, link
        self.metrics, self.emit, self.cache = metrics, emit, cache
        self.pairs: list = []
        self.samples: list[SamplePlan] = []
        self.problems: list[Problem] = []
        self.calls = self.cached = 0
        self._hit_keys: set[str] = set()
        self._planned: list[SamplePlan] | None = None
        # Shared with the executor's Progress (see there): later samples are planned once the
        # first request has left, the header check waits for the first wave, and the database
        # for the first outcome.
        self.first_request = threading.Event()
        self.wave_sent = threading.Event()
        self.first_outcome = threading.Event()
        # The image header check (see the class docstring): set when it has ended, either way.
        self.inputs_checked = threading.Event()
        self.input_problems: list[Problem] = []
        self.input_error: BaseException | None = None
        self._inputs_future: asyncio.Future | None = None
        self.unreadable_outputs = 0  # output images that could not be read (see `_report_unreadable`)

    def record(self, outcome: Outcome) -> None:
        """A progress listener: the executor looks every call up in the cache, so the plan's
        cached count comes from its outcomes instead of a second lookup per call."""
        if outcome.cache_hit:
            self.cached += 1
            self._hit_keys.add(outcome.call.cache_key)

    async def check(self) -> None:
        """Match every sample to its rubric (a problem: UserError, nothing judged or written) and
        start the image header check on a thread of its own (`inputs_ok` waits for it)."""
        pairs, problems = match_rubrics(self.rubrics, self.job.samples)
        if problems:
            # Each problem names its sample and file; nothing has been judged or written yet.
            raise UserError([*problems, Problem(Location(None), "fix the problems above before scoring (nothing was judged or written)")])
        self.pairs = pairs
        loop = asyncio.get_running_loop()
        self._inputs_future = loop.create_future()
        if not self.rubrics[0].judged:
            self._inputs_checked(loop)
            return

        def check_headers() -> None:
            try:
                self.wave_sent.wait(_StoreOpening.FIRST_REQUEST_WAIT_S)
                self.input_problems = image_header_problems(pairs)
            except BaseException as exc:  # re-raised by inputs_ok, in the run's task
                self.input_error = exc
            finally:
                self._inputs_checked(loop)

        threading.Thread(target=check_headers, name="rubric-judge-headers", daemon=True).start()

    def outline(self) -> list[SamplePlan]:
        """Every sample's criteria, without its calls (no image read), for the database to show an
        interrupted run's coverage; built on the database's thread, off the first request's path."""
        return [outline_sample(rubric, sample) for rubric, sample in self.pairs]

    def _inputs_checked(self, loop: asyncio.AbstractEventLoop) -> None:
        # The event for the database's thread (never left waiting), the future for the run's task.
        self.inputs_checked.set()
        future = self._inputs_future

        def resolve() -> None:
            if future is not None and not future.done():
                future.set_result(None)

        with contextlib.suppress(RuntimeError):  # the loop has closed: nobody waits any more
            loop.call_soon_threadsafe(resolve)

    def release(self) -> None:
        """Let the work that waits for the first request, wave or outcome start now."""
        self.first_request.set()
        self.wave_sent.set()
        self.first_outcome.set()

    async def inputs_ok(self) -> bool:
        """Wait for the image header check; whether it found no problem. An unexpected error in
        the check is raised here."""
        if self._inputs_future is not None:
            await asyncio.shield(self._inputs_future)
        if self.input_error is not None:
            raise self.input_error
        return not self.input_problems

    def input_problems_error(self) -> UserError:
        """The header check's problems, for exit 2."""
        judged = f"; the {self.calls} call(s) judged before the check ended are in the verdict cache" if self.calls else ""
        return UserError([*self.input_problems,
                          Problem(Location(None), f"fix the problems above before scoring (nothing was written to the database{judged})")])

    async def plan_all(self) -> None:
        """Plan every sample before judging: for a cost limit, checked against the estimate."""
        self.release()  # no request leaves before the whole plan: nothing to wait for
        if not await self.inputs_ok():
            raise self.input_problems_error()
        plan = await asyncio.to_thread(build_plan, self.rubrics, self.job.samples, self.target, None, self.options.replicates)
        if self.link.probe is not None:
            plan = probed_plan(plan)
        if plan.problems:
            raise UserError([*plan.problems, Problem(Location(None), "fix the problems above before scoring (nothing was judged or written)")])
        for sample_plan in plan.samples:
            self._report_unreadable(sample_plan)
        self._report_unreadable_total()
        uncached = [c for c in plan.calls if self.cache.get(c.cache_key) is None]
        estimate = self._estimate(uncached)
        if estimate is not None and estimate.cost_usd is None and self.options.max_cost is not None:
            raise UserError(Problem(Location(None), f"given, but {self.target.model} has no price in litellm's map, so the cost cannot be estimated",
                                    field="max_cost", fix="leave out the cost limit, or use a judge model with a known price"))
        if estimate is not None and self.options.max_cost is not None and estimate.cost_usd > self.options.max_cost:
            raise UserError(Problem(Location(None), f"estimated cost ${estimate.cost_usd:.4f} for {len(uncached)} uncached calls exceeds "
                                    f"the limit of ${self.options.max_cost}", field="max_cost", fix="raise the limit, or score fewer samples"))
        self._planned = list(plan.samples)
        self._planned_cached = len(plan.calls) - len(uncached)
        self._final_estimate = estimate.cost_usd if estimate else None

    @property
    def samples_planned(self) -> list[SamplePlan]:
        """Every sample's plan, after `plan_all`."""
        assert self._planned is not None, "plan_all() first"
        return self._planned

    def _estimate(self, uncached):
        """The cost estimate of the uncached calls; None when there is nothing to estimate, or
        (without a cost limit) when the judge has no known price: litellm's token counter is
        then not worth its import."""
        from rubric_judge.planning.estimate import batch_price, estimate_calls, has_price

        if not uncached or self.options.offline or (self.options.max_cost is None and not has_price(self.target.model)):
            return None
        estimate = estimate_calls(uncached, self.target.model)
        if self.options.batch:  # score --batch pays the batch price (as `plan` shows it)
            estimate = replace(estimate, cost_usd=batch_price(self.target.model, estimate.prompt_tokens, estimate.completion_tokens))
        return estimate

    def _planned_event(self, complete: bool, estimate: float | None = None) -> Planned:
        metrics = self.metrics
        return Planned(self.calls, self.cached, len(self.samples) if complete else len(self.job.samples), estimate,
                       metrics.groups if metrics else 0, metrics.done if metrics else 0, complete, self.options.batch)

    async def stream(self):
        """The calls, sample by sample as they are planned (cache lookups are the executor's).

        Planning the samples after the first waits for `first_request` (set when the first
        request has left, or the first call was a cache hit), for at most `FIRST_REQUEST_WAIT_S`,
        so that the first request does not wait for the CPU.
        """
        first_request = self.first_request
        if self._planned is not None:
            sample_plans = self._planned
            self.samples = list(sample_plans)
            self.calls = sum(len(s.calls) for s in sample_plans)
            self.emit(replace(self._planned_event(True, self._final_estimate), cached=self._planned_cached))
            for sample_plan in sample_plans:
                for call in sample_plan.calls:
                    yield call
            return
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue = asyncio.Queue()
        done = object()
        stop = threading.Event()

        def produce() -> None:
            from rubric_judge.planning.estimate import has_price

            try:
                waited = False
                for result in plan_samples(self.pairs, self.target, None, self.options.replicates):
                    loop.call_soon_threadsafe(queue.put_nowait, result)
                    if not waited and isinstance(result, SamplePlan) and result.calls:
                        first_request.wait(_StoreOpening.FIRST_REQUEST_WAIT_S)
                        waited = True
                        # Each answer's cost and the plan's estimate need the judge's price: the
                        # first lookup reads litellm's 3 MB price map, here rather than on the
                        # event loop between the first answers.
                        has_price(self.target.model)
                    if stop.is_set():
                        break
            except BaseException as exc:  # raised in the run's task, below
                loop.call_soon_threadsafe(queue.put_nowait, exc)
            loop.call_soon_threadsafe(queue.put_nowait, done)

        producer = threading.Thread(target=produce, name="rubric-judge-planner", daemon=True)
        producer.start()
        announced = False
        planned: list = []
        # At most one wave of calls leaves before the image header check has ended.
        gate = max(1, self.options.concurrency)
        try:
            while (result := await queue.get()) is not done:
                if isinstance(result, BaseException):
                    raise result
                if isinstance(result, Problem):
                    self.problems.append(result)
                    continue
                if self.link.probe is not None:
                    result = _probed_sample(result)
                self._report_unreadable(result)
                self.samples.append(result)
                for call in result.calls:
                    if self.calls == gate and not await self.inputs_ok():
                        return  # the calls in flight are answered and cached; run_score raises
                    self.calls += 1
                    planned.append(call)
                    if not announced:
                        self.emit(self._planned_event(False))
                        announced = True
                    yield call
            if not await self.inputs_ok():
                return
        finally:
            stop.set()
            self.release()  # nothing more to wait for: no call (or none left) to send
        self._report_unreadable_total()
        # The executor has looked up every call yielded (it does before asking for the next one).
        uncached = [call for call in planned if call.cache_key not in self._hit_keys]
        estimate = self._estimate(uncached) if uncached else None
        self.emit(self._planned_event(True, estimate.cost_usd if estimate else None))

    # Unreadable output images named one by one, then counted: a model that wrote thousands of
    # broken files should not bury the run's progress under as many lines.
    UNREADABLE_NAMED = 10

    def _report_unreadable(self, sample_plan: SamplePlan) -> None:
        """Warn of the first output images that could not be read (each treated as absent)."""
        for problem in sample_plan.unreadable_outputs:
            self.unreadable_outputs += 1
            if self.unreadable_outputs <= self.UNREADABLE_NAMED:
                warn(problem)

    def _report_unreadable_total(self) -> None:
        if (unnamed := self.unreadable_outputs - self.UNREADABLE_NAMED) > 0:
            warn(Problem(Location(None), f"{unnamed} more output image(s) cannot be read and were treated as absent",
                         fix='the samples table has every missing output: rubric-judge query "SELECT sample_id, missing_outputs FROM samples WHERE len(missing_outputs) > 0"'))


def _probed_sample(sample_plan: SamplePlan) -> SamplePlan:
    """One sample's calls as `probed_plan` keeps them."""
    from rubric_judge.planning.compile import Plan

    return probed_plan(Plan((sample_plan,))).samples[0]


class _StoreOpening:
    """The run's results database, opened on a thread of its own while judging starts: the
    run's row is written, then its samples (from the outline, no image read, so an interrupted
    run shows its coverage). Not on asyncio's default executor, whose threads the Pacer counts
    as judging CPU."""

    # How long opening (and the header check, and later planning) waits for the first outcome,
    # wave or request before it starts anyway.
    FIRST_REQUEST_WAIT_S = 2.0

    def __init__(self, db: Path, info, outline: Callable[[], list], replicates: int, after: threading.Event, checked: threading.Event,
                 inputs_ok: Callable[[], bool]):
        """Start opening `db` once the first outcome has arrived (`after`, at most
        FIRST_REQUEST_WAIT_S: the first wave of requests has left by then) and the inputs are checked (`checked`); inputs with problems
        (`inputs_ok()` false) leave the database untouched."""
        self.store = None
        self.run_id: str | None = None
        # One thread for every write while judging, in order: DuckDB executes without holding
        # the GIL, so the event loop goes on sending and receiving meanwhile.
        self._pool = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="rubric-judge-store")
        self._writes: list[concurrent.futures.Future] = []
        self.task = asyncio.get_running_loop().run_in_executor(self._pool, self._open, db, info, outline, replicates, after, checked, inputs_ok)

    def _open(self, db: Path, info, outline: Callable[[], list], replicates: int, after: threading.Event, checked: threading.Event,
              inputs_ok: Callable[[], bool]) -> None:
        # Importing DuckDB and creating a new file cost a few hundred ms of CPU, which would
        # otherwise compete with the first wave of requests for the interpreter; outcomes wait
        # in memory until it is open.
        after.wait(self.FIRST_REQUEST_WAIT_S)
        from rubric_judge.store.db import ResultStore, load_driver, open_existing

        load_driver()  # writes nothing, so it need not wait for the header check below
        # Opening an existing file writes nothing either, and it overlaps the header check (on a
        # cached re-run both stand between the last cache hit and the end of the run).
        try:
            opened = open_existing(db)
        except UserError:
            opened = None  # reported by the open below, after any problem with the inputs
        checked.wait()  # always set when the header check ends, whichever way
        if not inputs_ok():
            if opened is not None:
                opened.close()
            return  # bad input: exit 2 with nothing written
        store = ResultStore(db, opened)
        try:
            run_id = store.begin_run(info)
            self.store, self.run_id = store, run_id  # from here on, abandon() records how the run ended
            store.write_samples(run_id, outline(), replicates)
        except BaseException:
            if self.store is None:
                store.close()
            raise

    @property
    def ready(self) -> bool:
        return self.task.done() and not self.task.cancelled() and self.task.exception() is None and self.store is not None

    async def wait(self) -> None:
        await asyncio.shield(self.task)

    # Writes waiting on the database's thread before the next one waits for the oldest: a disk
    # slower than the judge then holds judging back, as it did when writes ran on the event loop,
    # instead of answers piling up in memory.
    MAX_PENDING_WRITES = 4

    def write_outcomes(self, outcomes: list[Outcome]) -> None:
        """Write judged outcomes on the database's thread (the store must be `ready`), after the
        writes before them. A write that failed earlier raises its StorageError here, so judging
        stops at the next outcome, as when writes were made on the event loop."""
        while self._writes and (self._writes[0].done() or len(self._writes) >= self.MAX_PENDING_WRITES):
            self._writes.pop(0).result()
        self._writes.append(self._pool.submit(self.store.write_outcomes, self.run_id, outcomes))

    async def settle(self) -> BaseException | None:
        """Wait for every write on the database's thread to end, and end the thread; from here on
        the store is used from the caller's thread only.

        Returns:
            The first failed write's error (StorageError), or None.
        """
        pending, self._writes = self._writes, []
        if pending:
            with contextlib.suppress(BaseException):  # cancelled meanwhile (Ctrl-C): waited for below all the same
                await asyncio.wait([asyncio.wrap_future(write) for write in pending])
            # A write must never still run beside the caller's use of the connection.
            concurrent.futures.wait(pending)
        self._pool.shutdown(wait=False)
        return next((write.exception() for write in pending if not write.cancelled() and write.exception() is not None), None)

    async def abandon(self, status: str, detail: str) -> None:
        """The run stopped: wait for the opening to end, then record the status if the run's row
        was written. When storage itself failed these may fail too: the run then stays `running`,
        which the next process to open the file reads as `interrupted`."""
        from rubric_judge.store.db import StorageError

        with contextlib.suppress(BaseException):
            await asyncio.shield(self.task)
        await self.settle()  # a write still running would share the connection with the lines below
        if self.store is None:
            return
        with contextlib.suppress(StorageError):
            self.store.finish_run(self.run_id, status, detail)
        with contextlib.suppress(StorageError):
            self.store.close()


async def _execute(executor: Executor, planner: _Planner, opening: _StoreOpening, metrics: _MetricsJob | None,
                   emit: ProgressCallback, progress: Progress) -> None:
    buffer: list[Outcome] = []
    last_flush = [time.monotonic()]

    def take_buffer() -> list[Outcome]:
        # Taken out of the buffer before writing: a write that fails (disk full) is reported
        # once, not again by the final flush; its answers stay in the verdict cache.
        batch = buffer[:]
        buffer.clear()
        last_flush[0] = time.monotonic()
        return batch

    def on_outcome(outcome: Outcome) -> None:
        buffer.append(outcome)
        if opening.ready and (len(buffer) >= FLUSH_EVERY or time.monotonic() - last_flush[0] >= FLUSH_SECONDS):
            opening.write_outcomes(take_buffer())
        emit(CallsProgress(progress.done, planner.calls, progress.cache_hits, progress.errors, progress.prompt_tokens + progress.completion_tokens,
                           progress.cost_usd, progress.cost_unknown))

    progress.listeners.extend([planner.record, on_outcome])
    judging = asyncio.ensure_future(executor.run_async(planner.stream(), progress))
    try:
        # A database that cannot be opened stops judging at once, not after the last call.
        await asyncio.wait([judging, opening.task], return_when=asyncio.FIRST_EXCEPTION)
        await opening.wait()
        await judging
        if not await planner.inputs_ok():
            raise planner.input_problems_error()
    except BaseException:
        judging.cancel()
        with contextlib.suppress(BaseException):
            await judging
        raise
    finally:
        planner.release()  # a run without calls: the database opens now
        failed_write = await opening.settle()
        if opening.ready and (batch := take_buffer()):
            opening.store.write_outcomes(opening.run_id, batch)
    if failed_write is not None:  # judging ended before it saw the failure
        raise failed_write
    if metrics is not None:
        opening.store.write_metrics(opening.run_id, await metrics.wait())
