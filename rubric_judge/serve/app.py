"""The reward server's HTTP face: a Starlette (ASGI) app over a `RewardService`.

    POST /get_reward   OpenRLHF's remote reward shape: {"query": [...], "prompts": [...], "labels": [...]}
                       -> {"rewards": [...], "scores": [...], "extra_logs": {...}}
    POST /v1/score     {"items": [{"id", "rubric", "task"?, "inputs", "outputs"}]} -> {"results": [...]}
    GET  /health       {"status": "ok", "rubrics": [...]} (no token needed: for load balancers)
    GET  /metrics      Prometheus text: requests, items by status, judge calls, cache hits, errors, latency quantiles

Each OpenRLHF label is JSON naming the rubric (and the task of a task rubric) and the sample's
inputs: {"rubric": "...", "task": "...", "id": "...", "inputs": {...}, "outputs": {...}}; the
policy's response (the query after its prompt) fills the rubric's first text output, or the
output the label names in "response_field". A request whose body is not the documented shape is
refused with 400 as a whole; an item that cannot be scored gets the fallback reward.

An optional bearer token guards every endpoint but /health; bodies above `max_body_bytes` get 413.
"""

from __future__ import annotations

import hmac
import json
import logging
import time
from contextlib import asynccontextmanager
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from rubric_judge.redaction import redact, register_secret
from rubric_judge.serve.items import INVALID_ITEM, ItemError
from rubric_judge.serve.service import RewardService

LOG = logging.getLogger("rubric_judge.serve")
MAX_BODY_BYTES = 64 * 1024 * 1024
MAX_ITEMS = 4096


class BadRequest(Exception):
    """The request as a whole is not the documented shape (400)."""


def create_app(service: RewardService, token: str | None = None, max_body_bytes: int = MAX_BODY_BYTES, max_items: int = MAX_ITEMS) -> Starlette:
    """The ASGI app; its lifespan starts and closes `service`.

    Args:
        service: the reward service (not yet started).
        token: when given, requests other than GET /health must send `Authorization: Bearer <token>`.
        max_body_bytes: larger bodies are refused with 413 before they are read in full.
        max_items: most items (or OpenRLHF queries) in one request.
    """
    register_secret(token)

    def authorized(request: Request) -> bool:
        if not token:
            return True
        given = request.headers.get("authorization", "")
        return hmac.compare_digest(given.encode(), f"Bearer {token}".encode())

    async def read_json(request: Request) -> Any:
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > max_body_bytes:
            raise _TooLarge()
        body = bytearray()
        async for chunk in request.stream():
            body.extend(chunk)
            if len(body) > max_body_bytes:
                raise _TooLarge()
        try:
            return json.loads(body)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise BadRequest(f"the body is not valid JSON: {exc}") from None

    def guarded(endpoint):
        async def handler(request: Request) -> Response:
            service.stats.request(request.scope["path"])  # not request.url: it parses the whole URL
            if not authorized(request):
                return JSONResponse({"error": "missing or wrong bearer token"}, status_code=401, headers={"WWW-Authenticate": "Bearer"})
            try:
                return await endpoint(request)
            except _TooLarge:
                return JSONResponse({"error": f"the body is larger than {max_body_bytes} bytes"}, status_code=413)
            except BadRequest as exc:
                return JSONResponse({"error": redact(str(exc))}, status_code=400)
        return handler

    async def score(request: Request) -> Response:
        started = time.monotonic()
        body = await read_json(request)
        items = body.get("items") if isinstance(body, dict) else None
        if not isinstance(items, list):
            raise BadRequest('expected {"items": [{"id", "rubric", "inputs", "outputs"}, ...]}')
        _check_count(len(items), max_items)
        results = await service.score(items, started)
        return JSONResponse({"results": [r.to_json() for r in results]})

    async def get_reward(request: Request) -> Response:
        started = time.monotonic()
        body = await read_json(request)
        if not isinstance(body, dict) or not isinstance(body.get("query"), list):
            raise BadRequest('expected {"query": [...], "prompts": [...], "labels": [...]} (OpenRLHF remote reward)')
        queries = body["query"]
        _check_count(len(queries), max_items)
        prompts = body.get("prompts") or [None] * len(queries)
        labels = body.get("labels") or [None] * len(queries)
        if not isinstance(prompts, list) or not isinstance(labels, list) or len(prompts) != len(queries) or len(labels) != len(queries):
            raise BadRequest(f"`query`, `prompts` and `labels` must be lists of the same length ({len(queries)} queries)")
        items = [openrlhf_item(q, p, label, i) for i, (q, p, label) in enumerate(zip(queries, prompts, labels, strict=True))]
        results = await service.score(items, started)
        rewards = [r.reward for r in results]
        return JSONResponse({
            "rewards": rewards,
            "scores": rewards,
            # OpenRLHF concatenates each key's per-sample values across requests: numbers only.
            "extra_logs": {"rubric_fallback": [float(r.fallback) for r in results], "rubric_cached": [float(r.cached) for r in results]},
        })

    async def health(request: Request) -> Response:
        service.stats.request(request.scope["path"])
        return JSONResponse({"status": "ok", "rubrics": sorted(service.rubrics), "judge": service.judge_model})

    async def metrics(request: Request) -> Response:
        progress = service.judge_progress
        text = service.stats.prometheus(progress.done if progress else 0, progress.cache_hits if progress else 0,
                                        progress.errors if progress else 0, service.in_flight, service.log_errors)
        return PlainTextResponse(text, media_type="text/plain; version=0.0.4")

    @asynccontextmanager
    async def lifespan(app: Starlette):
        await service.start()
        try:
            yield
        finally:
            await service.close()

    routes = [
        Route("/get_reward", guarded(get_reward), methods=["POST"]),
        Route("/v1/score", guarded(score), methods=["POST"]),
        Route("/health", health, methods=["GET"]),
        Route("/metrics", guarded(metrics), methods=["GET"]),
    ]
    return Starlette(routes=routes, lifespan=lifespan)


class _TooLarge(Exception):
    pass


def _check_count(count: int, limit: int) -> None:
    if count > limit:
        raise BadRequest(f"{count} items in one request; at most {limit}")


def openrlhf_item(query: Any, prompt: Any, label: Any, index: int) -> Any:
    """One OpenRLHF sample as a /v1/score item: the label's rubric and inputs, and the response
    (the query after its prompt) in the rubric's text output. A label that cannot be read makes
    an item the service answers with the fallback (`invalid_item`), naming the problem."""
    try:
        if not isinstance(query, str):
            raise ItemError(INVALID_ITEM, "each query must be a string")
        if isinstance(label, str):
            try:
                label = json.loads(label)
            except json.JSONDecodeError:
                raise ItemError(INVALID_ITEM, 'the label is not JSON; expected {"rubric": ..., "inputs": {...}}') from None
        if not isinstance(label, dict):
            raise ItemError(INVALID_ITEM, 'the label must be a JSON object {"rubric": ..., "task"?: ..., "inputs": {...}}')
        response = query[len(prompt):] if isinstance(prompt, str) and query.startswith(prompt) else query
        return {**label, "response": response.strip()}
    except ItemError as exc:
        exc.item_id = label.get("id") if isinstance(label, dict) and isinstance(label.get("id"), str) else None
        return exc
