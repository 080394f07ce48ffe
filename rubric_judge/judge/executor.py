"""Run judge calls: cache first, then instructor over a transport, with bounded concurrency and retries.

Transport failures (429, 5xx, timeouts, dropped connections) are retried with exponential
backoff and jitter, honouring Retry-After; answers that fail validation are re-asked a bounded
number of times by instructor. Every call ends as an `Outcome` with an explicit status:
`ok` (validated answer), `unscored` (the judge answered but never validly) or `error` (no
answer). Only `ok` answers are cached. A cost budget stops new calls once spent.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from rubric_judge.cache.verdicts import CachedAnswer, VerdictCache
from rubric_judge.judge.transport import Completion, JudgeConnectionError, completion_function
from rubric_judge.llm import litellm_module
from rubric_judge.planning.compile import ImagePart, JudgeCall, TextPart
from rubric_judge.planning.estimate import price
from rubric_judge.planning.images import EncodedImage, encoded_image
from rubric_judge.planning.response import verdicts_by_id
from rubric_judge.redaction import redact, redact_data

INSTRUCTOR_MODES = {"tools": "TOOLS", "json": "JSON", "json_schema": "JSON_SCHEMA", "md_json": "MD_JSON"}
# The Pacer's spacing before the first answer, per transport. litellm builds each request on an
# executor thread that may not have run when the next start is due, so the CPU estimate starts
# late; 5 ms lets it catch up. `direct` builds requests on the loop, seen at the very next start.
WARM_UP_FLOOR_S = {"litellm": 0.005, "direct": 0.0}


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

    def record(self, outcome: Outcome) -> None:
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


class Pacer:
    """Spaces request starts: no faster than the process can handle answers, nor than --rpm.

    Request building and answer parsing (instructor and the transport: ~2.5 ms of CPU a call
    direct, ~11 ms through litellm) all run under one interpreter lock, and asyncio interleaves
    them round-robin. When a judge with a steady latency answers a whole wave of calls at once,
    each answer is finished only when the whole wave is, so every call waits for the wave's
    total CPU time and the waves stay bunched for good (through litellm: 67% of ideal
    throughput at 64 calls in flight and 1 s latency). Starting calls no closer together than
    the CPU one call costs spreads the answers out, so each is handled as it arrives and the
    next request leaves at once (~90%). The cap is the rate the process could handle anyway,
    so pacing costs no throughput.
    """

    # Decay per event of the CPU and event tallies: a horizon of a few hundred events, so the
    # estimate follows a run whose cost per call drifts but not the lumps of single events.
    SMOOTHING = 1 / 256

    def __init__(self, per_minute: float | None, warm_up_floor_s: float = 0.0):
        self.rpm_interval = 60.0 / per_minute if per_minute else 0.0
        self.warm_up_floor_s = warm_up_floor_s
        self._next = 0.0
        self._cpu_seen = _judging_cpu()
        self._cpu_tally = 0.0  # decayed sums: CPU seconds, and events that used them
        self._event_tally = 0.0
        self._finished = 0

    async def wait(self) -> None:
        """Wait for this attempt's start slot."""
        self._observe()
        now = time.monotonic()
        start = max(now, self._next)
        self._next = start + self.interval()
        if start > now:
            await asyncio.sleep(start - now)

    def finished(self) -> None:
        """An attempt has ended (answer, error or timeout)."""
        self._observe()
        self._finished += 1

    def interval(self) -> float:
        # An attempt is two events, its start and its finish. A transport whose requests are built
        # off the event loop makes the estimate lag until answers come back; its floor gives the
        # estimate time to see what the first requests cost.
        cpu_per_attempt = 2 * self._cpu_tally / self._event_tally if self._event_tally else 0.0
        floor = self.warm_up_floor_s if not self._finished else 0.0
        return max(self.rpm_interval, cpu_per_attempt, floor)

    def _observe(self) -> None:
        # A ratio of decayed sums, not a moving average of per-event CPU: a request's sending
        # and its connection's setup run after its start event, so their CPU lands in lumps on
        # whichever event comes next (the first answer of a run carries the whole first wave's).
        # An average over events is skewed by such a lump for as long as it takes to forget it;
        # CPU over events counts each lump once, where it belongs.
        now = _judging_cpu()
        used, self._cpu_seen = max(0.0, now - self._cpu_seen), now
        keep = 1.0 - self.SMOOTHING
        self._cpu_tally = self._cpu_tally * keep + used
        self._event_tally = self._event_tally * keep + 1.0


