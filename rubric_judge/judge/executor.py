"""Run judge calls: cache first, then instructor over a transport, with bounded concurrency and retries.

This module owns the run loop: cache lookups and writes, the workers, the attempt loop with
its backoff, the cost budget, and the results (`Outcome`, `Progress`). Transport failures
(429, 5xx, timeouts, dropped connections) are retried with exponential backoff and jitter,
honouring Retry-After; answers that fail validation are re-asked a bounded number of times by
instructor. Every call ends as an `Outcome` with an explicit status: `ok` (validated answer),
`unscored` (the judge answered but never validly) or `error` (no answer). Only `ok` answers
are cached. A cost budget stops new calls once spent.

What it delegates: when an attempt may start (`pacing`), what a failure means (`retry`) and
what is sent (`messages`).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import random
import threading
import time
from collections.abc import AsyncIterable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from rubric_judge.cache.verdicts import CachedAnswer, VerdictCache
from rubric_judge.errors import UserError
from rubric_judge.judge.pacing import WARM_UP_FLOOR_S, Pacer
from rubric_judge.judge.retry import Reachability, classify, is_unreachable, usage_tokens
from rubric_judge.planning.estimate import price
from rubric_judge.planning.response import verdicts_by_id
from rubric_judge.redaction import redact, redact_data

if TYPE_CHECKING:
    from rubric_judge.planning.compile import JudgeCall


@dataclass(frozen=True)
class ExecutorSettings:
    concurrency: int = 16
    requests_per_minute: float | None = None
    timeout_s: float = 120.0
    max_attempts: int = 6  # transport attempts per call
    validation_retries: int = 2  # re-asks after an invalid answer
    backoff_base_s: float = 1.0
    backoff_max_s: float = 60.0
    api_key: str | None = None
    api_base: str | None = None  # where requests go; the cache key holds the judge's identity
    transport: str = "litellm"  # litellm | direct (judge/transport.py; resolve `auto` before)
    max_cost_usd: float | None = None
    # Attempts in a row that could not even connect (refused, unknown host) before the run stops:
    # a judge that is down for the whole run fails in seconds, not after every call's retries.
    max_unreachable: int = 20
    # Space request starts by the CPU a call costs (judge/pacing.py). Off where the event loop
    # also does other work per call (the reward server parses requests and builds rewards on it):
    # the CPU measured would then be the whole process's, and spacing by it halves throughput.
    pace_by_cpu: bool = True


def backoff_base_s() -> float:
    """First retry delay (doubling per attempt): `ExecutorSettings.backoff_base_s`, or
    RUBRIC_JUDGE_BACKOFF_BASE_S when set (tests use ~0.01); read by `score` and `serve` alike.

    Raises:
        UserError: the variable is not a non-negative number.
    """
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


@dataclass(frozen=True)
class Outcome:
    call: JudgeCall
    status: str  # ok | unscored | error | skipped (budget reached before it ran)
    answer: dict[str, Any] | None = None
    error: str | None = None
    attempts: int = 0
    latency_ms: float = 0.0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float | None = None
    cache_hit: bool = False


@dataclass
class Progress:
    """Running totals, updated as outcomes arrive (read by the progress display)."""

    done: int = 0
    cache_hits: int = 0
    errors: int = 0  # calls with no valid answer: error or unscored
    unscored: int = 0  # of those, calls the judge answered but never validly
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0
    cost_unknown: bool = False
    budget_reached: bool = False
    judge_unreachable: str | None = None  # why the run stopped early: the judge could not be reached
    listeners: list[Callable[[Outcome], None]] = field(default_factory=list)
    # Work that no request needs waits for one of these events, so that it does not compete
    # with the first requests for the interpreter, and then runs while the judge answers:
    # - first_request: the first request leaves (or the first outcome arrives, a cache hit); the
    #   planning of later samples waits for it.
    # - wave_sent: `concurrency` calls have started their first attempt, or every call is planned
    #   and handed over, or the first outcome arrives; the image header check waits for it.
    # - first_outcome: the first answer, error or cache hit; opening the database waits for it.
    first_request: threading.Event = field(default_factory=threading.Event)
    wave_sent: threading.Event = field(default_factory=threading.Event)
    first_outcome: threading.Event = field(default_factory=threading.Event)
    calls_started: int = 0  # calls whose first attempt has started

    def attempt_starting(self, concurrency: int, first: bool) -> None:
        """An attempt is about to be sent (`first`: its call's first)."""
        self.first_request.set()
        if first:
            self.calls_started += 1
            if self.calls_started >= concurrency:
                self.wave_sent.set()

    def record(self, outcome: Outcome) -> None:
        self.first_request.set()
        self.wave_sent.set()
        self.first_outcome.set()
        self.done += 1
        self.cache_hits += outcome.cache_hit
        self.errors += outcome.status in ("error", "unscored")
        self.unscored += outcome.status == "unscored"
        if not outcome.cache_hit:
            self.prompt_tokens += outcome.prompt_tokens
            self.completion_tokens += outcome.completion_tokens
            if outcome.cost_usd is None and outcome.status != "skipped" and outcome.attempts:
                self.cost_unknown = True
            self.cost_usd += outcome.cost_usd or 0.0
        for listener in self.listeners:
            listener(outcome)


class Executor:
    def __init__(self, cache: VerdictCache, settings: ExecutorSettings = ExecutorSettings(), decided: Mapping[str, Outcome] | None = None):
        """`decided`: outcomes already known by cache key (a provider batch's, judge/batch.py),
        used instead of the cache or the judge; each is stored with the call it is given for."""
        self.cache = cache
        self.settings = settings
        self.decided = decided or {}

    def run(self, calls: Sequence[JudgeCall], progress: Progress) -> list[Outcome]:
        return asyncio.run(self.run_async(calls, progress))

    async def run_async(self, calls: Sequence[JudgeCall] | AsyncIterable[JudgeCall], progress: Progress) -> list[Outcome]:
        """Judge `calls`: each is looked up in the cache as it arrives, the rest are judged.

        `calls` may be a list or an async stream (the planner's, while it still prepares later
        samples): judging starts with the first uncached call, not after the last one is planned.
        The judge stack (instructor, the transport and, for `litellm`, litellm) is imported only
        when a call misses the cache, so a fully cached run never loads it.
        """
        outcomes: list[Outcome] = []
        queue: asyncio.Queue[JudgeCall | None] = asyncio.Queue()
        judging: asyncio.Task | None = None
        try:
            async for call in _aiter(calls):
                known = self.decided.get(call.cache_key)
                if known is not None:
                    outcome = dataclasses.replace(known, call=call)
                    outcomes.append(outcome)
                    progress.record(outcome)
                    continue
                hit = self.cache.get(call.cache_key)
                if hit is None:
                    queue.put_nowait(call)
                    if judging is None:
                        judging = asyncio.create_task(self._run_pending(queue, call.structured_output, progress, outcomes))
                    elif judging.done():
                        break  # it failed (its error is raised below)
                    continue
                outcome = Outcome(call, "ok", hit.answer, attempts=0, prompt_tokens=hit.prompt_tokens, completion_tokens=hit.completion_tokens, cost_usd=hit.cost_usd, cache_hit=True)
                outcomes.append(outcome)
                progress.record(outcome)
                await asyncio.sleep(0)  # let workers pick up queued calls between cache hits
        except BaseException:
            if judging is not None:  # planning failed or the run was cancelled: stop the calls in flight
                judging.cancel()
                with contextlib.suppress(BaseException):
                    await judging
            raise
        progress.wave_sent.set()  # every call is planned: nothing more can join the first wave
        if judging is not None:
            queue.put_nowait(None)  # planning is done: workers stop once the queue is empty
            await judging
        return outcomes

    async def _run_pending(self, queue: asyncio.Queue[JudgeCall | None], structured_output: str, progress: Progress, outcomes: list[Outcome]) -> None:
        from rubric_judge.judge.messages import build_messages
        from rubric_judge.judge.transport import judge_client

        reachability = Reachability(self.settings.max_unreachable, progress)
        finished = False

        async def worker(client: Any) -> None:
            nonlocal finished
            while True:
                if finished:
                    return
                call = await queue.get()
                if call is None:
                    finished = True
                    queue.put_nowait(None)  # for the other workers
                    return
                budget = self.settings.max_cost_usd
                if progress.judge_unreachable:
                    outcome = Outcome(call, "skipped", error=f"not run: {progress.judge_unreachable}")
                elif progress.budget_reached or (budget is not None and progress.cost_usd >= budget):
                    progress.budget_reached = True
                    outcome = Outcome(call, "skipped", error=f"not run: the cost budget of ${budget} was reached")
                else:
                    outcome = await self._judge(client, call, pacer, reachability, build_messages)
                    if outcome.status == "ok" and outcome.answer is not None:
                        self.cache.put(call.cache_key, CachedAnswer(outcome.answer, outcome.prompt_tokens, outcome.completion_tokens, outcome.cost_usd, call.model))
                outcomes.append(outcome)
                progress.record(outcome)

        settings = self.settings
        async with judge_client(settings.transport, settings.api_base, settings.api_key, settings.concurrency, structured_output) as client:
            if settings.transport != "direct":
                from rubric_judge.planning.response import prepare_response_models

                # Pay instructor's imports (its base pulls in the OpenAI SDK's types: seconds of
                # CPU) before the pacer starts counting judging CPU: counted, they read as the
                # cost of the first calls and space the next starts seconds apart.
                prepare_response_models()
            pacer = Pacer(self.settings.requests_per_minute, WARM_UP_FLOOR_S[self.settings.transport], by_cpu=self.settings.pace_by_cpu)
            workers = [asyncio.create_task(worker(client)) for _ in range(self.settings.concurrency)]
            try:
                await asyncio.gather(*workers)
            finally:
                for task in workers:
                    task.cancel()

    async def _judge(self, client: Any, call: JudgeCall, pacer: Pacer, reachability: Reachability, build_messages: Callable) -> Outcome:
        settings = self.settings
        try:
            messages = build_messages(call)
        except Exception as exc:  # an image that vanished or changed since planning
            return Outcome(call, "error", error=f"cannot prepare the request: {redact(str(exc))}")
        started = time.perf_counter()
        last_error = ""
        for attempt in range(1, settings.max_attempts + 1):
            if attempt > 1 and reachability.progress.judge_unreachable:  # tripped while this call waited to retry
                return Outcome(call, "error", error=f"{last_error} ({reachability.progress.judge_unreachable})", attempts=attempt - 1, latency_ms=_ms(started))
            await pacer.wait()
            reachability.progress.attempt_starting(settings.concurrency, first=attempt == 1)
            try:
                answer, usage = await asyncio.wait_for(
                    client.ask(call, messages, validation_retries=settings.validation_retries, timeout=settings.timeout_s),
                    timeout=(settings.timeout_s + 5) * (settings.validation_retries + 1),
                )
            except Exception as exc:
                pacer.finished()
                kind, retry_after, message = classify(exc)
                last_error = message
                reachability.attempt_ended(connected=not is_unreachable(exc), error=message)
                if reachability.progress.judge_unreachable:
                    return Outcome(call, "error", error=f"{message} ({reachability.progress.judge_unreachable})", attempts=attempt, latency_ms=_ms(started))
                if kind == "invalid":
                    usage = getattr(exc, "total_usage", None) or getattr(getattr(exc, "last_completion", None), "usage", None)
                    prompt, completion_tokens = usage_tokens(usage)
                    return Outcome(call, "unscored", error=message, attempts=attempt, latency_ms=_ms(started), prompt_tokens=prompt, completion_tokens=completion_tokens, cost_usd=price(call.model, prompt, completion_tokens))
                if kind == "fatal" or attempt == settings.max_attempts:
                    return Outcome(call, "error", error=message, attempts=attempt, latency_ms=_ms(started))
                delay = retry_after if retry_after is not None else min(settings.backoff_max_s, settings.backoff_base_s * 2 ** (attempt - 1))
                await asyncio.sleep(delay * random.uniform(1.0, 1.25))
                continue
            pacer.finished()
            reachability.attempt_ended(connected=True)
            prompt, completion_tokens = usage_tokens(usage)
            # A judge can echo what it was sent in its reasoning too; the answer is cached and stored.
            verdicts = {criterion_id: redact_data(value.model_dump()) for criterion_id, value in verdicts_by_id(answer).items()}
            return Outcome(call, "ok", verdicts, attempts=attempt, latency_ms=_ms(started), prompt_tokens=prompt, completion_tokens=completion_tokens, cost_usd=price(call.model, prompt, completion_tokens))
        return Outcome(call, "error", error=last_error, attempts=settings.max_attempts, latency_ms=_ms(started))


def _ms(started: float) -> float:
    return (time.perf_counter() - started) * 1000.0


async def _aiter(calls: Sequence[JudgeCall] | AsyncIterable[JudgeCall]):
    if isinstance(calls, AsyncIterable):
        async for call in calls:
            yield call
    else:
        for call in calls:
            yield call
