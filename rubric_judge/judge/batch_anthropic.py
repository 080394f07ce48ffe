"""Judge calls through Anthropic's Message Batches API (`score --batch` with an `anthropic/` judge).

litellm 1.106.2 retrieves Anthropic batches but cannot create them (its
`AnthropicBatchesConfig.transform_create_batch_request` raises NotImplementedError, and
`acreate_batch` takes no `anthropic` provider), so the endpoints are spoken to directly:

* `POST {base}/v1/messages/batches` with `{"requests": [{"custom_id", "params"}]}`: `params` is
  the Messages API request litellm builds for the same call live (its Anthropic
  transformation, run offline: system prompt apart, data-URI images as base64 image blocks, the
  answer's tool forced with `tool_choice {"type": "tool"}`), so a batch answer and a live answer
  to the same call share the verdict cache;
* `GET {base}/v1/messages/batches/{id}`: `processing_status` in_progress | canceling | ended and
  `request_counts`, turned into an OpenAI batch object for `BatchRecord.update`;
* `GET {base}/v1/messages/batches/{id}/results`: JSONL lines `{"custom_id", "result": {"type":
  succeeded | errored | canceled | expired, "message" | "error"}}`; a message becomes a chat
  completion so that `structured.parse_answer` validates it as the live path does. The results
  are read from the documented path under --api-base, never from the `results_url` a server
  names, so the key goes nowhere else.
* `GET {base}/v1/messages/batches` (newest first): finding the batch of an intent (a command
  killed between create and its record). Anthropic keeps no metadata on a batch, so the batch is
  the oldest one created since the intent was recorded with as many requests, that no row of
  the database holds already.

Limits (`ANTHROPIC_LIMITS`): 100,000 requests or 256 MB per batch; per request, 100 images,
5 MB per image (counted as its base64 text) and 32 MB of request.
Headers: `x-api-key` and `anthropic-version: 2023-06-01`; on the create, `anthropic-beta` with the
betas litellm sends live with the batch's requests (structured outputs in the `json_schema` mode).
"""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from rubric_judge.judge.batch import BatchAPI, BatchLimits, encode_line
from rubric_judge.judge.structured import request_body
from rubric_judge.judge.transport import NO_KEY
from rubric_judge.redaction import redact

if TYPE_CHECKING:
    from rubric_judge.judge.batch_records import BatchRecord
    from rubric_judge.planning.compile import JudgeCall

ANTHROPIC_VERSION = "2023-06-01"
ANTHROPIC_LIMITS = BatchLimits(max_requests=100_000, max_bytes=256 * 1024 * 1024 - 1024,  # less the request list's wrapper
                               max_images_per_request=100, max_image_bytes=5 * 1024 * 1024, max_request_bytes=32 * 1024 * 1024)
# How far before its intent's record a found batch may have been created (clocks differ).
CLOCK_SKEW = timedelta(minutes=5)
FIND_PAGES = 10
# litellm's own flags among the optional params, not Messages API fields: its Anthropic handler
# (llms/anthropic/chat/handler.py) pops them before transform_request, so they are never sent
# live; in a batch request Anthropic refuses them ("json_mode: Extra inputs are not permitted").
LITELLM_ONLY_PARAMS = ("stream", "json_mode", "vertex_count_tokens_location")


def anthropic_params(call: JudgeCall, messages: list[dict[str, Any]]) -> dict[str, Any]:
    """The Messages API request of a call, as litellm sends it live for an `anthropic/` judge.

    Args:
        call: the planned call (model, temperature, max_tokens, structured-output mode).
        messages: its OpenAI-style chat messages (`messages.build_messages`).

    Returns:
        model, system, messages (images as base64 blocks), max_tokens, temperature, and the
        mode's tools / tool_choice (or, in the `json_schema` mode, `output_format`).
    """
    return anthropic_request(call, messages)[0]


