"""One long-lived judging loop for a server: every request's calls go through the same
`Executor.run_async` (its cache lookups, concurrency, pacing, 429/5xx retries and backoff),
fed by a queue instead of a planned run, so `--concurrency` and `--rpm` hold across requests.

Calls with the same cache key that are in flight at once are judged once (a repeated item, or
the same rollout in two requests); each waiter gets the outcome with its own call.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import replace
from typing import TYPE_CHECKING

from rubric_judge.judge.executor import Executor, ExecutorSettings, Outcome, Progress
from rubric_judge.redaction import redact

if TYPE_CHECKING:
    from rubric_judge.cache.verdicts import VerdictCache
    from rubric_judge.planning.compile import JudgeCall

LOG = logging.getLogger("rubric_judge.serve")


class JudgeLoop:
    """Judges calls submitted at any time; `submit` returns a future of the call's `Outcome`."""

    def __init__(self, cache: VerdictCache, settings: ExecutorSettings):
        self.executor = Executor(cache, settings)
        self.progress = Progress()
        self.progress.listeners.append(self._finished)
        self._queue: asyncio.Queue[JudgeCall | None] = asyncio.Queue()
        self._waiting: dict[str, list[tuple[JudgeCall, asyncio.Future[Outcome]]]] = {}
        self._task: asyncio.Task | None = None
        self._closing = False

    def start(self) -> None:
        self._task = asyncio.create_task(self._supervise(), name="rubric-judge-serve-judging")

    def submit(self, call: JudgeCall) -> asyncio.Future[Outcome]:
        future: asyncio.Future[Outcome] = asyncio.get_running_loop().create_future()
        waiters = self._waiting.get(call.cache_key)
        if waiters is not None:  # the same judgment is already on its way
            waiters.append((call, future))
            return future
        self._waiting[call.cache_key] = [(call, future)]
        self._queue.put_nowait(call)
        return future

    @property
    def in_flight(self) -> int:
        return len(self._waiting)

    def _finished(self, outcome: Outcome) -> None:
        for call, future in self._waiting.pop(outcome.call.cache_key, []):
            if not future.done():
                future.set_result(outcome if call is outcome.call else replace(outcome, call=call))

    async def _stream(self):
        while (call := await self._queue.get()) is not None:
            yield call

    async def _supervise(self) -> None:
        """Runs the executor; should it end with an error (the judge client could not be made),
        the calls waiting get an `error` outcome and a fresh executor loop starts."""
        while not self._closing:
            try:
                await self.executor.run_async(self._stream(), self.progress)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # one bad judge client must not take the server down
                message = redact(f"the judging loop failed: {type(exc).__name__}: {exc}")
                LOG.error(message)
                for waiters in self._waiting.values():
                    for call, future in waiters:
                        if not future.done():
                            future.set_result(Outcome(call, "error", error=message))
                self._waiting.clear()
                await asyncio.sleep(1.0)

    async def close(self) -> None:
        self._closing = True
        self._queue.put_nowait(None)
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(BaseException):
                await self._task
