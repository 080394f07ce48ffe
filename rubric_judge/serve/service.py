"""`RewardService`: rubric rewards for reinforcement learning, scored one item at a time.

It loads the rubrics once and scores items through the same machinery as `rubric-judge score`:
the planner compiles each item's judge calls (`compile_sample`), the verdict cache and the
executor judge them (cache first; 429/5xx retries with backoff, pacing, concurrency: one
`JudgeLoop` shared by every request), and the rubric's scoring method and missing-output and
unscored policies turn the verdicts into the reward (`serve.scoring.sample_score`, the views'
formula). Every scored item is logged to the results database as a serve run (`RunLog`).

A batch never fails for one item: a malformed item, an unknown rubric, an image that is missing
or not allowed, a judge that gives no answer before the deadline each get the fallback reward,
with a `status` and an `error` saying why, and the other items are scored.

    async with RewardService(["builtin:medgen/holistic-with-gt.yaml"], judge="offline") as service:
        [result] = await service.score([{"id": "a", "rubric": "medgen/holistic-with-gt",
                                         "inputs": {"category": "VQA", "instruction": "..."},
                                         "outputs": {"response": "..."}}])
        result.reward
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import shutil
import tempfile
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from rubric_judge.cache.verdicts import CacheMode, VerdictCache, default_cache_dir
from rubric_judge.errors import Location, Problem, UserError
from rubric_judge.imageio import ImageError
from rubric_judge.judge.executor import ExecutorSettings, Outcome, backoff_base_s
from rubric_judge.judge.transport import NO_KEY, provider_api_key, resolve_transport
from rubric_judge.planning.compile import JudgeTarget, TemplateRenderError, compile_sample, planning_workers
from rubric_judge.planning.target import OFFLINE, OFFLINE_IDENTITY_BASE, OFFLINE_JUDGE_MODEL
from rubric_judge.redaction import redact, redact_url, register_secret, register_url, url_without_userinfo
from rubric_judge.rubrics.loader import load_rubric_set
from rubric_judge.rubrics.schema import Rubric
from rubric_judge.serve.items import (
    BAD_IMAGE,
    INVALID_ITEM,
    UNKNOWN_RUBRIC,
    ImageSpool,
    ItemError,
    RubricSet,
    check_id,
    index_rubrics,
    item_outputs,
    item_sample,
)
from rubric_judge.serve.judging import JudgeLoop
from rubric_judge.serve.runlog import RunLog
from rubric_judge.serve.scoring import plan_verdicts, sample_score
from rubric_judge.serve.stats import ServeStats

# Statuses of a result besides items.py's: judged (`ok`: every verdict valid; `partial`: some
# verdicts unscored, left out by the rubric's policy), or why the fallback was given.
OK = "ok"
PARTIAL = "partial"
DEADLINE = "deadline"
UNSCORED = "unscored"  # the judge gave no valid verdict that counts
EXCLUDED = "excluded"  # the rubric's policy leaves the sample out (missing output under `skip`)
ITEM_KEYS = ("id", "rubric", "task", "inputs", "outputs", "response", "response_field")
FALLBACK_STATUSES = (INVALID_ITEM, UNKNOWN_RUBRIC, BAD_IMAGE, DEADLINE, UNSCORED, EXCLUDED)


@dataclass(frozen=True)
class CriterionResult:
    """One criterion's verdict for an item: met (binary) or score (scale), its weight and status."""

    id: str
    met: bool | None
    weight: float
    score: float | None = None
    status: str = "ok"


@dataclass(frozen=True)
class RewardResult:
    """One item's reward.

    Attributes:
        id: the item's id (given, or `item-<index>`).
        reward: the rubric's score for the item, or the fallback reward when `status` is one of
            FALLBACK_STATUSES.
        score: the rubric's score (None when there is none: the fallback was given).
        dimensions: dimension id -> its score.
        criteria: each criterion's verdict.
        cached: every judge call was answered from the verdict cache.
        status: ok | partial | invalid_item | unknown_rubric | bad_image | deadline | unscored | excluded.
        error: why the fallback was given (or which verdicts were unscored); None when ok.
    """

    id: str
    reward: float
    score: float | None = None
    dimensions: dict[str, float | None] = field(default_factory=dict)
    criteria: tuple[CriterionResult, ...] = ()
    cached: bool = False
    status: str = OK
    error: str | None = None

    @property
    def fallback(self) -> bool:
        return self.status in FALLBACK_STATUSES

    def to_json(self) -> dict[str, Any]:
        """The result as /v1/score answers it."""
        return {"id": self.id, "reward": self.reward, "score": self.score, "dimensions": self.dimensions,
                "criteria": [{"id": c.id, "met": c.met, "weight": c.weight, "score": c.score, "status": c.status} for c in self.criteria],
                "cached": self.cached, "status": self.status, "error": self.error}