def _judging_cpu() -> float:
    """CPU seconds of the threads that judge: this one (the event loop's) and the loop's default
    executor threads, where litellm builds requests. Not the whole process: the metrics thread
    and torch's threads may keep other cores busy, and counting them would slow judging down."""
    total = time.thread_time()
    for thread in threading.enumerate():
        # asyncio names its default executor's threads asyncio_0, asyncio_1, ...
        if thread.name.startswith("asyncio_") and thread.ident is not None:
            with contextlib.suppress(AttributeError, OSError):  # no per-thread clocks here, or it just ended
                total += time.clock_gettime(time.pthread_getcpuclockid(thread.ident))
    return total


class Executor:
    def __init__(self, cache: VerdictCache, settings: ExecutorSettings = ExecutorSettings()):
        self.cache = cache
        self.settings = settings

    def run(self, calls: Sequence[JudgeCall], progress: Progress) -> list[Outcome]:
        return asyncio.run(self.run_async(calls, progress))

    async def run_async(self, calls: Sequence[JudgeCall], progress: Progress) -> list[Outcome]:
        outcomes: list[Outcome] = []
        pending: list[JudgeCall] = []
        for call in calls:
            hit = self.cache.get(call.cache_key)
            if hit is None:
                pending.append(call)
                continue
            outcome = Outcome(call, "ok", hit.answer, attempts=0, prompt_tokens=hit.prompt_tokens, completion_tokens=hit.completion_tokens, cost_usd=hit.cost_usd, cache_hit=True)
            outcomes.append(outcome)
            progress.record(outcome)
        if not pending:
            return outcomes
        async with completion_function(self.settings.transport, self.settings.api_base, self.settings.api_key, self.settings.concurrency) as completion:
            client = _instructor_client(completion, pending[0].structured_output)
            await self._run_pending(client, pending, progress, outcomes)
        return outcomes

    async def _run_pending(self, client: Any, pending: list[JudgeCall], progress: Progress, outcomes: list[Outcome]) -> None:
        queue: asyncio.Queue[JudgeCall] = asyncio.Queue()
        for call in pending:
            queue.put_nowait(call)
        pacer = Pacer(self.settings.requests_per_minute, WARM_UP_FLOOR_S[self.settings.transport])
        reachability = _Reachability(self.settings.max_unreachable, progress)

        async def worker() -> None:
            while True:
                try:
                    call = queue.get_nowait()
                except asyncio.QueueEmpty:
                    return
                budget = self.settings.max_cost_usd
                if progress.judge_unreachable:
                    outcome = Outcome(call, "skipped", error=f"not run: {progress.judge_unreachable}")
                elif progress.budget_reached or (budget is not None and progress.cost_usd >= budget):
                    progress.budget_reached = True
                    outcome = Outcome(call, "skipped", error=f"not run: the cost budget of ${budget} was reached")
                else:
                    outcome = await self._judge(client, call, pacer, reachability)
                    if outcome.status == "ok" and outcome.answer is not None:
                        self.cache.put(call.cache_key, CachedAnswer(outcome.answer, outcome.prompt_tokens, outcome.completion_tokens, outcome.cost_usd, call.model))
                outcomes.append(outcome)
                progress.record(outcome)

        workers = [asyncio.create_task(worker()) for _ in range(min(self.settings.concurrency, len(pending)))]
        try:
            await asyncio.gather(*workers)
        finally:
            for task in workers:
                task.cancel()

    async def _judge(self, client: Any, call: JudgeCall, pacer: Pacer, reachability: _Reachability) -> Outcome:
        litellm = litellm_module()
        settings = self.settings
        try:
            messages = build_messages(call)
        except Exception as exc:  # an image that vanished or changed since planning
            return Outcome(call, "error", error=f"cannot prepare the request: {redact(str(exc))}")
        kwargs: dict[str, Any] = {"temperature": call.temperature}
        if call.max_tokens:
            kwargs["max_tokens"] = call.max_tokens
        started = time.perf_counter()
        last_error = ""
        for attempt in range(1, settings.max_attempts + 1):
            if attempt > 1 and reachability.progress.judge_unreachable:  # tripped while this call waited to retry
                return Outcome(call, "error", error=f"{last_error} ({reachability.progress.judge_unreachable})", attempts=attempt - 1, latency_ms=_ms(started))
            await pacer.wait()
            try:
                answer, completion = await asyncio.wait_for(
                    client.chat.completions.create_with_completion(
                        model=call.model,
                        messages=messages,
                        response_model=call.response_model,
                        # instructor's (v2) retry loop counts re-asks after the first ask: 1 + N asks in all.
                        max_retries=settings.validation_retries,
                        timeout=settings.timeout_s,
                        **kwargs,
                    ),
                    timeout=settings.timeout_s + 5,
                )
            except Exception as exc:
                pacer.finished()
                kind, retry_after, message = classify(exc, litellm)
                last_error = message
                reachability.attempt_ended(connected=not _is_unreachable(exc), error=message)
                if reachability.progress.judge_unreachable:
                    return Outcome(call, "error", error=f"{message} ({reachability.progress.judge_unreachable})", attempts=attempt, latency_ms=_ms(started))
                if kind == "invalid":
                    usage = getattr(exc, "total_usage", None) or getattr(getattr(exc, "last_completion", None), "usage", None)
                    prompt, completion_tokens = _usage_tokens(usage)
                    return Outcome(call, "unscored", error=message, attempts=attempt, latency_ms=_ms(started), prompt_tokens=prompt, completion_tokens=completion_tokens, cost_usd=price(call.model, prompt, completion_tokens))
                if kind == "fatal" or attempt == settings.max_attempts:
                    return Outcome(call, "error", error=message, attempts=attempt, latency_ms=_ms(started))
                delay = retry_after if retry_after is not None else min(settings.backoff_max_s, settings.backoff_base_s * 2 ** (attempt - 1))
                await asyncio.sleep(delay * random.uniform(1.0, 1.25))
                continue
            pacer.finished()
            reachability.attempt_ended(connected=True)
            prompt, completion_tokens = _usage_tokens(getattr(completion, "usage", None))
            # A judge can echo what it was sent in its reasoning too; the answer is cached and stored.
            verdicts = {criterion_id: redact_data(value.model_dump()) for criterion_id, value in verdicts_by_id(answer).items()}
            return Outcome(call, "ok", verdicts, attempts=attempt, latency_ms=_ms(started), prompt_tokens=prompt, completion_tokens=completion_tokens, cost_usd=price(call.model, prompt, completion_tokens))
        return Outcome(call, "error", error=last_error, attempts=settings.max_attempts, latency_ms=_ms(started))