def anthropic_request(call: JudgeCall, messages: list[dict[str, Any]]) -> tuple[dict[str, Any], tuple[str, ...]]:
    """A call's Messages API request and the `anthropic-beta` values litellm sends with it live.

    The betas come from litellm's own transformation (which adds them to the headers it is
    given): `output_format`, litellm's `json_schema` mode for models with structured outputs,
    needs `structured-outputs-2025-11-13`, and a batch created without it has every request
    refused.

    Args:
        call: the planned call.
        messages: its OpenAI-style chat messages.

    Returns:
        (the request's params, its beta names in litellm's order; empty when it needs none).
    """
    from litellm.llms.anthropic.chat.transformation import AnthropicConfig
    from litellm.utils import get_optional_params

    from rubric_judge.llm import litellm_module

    litellm_module()  # litellm configured as the live path configures it (local price map, no telemetry)
    body = request_body(call, messages)
    name = call.model.split("/", 1)[1] if call.model.startswith("anthropic/") else call.model
    wanted = {key: body[key] for key in ("temperature", "max_tokens", "tools", "tool_choice", "response_format") if key in body}
    optional = get_optional_params(model=name, custom_llm_provider="anthropic", **wanted)
    for flag in LITELLM_ONLY_PARAMS:
        optional.pop(flag, None)
    headers: dict[str, str] = {}  # transform_request adds the betas the request needs
    params = AnthropicConfig().transform_request(model=name, messages=copy.deepcopy(body["messages"]), optional_params=optional,
                                                 litellm_params={}, headers=headers)
    betas = next((value for key, value in headers.items() if key.lower() == "anthropic-beta"), "")
    return params, tuple(beta.strip() for beta in betas.split(",") if beta.strip())


def chat_completion(message: dict[str, Any]) -> dict[str, Any]:
    """An Anthropic message as the chat completion litellm makes of it, for `parse_answer`:
    tool uses as tool calls (the `tools` mode reads them) and, when there is no text, the first
    tool's input as the content too (the JSON modes read it, as litellm's JSON tool returns it).

    Args:
        message: the Messages API response.
    """
    blocks = [b for b in message.get("content") or [] if isinstance(b, dict)]
    text = "".join(b.get("text") or "" for b in blocks if b.get("type") == "text")
    tools = [b for b in blocks if b.get("type") == "tool_use"]
    reply: dict[str, Any] = {"role": "assistant", "content": text or (json.dumps(tools[0].get("input") or {}) if tools else None)}
    if tools:
        reply["tool_calls"] = [{"id": b.get("id"), "type": "function",
                                "function": {"name": b.get("name"), "arguments": json.dumps(b.get("input") or {})}} for b in tools]
    stop = message.get("stop_reason")
    finish = {"max_tokens": "length", "tool_use": "tool_calls"}.get(str(stop), "stop")
    usage = message.get("usage") or {}
    prompt = sum(int(usage.get(key) or 0) for key in ("input_tokens", "cache_creation_input_tokens", "cache_read_input_tokens"))
    completion = int(usage.get("output_tokens") or 0)
    return {"choices": [{"index": 0, "message": reply, "finish_reason": finish}],
            "usage": {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}}


def openai_batch(batch: dict[str, Any]) -> dict[str, Any]:
    """An Anthropic message batch as the OpenAI batch object `BatchRecord.update` reads."""
    counts = batch.get("request_counts") or {}
    succeeded, errored, canceled, expired, processing = (int(counts.get(k) or 0) for k in ("succeeded", "errored", "canceled", "expired", "processing"))
    state = batch.get("processing_status")
    if state == "ended":
        status = "expired" if expired else "cancelled" if canceled else "completed"
    else:
        status = {"canceling": "cancelling"}.get(str(state), "in_progress")
    return {"id": batch.get("id"), "status": status, "output_file_id": batch.get("results_url"),
            "request_counts": {"total": succeeded + errored + canceled + expired + processing, "completed": succeeded,
                               "failed": errored + canceled + expired}}


def _result_error(result: dict[str, Any]) -> str:
    kind = result.get("type")
    if kind == "errored":
        error = result.get("error") or {}
        detail = error.get("error") if isinstance(error.get("error"), dict) else error
        text = f"{detail.get('type')}: {detail.get('message')}"
    else:
        text = f"{kind}: the request was {kind} before it was processed"
    return " ".join(redact(text).split())[:500]