class RewardService:
    """Scores reward items against rubrics loaded once; use `async with` (or start/close).

    Args:
        rubrics: rubric files, directories of task rubrics, or `builtin:...` names.
        judge: litellm model string of the judge (default: each rubric's); "offline" for the built-in one.
        api_base, transport, concurrency, rpm, timeout: as for `score`.
        deadline: seconds from a request's arrival after which an item still waiting for the
            judge gets the fallback reward (status `deadline`); its calls finish in the
            background and are cached.
        db: results database to log scored items to as serve runs; None = not logged.
        cache_dir, cache: the verdict cache, as for `score`.
        allow_dirs: directories whose images items may name by path; other images must be inline.
        fallback_reward: the reward of an item that cannot be scored.
        model: the serve runs' model name on the leaderboard (default `serve-<start time>`).
        max_image_bytes: largest inline image accepted, in bytes (decoded).
        max_image_side: downscale judged images whose longer side exceeds this.

    Raises:
        UserError: a rubric that does not load, a metrics-only rubric, a bad option.
    """

    def __init__(self, rubrics: Sequence[str | Path], *, judge: str | None = None, api_base: str | None = None, transport: str = "auto",
                 concurrency: int = 64, rpm: float | None = None, timeout: float = 120.0, deadline: float = 150.0,
                 db: str | Path | None = None, cache_dir: str | Path | None = None, cache: str | CacheMode = "read-write",
                 allow_dirs: Sequence[str | Path] = (), fallback_reward: float = 0.0, model: str | None = None,
                 max_image_bytes: int = 20 * 1024 * 1024, max_image_side: int | None = None):
        if not rubrics:
            raise UserError(Problem(Location(None), "no rubric given", field="rubric", fix="name one or more rubric files or builtin: rubrics"))
        for name, value, least in (("concurrency", concurrency, 1), ("timeout", timeout, 1), ("deadline", deadline, 0.001)):
            if value < least:
                raise UserError(Problem(Location(None), f"must be at least {least}, not {value!r}", field=name))
        loaded: list[Rubric] = []
        for path in rubrics:
            loaded.extend(load_rubric_set(path))
        unjudged = sorted({r.rubric for r in loaded if not r.judged})
        if unjudged:
            raise UserError(Problem(Location(None), f"{', '.join(unjudged)} has no judged criteria (metrics only); a reward needs a judge",
                                    field="rubric", fix="serve rubrics with criteria"))
        self.rubrics = index_rubrics(loaded)
        self.judge, self.api_base, self.concurrency, self.rpm, self.timeout = judge, api_base, concurrency, rpm, timeout
        self.deadline = deadline
        self.db = Path(db) if db is not None else None
        self.cache_dir = Path(cache_dir) if cache_dir is not None else default_cache_dir()
        try:
            self.cache_mode = CacheMode(cache)
        except ValueError:
            raise UserError(Problem(Location(None), f"must be one of {', '.join(m.value for m in CacheMode)}, not {cache!r}", field="cache")) from None
        self.allow_dirs = tuple(Path(d).resolve() for d in allow_dirs)
        missing = [str(d) for d in self.allow_dirs if not d.is_dir()]
        if missing:
            raise UserError(Problem(Location(None), f"not a directory: {', '.join(missing)}", field="allow_dir", fix="name existing directories"))
        self.fallback_reward = float(fallback_reward)
        self.model = model or f"serve-{datetime.now():%Y%m%d-%H%M%S}"
        self.max_image_bytes, self.max_image_side = max_image_bytes, max_image_side
        self.offline = judge == OFFLINE
        base = next(iter(self.rubrics.values())).base
        self.judge_model = OFFLINE_JUDGE_MODEL if self.offline else (judge or base.judge.model)
        self.identity_base = OFFLINE_IDENTITY_BASE if self.offline else (url_without_userinfo(api_base) if api_base else None)
        requested = "litellm" if self.offline and transport == "auto" else transport
        # Checked now (a `direct` without --api-base is an input error); the offline judge's URL comes at start.
        self.transport = resolve_transport(requested, self.judge_model, "http://offline" if self.offline else api_base)
        self.stats = ServeStats()
        self._counter = itertools.count(1)
        self._loop: JudgeLoop | None = None
        self._planning: ThreadPoolExecutor | None = None
        self._cache: VerdictCache | None = None
        self._log: RunLog | None = None
        self._server = None
        self._spool: Path | None = None
        self._background: set[asyncio.Task] = set()
        self._text_planner: _TextPlanner | None = None

    async def __aenter__(self) -> RewardService:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def start(self) -> None:
        """Open the cache and the database log, start the judge loop (and the offline judge)."""
        if self.offline:
            from rubric_judge.judge.offline import OFFLINE_JUDGE_API_KEY, start_offline_judge
            from rubric_judge.planning.estimate import register_price

            self._server = await asyncio.to_thread(start_offline_judge)
            register_price(OFFLINE_JUDGE_MODEL, 0.0, 0.0)
            transport_base, api_key = self._server.base_url, OFFLINE_JUDGE_API_KEY
        else:
            transport_base = self.api_base
            api_key = os.environ.get("RUBRIC_JUDGE_API_KEY") or provider_api_key(self.judge_model)
            register_secret(api_key)  # before anything is logged (redaction.py)
            register_url(self.api_base)
            api_key = api_key or (NO_KEY if self.api_base else None)
        settings = ExecutorSettings(concurrency=self.concurrency, requests_per_minute=self.rpm, timeout_s=self.timeout, api_key=api_key,
                                    api_base=transport_base, transport=self.transport, backoff_base_s=backoff_base_s(),
                                    # A server outlives a judge outage: items fall back at the deadline instead.
                                    max_unreachable=0,
                                    # Its event loop also serves HTTP and builds rewards: pacing by that CPU would
                                    # space request starts by the whole server's work (22% of ideal at 256 in flight).
                                    pace_by_cpu=False)
        self._planning = ThreadPoolExecutor(planning_workers(), thread_name_prefix="rubric-judge-plan")
        self._cache = VerdictCache(self.cache_dir, self.cache_mode)
        self._loop = JudgeLoop(self._cache, settings)
        self._loop.start()
        self._text_planner = _TextPlanner(self._loop)
        self._spool = Path(tempfile.mkdtemp(prefix="rubric-judge-serve-"))
        if self.db is not None:
            config = {"serve": True, "judge_api_base": redact_url(self.identity_base), "transport": self.transport,
                      "concurrency": self.concurrency, "deadline_s": self.deadline, "cache_mode": self.cache_mode.value,
                      "offline_judge": self.offline}
            self._log = RunLog(self.db, self.model, self.judge_model, self.identity_base, config)
            self._log.start()

    async def close(self) -> None:
        """Stop judging, write what is queued to the database and finish the serve runs."""
        for task in list(self._background):
            task.cancel()
        if self._text_planner is not None:
            await self._text_planner.close()
            self._text_planner = None
        if self._loop is not None:
            await self._loop.close()
        if self._log is not None:
            await asyncio.to_thread(self._log.close)
        if self._cache is not None:
            self._cache.close()
        if self._planning is not None:
            self._planning.shutdown(wait=False, cancel_futures=True)
            self._planning = None
        if self._server is not None:
            self._server.stop()
        if self._spool is not None:
            shutil.rmtree(self._spool, ignore_errors=True)
        self._loop = self._log = self._cache = self._server = self._spool = None

    @property
    def judge_progress(self):
        """The judging loop's running totals (calls, cache hits, errors)."""
        return self._loop.progress if self._loop is not None else None

    @property
    def log_errors(self) -> int:
        return self._log.errors if self._log is not None else 0

    @property
    def in_flight(self) -> int:
        return self._loop.in_flight if self._loop is not None else 0

    async def score(self, items: Sequence[Any], started: float | None = None) -> list[RewardResult]:
        """Each item's reward, in order; never raises for an item (see the class docstring).

        Args:
            items: objects {"id"?, "rubric"?, "task"?, "inputs": {...}, "outputs": {...}, "response"?:
                text for the rubric's first text output (or "response_field")}; an
                `ItemError` in their place is answered with the fallback and its reason.
            started: `time.monotonic()` when the request arrived (the deadline counts from it).
        """
        if self._loop is None:
            raise RuntimeError("RewardService.start() was not called (use `async with RewardService(...)`)")
        started = time.monotonic() if started is None else started
        return list(await asyncio.gather(*(self._score_item(item, index, started) for index, item in enumerate(items))))

    def rubric_for(self, name: Any, task: Any) -> Rubric:
        """The rubric an item names (its id, and the task for task rubrics).

        Raises:
            ItemError: unknown_rubric, naming what is served.
        """
        if name is None and len(self.rubrics) == 1:
            name = next(iter(self.rubrics))
        rubric_set: RubricSet | None = self.rubrics.get(name) if isinstance(name, str) else None
        if rubric_set is None:
            raise ItemError(UNKNOWN_RUBRIC, f"unknown rubric {name!r}; this server scores: {', '.join(sorted(self.rubrics))}")
        if task is not None:
            rubric = rubric_set.tasks.get(task) if isinstance(task, str) else None
            if rubric is None and rubric_set.general is None:
                raise ItemError(UNKNOWN_RUBRIC, f"rubric {name!r} has no task rubric for task {task!r}")
            return rubric or rubric_set.general  # type: ignore[return-value]
        if rubric_set.general is None:
            raise ItemError(UNKNOWN_RUBRIC, f"rubric {name!r} is a set of task rubrics: name the item's `task`")
        return rubric_set.general

    def _fallback(self, ident: str, status: str, error: str) -> RewardResult:
        return RewardResult(ident, self.fallback_reward, status=status, error=redact(error))

    async def _score_item(self, raw: Any, index: int, started: float) -> RewardResult:
        ident = f"item-{index}"
        spool = ImageSpool(self._spool, self.allow_dirs, self.max_image_bytes)  # type: ignore[arg-type]
        cached = False
        release_now = True
        try:
            if isinstance(raw, ItemError):  # refused while translating the request (an OpenRLHF label)
                ident = raw.item_id if isinstance(raw.item_id, str) and raw.item_id else ident
                raise raw
            if not isinstance(raw, Mapping):
                raise ItemError(INVALID_ITEM, "each item must be a JSON object")
            ident = check_id(raw.get("id"), ident)
            unknown = sorted(str(key) for key in raw if key not in ITEM_KEYS)
            if unknown:  # a typo would otherwise score the item without what it meant to send
                raise ItemError(INVALID_ITEM, f"unknown key(s) {', '.join(unknown)}; an item has {', '.join(ITEM_KEYS)}")
            rubric = self.rubric_for(raw.get("rubric"), raw.get("task"))
            sample = item_sample(rubric, rubric.task or ident, raw.get("inputs") or {}, item_outputs(rubric, raw), spool)
            target = JudgeTarget(self.judge_model if (self.offline or self.judge) else rubric.judge.model, self.identity_base, self.max_image_side)
            try:
                if any(isinstance(value, Path) for value in sample.fields.values()):
                    # Images are read, hashed and maybe resized (C code that releases the GIL): on
                    # the service's own planning threads, so the event loop goes on serving. Not on
                    # asyncio's default executor: the executor's pacer counts its threads' CPU.
                    plan = await asyncio.get_running_loop().run_in_executor(self._planning, compile_sample, rubric, sample, target)
                    futures = [self._loop.submit(call) for call in plan.calls]  # type: ignore[union-attr]
                else:
                    # Text only: a fraction of a millisecond of pure Python. Handed to a thread it
                    # would cost more in GIL hand-offs (the loop waits up to a switch interval,
                    # 5 ms, each time) than it takes: at 256 requests at once that was seconds.
                    plan, futures = await self._text_planner.plan(rubric, sample, target)  # type: ignore[union-attr]
            except ImageError as exc:
                raise ItemError(BAD_IMAGE, str(exc)) from None
            except TemplateRenderError as exc:
                raise ItemError(INVALID_ITEM, str(exc)) from None
            if futures:
                _, pending = await asyncio.wait(futures, timeout=max(0.0, self.deadline - (time.monotonic() - started)))
                if pending:
                    release_now = False  # the calls still read the spooled images
                    self._release_when_done(spool, pending)
                    raise ItemError(DEADLINE, f"the judge did not answer {len(pending)} of {len(futures)} call(s) within the "
                                              f"deadline of {self.deadline:g} s (they finish in the background and are cached)")
            outcomes: list[Outcome] = [future.result() for future in futures]
            cached = bool(outcomes) and all(o.cache_hit for o in outcomes)
            result = self._result(ident, rubric, plan, outcomes, cached)
            self._record(rubric, plan, outcomes, ident)
        except ItemError as exc:
            result = self._fallback(ident, exc.status, str(exc))
        finally:
            if release_now:
                spool.release()
        self.stats.item(result.status, result.cached, time.monotonic() - started)
        return result

    def _result(self, ident: str, rubric: Rubric, plan, outcomes: list[Outcome], cached: bool) -> RewardResult:
        verdicts = plan_verdicts(plan, outcomes)
        scored = sample_score(rubric, verdicts)
        criteria = tuple(CriterionResult(v.criterion_id, v.met, v.weight, v.score, v.status) for v in verdicts)
        errors = [o.error for o in outcomes if o.status != "ok" and o.error]
        if scored.score is None or scored.excluded:
            status = EXCLUDED if scored.excluded and scored.score is not None else UNSCORED
            why = ("the rubric's missing_output: skip policy leaves out a sample without its output" if status == EXCLUDED
                   else "no verdict counts" + (f": {errors[0]}" if errors else " (no criterion applies to the item, or no positive weight)"))
            return RewardResult(ident, self.fallback_reward, scored.score, scored.dimensions, criteria, cached, status, redact(why))
        status = PARTIAL if scored.unscored else OK
        error = redact(f"{scored.unscored} verdict(s) unscored: {errors[0]}") if scored.unscored and errors else None
        return RewardResult(ident, float(scored.score), scored.score, scored.dimensions, criteria, cached, status, error)

    def _record(self, rubric: Rubric, plan, outcomes: list[Outcome], ident: str) -> None:
        """Queue the item for the database, under an id unique in the run (rollouts repeat ids)."""
        if self._log is None:
            return
        from dataclasses import replace

        log_id = f"{ident}#{next(self._counter)}"
        sample = replace(plan.sample, id=log_id)
        stored = [replace(o, call=replace(o.call, sample_id=log_id)) for o in outcomes]
        self._log.add(self.rubrics[rubric.rubric].base, replace(plan, sample=sample, calls=tuple(o.call for o in stored)), stored)

    def _release_when_done(self, spool: ImageSpool, pending) -> None:
        async def release() -> None:
            try:
                await asyncio.wait(pending)
            finally:
                spool.release()

        task = asyncio.ensure_future(release())
        self._background.add(task)
        task.add_done_callback(self._background.discard)