class _Reachability:
    """Counts attempts in a row that could not connect to the judge at all; at the limit it
    marks the run's progress as stopped, so no further call starts and no retry waits."""

    def __init__(self, limit: int, progress: Progress):
        self.limit = limit
        self.progress = progress
        self.failures_in_a_row = 0

    def attempt_ended(self, connected: bool, error: str = "") -> None:
        if connected:
            self.failures_in_a_row = 0
            return
        self.failures_in_a_row += 1
        if self.limit and self.failures_in_a_row >= self.limit and not self.progress.judge_unreachable:
            self.progress.judge_unreachable = f"the judge was unreachable for {self.failures_in_a_row} attempts in a row ({error})"


# Exceptions (by class name, across httpx, aiohttp, openai and litellm) that mean no connection
# could be opened at all, as opposed to a server that answered badly or slowly.
_CONNECT_FAILURES = {"ConnectError", "ClientConnectorError", "ClientConnectorDNSError", "ConnectionRefusedError", "gaierror"}


# What the OpenAI SDK says, through litellm, for every transport failure that is not a timeout;
# litellm keeps no cause chain (its __context__ is an unrelated RuntimeError), so the text is all
# there is. A server that drops every connection is as unusable as one that refuses them.
_SDK_CONNECTION_ERROR = "Connection error."


def _is_unreachable(exc: BaseException | None) -> bool:
    seen = 0
    while exc is not None and seen < 10:
        if type(exc).__name__ in _CONNECT_FAILURES or str(exc).endswith(_SDK_CONNECTION_ERROR):
            return True
        exc, seen = exc.__cause__ or exc.__context__, seen + 1
    return False


