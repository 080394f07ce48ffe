"""Scores reward items either on a running `rubric-judge serve` (POST /v1/score over aiohttp) or,
with no URL, in this process with a `RewardService` of its own, on a private event loop thread.

Configured by arguments or the environment, so a trainer's config needs only an import path:
RUBRIC_JUDGE_SERVE_URL (e.g. http://127.0.0.1:8000), RUBRIC_JUDGE_SERVE_TOKEN (a bearer token),
and, in process, RUBRIC_JUDGE_SERVE_RUBRICS (rubric paths separated by the OS path separator),
RUBRIC_JUDGE_SERVE_JUDGE and RUBRIC_JUDGE_SERVE_API_BASE.
"""

from __future__ import annotations

import asyncio
import json
import os
import threading
from collections.abc import Mapping, Sequence
from concurrent.futures import Future
from typing import Any

CLIENT_TIMEOUT_S = 180.0  # OpenRLHF's own remote reward timeout; the server's --deadline answers before it


class RewardClient:
    """Scores items; results are /v1/score's result objects (dicts).

    Args:
        url: a running server's base URL (default $RUBRIC_JUDGE_SERVE_URL); None = score in process.
        token: bearer token (default $RUBRIC_JUDGE_SERVE_TOKEN).
        service_options: for in-process scoring: `RewardService` keyword arguments, plus `rubrics`
            (default: $RUBRIC_JUDGE_SERVE_RUBRICS).
    """

    def __init__(self, url: str | None = None, token: str | None = None, timeout: float = CLIENT_TIMEOUT_S, **service_options: Any):
        self.url = (url or os.environ.get("RUBRIC_JUDGE_SERVE_URL") or "").rstrip("/") or None
        self.token = token or os.environ.get("RUBRIC_JUDGE_SERVE_TOKEN")
        self.timeout = timeout
        self.service_options = service_options
        self._service = None
        self._session = None
        self._thread_loop: asyncio.AbstractEventLoop | None = None
        self._lock = threading.Lock()

    async def score(self, items: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
        """Score `items` on the caller's event loop (HTTP) or on the in-process service's loop."""
        if self.url is not None:
            return await self._post(items)
        loop = self._service_loop()
        return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(self._score_in_process(items), loop))

    def score_sync(self, items: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
        """`score` for synchronous callers (TRL's reward functions, verl's process pool)."""
        loop = self._service_loop()
        coroutine = self._post(items) if self.url is not None else self._score_in_process(items)
        future: Future = asyncio.run_coroutine_threadsafe(coroutine, loop)
        return future.result()

    async def _post(self, items: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
        import aiohttp

        headers = {"Content-Type": "application/json"}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self.timeout)) as session, \
                session.post(f"{self.url}/v1/score", data=json.dumps({"items": list(items)}), headers=headers) as response:
            body = await response.json(content_type=None)
            if response.status != 200:
                raise RuntimeError(f"rubric-judge serve at {self.url} answered HTTP {response.status}: {body.get('error') if isinstance(body, dict) else body}")
        return body["results"]

    async def _score_in_process(self, items: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
        if self._service is None:
            from rubric_judge.serve.service import RewardService

            options = dict(self.service_options)
            rubrics = options.pop("rubrics", None) or [p for p in os.environ.get("RUBRIC_JUDGE_SERVE_RUBRICS", "").split(os.pathsep) if p]
            options.setdefault("judge", os.environ.get("RUBRIC_JUDGE_SERVE_JUDGE") or None)
            options.setdefault("api_base", os.environ.get("RUBRIC_JUDGE_SERVE_API_BASE") or None)
            service = RewardService(rubrics, **options)
            await service.start()
            self._service = service
        return [result.to_json() for result in await self._service.score(items)]

    def _service_loop(self) -> asyncio.AbstractEventLoop:
        """A private event loop on a daemon thread: the in-process service lives there, and sync callers' requests run there."""
        with self._lock:
            if self._thread_loop is None:
                loop = asyncio.new_event_loop()
                threading.Thread(target=loop.run_forever, name="rubric-judge-reward-client", daemon=True).start()
                self._thread_loop = loop
            return self._thread_loop

    def close(self) -> None:
        """Close the in-process service (finishing its serve runs) and stop the private loop."""
        loop = self._thread_loop
        if loop is None:
            return
        if self._service is not None:
            asyncio.run_coroutine_threadsafe(self._service.close(), loop).result()
            self._service = None
        loop.call_soon_threadsafe(loop.stop)
        self._thread_loop = None


def label_item(label: Any, response: str, ident: str | None = None) -> dict[str, Any]:
    """A /v1/score item from a label ({"rubric", "task"?, "inputs", "outputs"?, "response_field"?},
    or its JSON text) and the policy's response text, which the server puts in the rubric's first
    text output (or the label's `response_field`)."""
    if isinstance(label, str):
        try:
            label = json.loads(label)
        except json.JSONDecodeError:
            label = {"unreadable_label": label}  # the server answers it as invalid_item, naming the key
    if not isinstance(label, Mapping):
        label = {"unreadable_label": repr(label)}
    item = {**label, "response": response}
    if ident is not None and "id" not in item:
        item["id"] = ident
    return item