class _TextPlanner:
    """Plans text items on one task of the event loop, in slices: each slice's judge calls are
    sent before the next slice is planned.

    Planned where they arrive, a burst (256 requests at once) had every item planned before the
    first judge request left, 0.1 s in, so the judge, which needs CPU per request too, started
    late (its median answer came 0.15 s later). Planned one item per loop turn (a lock held
    across a yield), a burst went well but sustained load did not: the lock passes to the next
    waiter once per loop turn, and a turn also carries other requests' work, so planning fell
    behind (256 clients sending 8 requests each at 1 s judge latency: median latency 1.16 s
    instead of 1.04).
    """

    SLICE_S = 0.002  # planning time between two turns of the loop

    def __init__(self, judging: JudgeLoop):
        self._judging = judging
        self._queue: asyncio.Queue[tuple[Rubric, Any, JudgeTarget, asyncio.Future]] = asyncio.Queue()
        self._task = asyncio.create_task(self._run(), name="rubric-judge-serve-planning")

    async def plan(self, rubric: Rubric, sample: Any, target: JudgeTarget) -> tuple[Any, list[asyncio.Future[Outcome]]]:
        """The item's plan and the futures of its submitted calls.

        Raises:
            ImageError, TemplateRenderError: as `compile_sample` raises them.
        """
        done: asyncio.Future = asyncio.get_running_loop().create_future()
        self._queue.put_nowait((rubric, sample, target, done))
        return await done

    async def _run(self) -> None:
        slice_started = time.perf_counter()
        while True:
            rubric, sample, target, done = await self._queue.get()
            if done.cancelled():  # its request gave up while it waited: no judge calls for it
                continue
            try:
                plan = compile_sample(rubric, sample, target)
                done.set_result((plan, [self._judging.submit(call) for call in plan.calls]))
            except Exception as exc:  # the item's error, raised where it waits
                done.set_exception(exc)
            if self._queue.empty():
                slice_started = time.perf_counter()  # the next get() waits: the loop turns anyway
            elif time.perf_counter() - slice_started > self.SLICE_S:
                await asyncio.sleep(0)  # let the judging loop send what was submitted
                slice_started = time.perf_counter()

    async def close(self) -> None:
        """Stop planning; items still waiting to be planned are cancelled."""
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        while not self._queue.empty():
            self._queue.get_nowait()[-1].cancel()