def classify(exc: BaseException, litellm: Any) -> tuple[str, float | None, str]:
    """(transient | invalid | fatal, Retry-After seconds, message) for a failed attempt."""
    from instructor.core import IncompleteOutputException, InstructorRetryException

    if isinstance(exc, IncompleteOutputException):
        # The judge did answer, but its answer was cut off at max_tokens (instructor raises this unwrapped).
        return "invalid", None, f"invalid answer: {_short(exc)}"
    if isinstance(exc, InstructorRetryException):
        cause = exc.__cause__ or exc.__context__
        inner = _unwrap(cause)
        if inner is not None and not _is_validation(inner):
            return classify(inner, litellm)
        return "invalid", None, f"invalid answer after {exc.n_attempts} attempt(s): {_short(exc)}"
    if isinstance(exc, asyncio.TimeoutError | litellm.Timeout):
        return "transient", None, "timed out"
    if isinstance(exc, JudgeConnectionError):
        return "transient", None, f"no usable answer: {_short(exc)}"
    if isinstance(exc, litellm.RateLimitError):
        return "transient", _retry_after(exc), f"rate limited (429): {_short(exc)}"
    transient = (litellm.InternalServerError, litellm.ServiceUnavailableError, litellm.APIConnectionError, litellm.BadGatewayError)
    if isinstance(exc, transient):
        return "transient", _retry_after(exc), f"server error: {_short(exc)}"
    status = getattr(exc, "status_code", None)
    if isinstance(status, int) and (status == 429 or status >= 500):
        return "transient", _retry_after(exc), f"HTTP {status}: {_short(exc)}"
    return "fatal", None, f"{type(exc).__name__}: {_short(exc)}"


def _unwrap(exc: BaseException | None) -> BaseException | None:
    seen = 0
    while exc is not None and seen < 5:
        if not _is_retry_wrapper(exc):
            return exc
        exc = exc.__cause__ or exc.__context__
        seen += 1
    return exc


def _is_retry_wrapper(exc: BaseException) -> bool:
    return type(exc).__name__ in ("RetryError", "InstructorRetryException")


def _is_validation(exc: BaseException) -> bool:
    import json

    from pydantic import ValidationError

    return isinstance(exc, ValidationError | json.JSONDecodeError) or type(exc).__name__ in ("IncompleteOutputException", "ValidationError")


def _retry_after(exc: BaseException) -> float | None:
    # litellm keeps the provider's headers on the exception, not on exc.response; the direct
    # transport's JudgeHTTPError keeps them as `headers`.
    headers = (getattr(exc, "litellm_response_headers", None) or getattr(exc, "headers", None)
               or getattr(getattr(exc, "response", None), "headers", None) or {})
    value = headers.get("retry-after") if hasattr(headers, "get") else None
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None


def _short(exc: BaseException) -> str:
    """The exception's message on one line, secrets redacted before it is cut (a cut could
    leave part of a key that no longer matches), at most 500 characters."""
    text = " ".join(redact(str(exc)).split())
    return text[:500]


def _usage_tokens(usage: Any) -> tuple[int, int]:
    if usage is None:
        return 0, 0
    get = usage.get if isinstance(usage, dict) else (lambda k, d=0: getattr(usage, k, d))
    return int(get("prompt_tokens", 0) or 0), int(get("completion_tokens", 0) or 0)


def _ms(started: float) -> float:
    return (time.perf_counter() - started) * 1000.0


def _instructor_client(completion: Completion, structured_output: str) -> Any:
    import logging

    import instructor

    # instructor logs every failed attempt at ERROR on stderr (two lines each: 600 KB for a run
    # against a judge that is down). Each call's outcome and error are recorded by the executor
    # and stored in judge_calls, so its log adds only noise under the progress bar.
    logging.getLogger("instructor").setLevel(logging.CRITICAL)

    # from_litellm takes any OpenAI-shaped async completion function, which both transports are.
    return instructor.from_litellm(completion, mode=getattr(instructor.Mode, INSTRUCTOR_MODES[structured_output]))


def _encoded(part: ImagePart) -> EncodedImage:
    encoded = encoded_image(part.path, part.label, part.strip, part.max_side)
    if encoded.sha256 != part.info.sha256:
        raise RuntimeError(f"{part.path} changed after the run was planned; re-run to judge the new file")
    return encoded


def build_messages(call: JudgeCall) -> list[dict[str, Any]]:
    """OpenAI-style chat messages: the system prompt, then text and image parts in order."""
    content: list[dict[str, Any]] = []
    for part in call.parts:
        if isinstance(part, TextPart):
            content.append({"type": "text", "text": part.text})
        else:
            content.append({"type": "image_url", "image_url": {"url": _encoded(part).data_url()}})
    messages: list[dict[str, Any]] = []
    if call.system:
        messages.append({"role": "system", "content": call.system})
    messages.append({"role": "user", "content": content})
    return messages