class AnthropicBatchAPI(BatchAPI):
    """Anthropic's Message Batches endpoints, over one aiohttp session (a `BatchProvider`).

    Args:
        api_base: https://api.anthropic.com, or --api-base (a trailing /v1 is dropped).
        api_key: sent as x-api-key.
        judge_model: the `anthropic/` model string.
        authorization: an Authorization header from credentials in --api-base.
        timeout_s: seconds per HTTP request.
        limits: requests and bytes per batch and per request.
    """

    limits = ANTHROPIC_LIMITS

    def __init__(self, api_base: str, api_key: str | None, judge_model: str, authorization: str | None = None, timeout_s: float = 600.0,
                 limits: BatchLimits | None = None):
        base = api_base.rstrip("/")
        super().__init__(base.removesuffix("/v1"), None, authorization=authorization, timeout_s=timeout_s, limits=limits or ANTHROPIC_LIMITS)
        self.judge_model = judge_model
        self.headers.update({"anthropic-version": ANTHROPIC_VERSION, "content-type": "application/json"})
        if api_key and api_key != NO_KEY:
            self.headers["x-api-key"] = api_key
        self.betas: dict[str, None] = {}  # the anthropic-beta values of every request encoded, in order

    def encode(self, call: JudgeCall, messages: list[dict[str, Any]]) -> bytes:
        params, betas = anthropic_request(call, messages)
        self.betas.update(dict.fromkeys(betas))
        return encode_line({"custom_id": call.cache_key, "params": params})

    async def upload(self, content: bytes) -> str:
        return ""  # the requests travel in the create call

    async def create(self, input_file_id: str, content: bytes = b"", token: str | None = None) -> dict[str, Any]:
        # The encoded lines joined into a JSON list as they are: the requests are encoded once.
        body = b'{"requests":[' + b",".join(line.rstrip(b"\n") for line in content.splitlines() if line.strip()) + b"]}"
        # One header for the whole batch: the betas its requests need live (a superset is harmless).
        headers = {"anthropic-beta": ",".join(self.betas)} if self.betas else {}
        return openai_batch(await self._json("POST", "/v1/messages/batches", data=body, extra_headers=headers))

    async def retrieve(self, batch_id: str) -> dict[str, Any]:
        return openai_batch(await self._json("GET", f"/v1/messages/batches/{batch_id}"))

    async def results(self, record: BatchRecord) -> dict[str, tuple[dict[str, Any] | None, str | None]]:
        raw = await self._request("GET", f"/v1/messages/batches/{record.batch_id}/results")
        results: dict[str, tuple[dict[str, Any] | None, str | None]] = {}
        for text in raw.splitlines():
            if not text.strip():
                continue
            line = json.loads(text)
            result = line.get("result") or {}
            answer = (chat_completion(result.get("message") or {}), None) if result.get("type") == "succeeded" else (None, _result_error(result))
            results.setdefault(str(line.get("custom_id")), answer)
        return results

    async def find(self, intent: BatchRecord, known: set[str]) -> dict[str, Any] | None:
        since = intent.submitted_at.replace(tzinfo=UTC) - CLOCK_SKEW
        candidates: list[dict[str, Any]] = []
        after: str | None = None
        for _ in range(FIND_PAGES):
            page = await self._json("GET", "/v1/messages/batches", params={"limit": "100", **({"after_id": after} if after else {})})
            batches = [b for b in page.get("data") or [] if isinstance(b, dict)]
            older = False
            for batch in batches:
                created = _timestamp(batch.get("created_at"))
                if created is not None and created < since:
                    older = True
                    continue
                if str(batch.get("id")) not in known and openai_batch(batch)["request_counts"]["total"] == len(intent.custom_ids):
                    candidates.append(batch)
            if older or not page.get("has_more") or not batches:
                break
            after = str(page.get("last_id") or batches[-1].get("id"))
        if not candidates:
            return None
        first = min(candidates, key=lambda b: _timestamp(b.get("created_at")) or datetime.max.replace(tzinfo=UTC))
        return openai_batch(first)


def _timestamp(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
