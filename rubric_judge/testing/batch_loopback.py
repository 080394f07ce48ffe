"""The loopback judge with OpenAI's Files and Batch APIs, for `score --batch` without a network.

`BatchLoopbackJudge` serves what `LoopbackJudge` serves (live chat completions) and:

* `POST /v1/files` (multipart: `purpose=batch`, `file`), `GET /v1/files/{id}`, `GET /v1/files/{id}/content`;
* `POST /v1/batches` (`input_file_id`, `endpoint` "/v1/chat/completions", `completion_window` "24h"),
  `GET /v1/batches/{id}`.

Each JSONL line is answered exactly as a live request with the same body would be (the same
policy and per-request faults: `faults` / `fault_rule`), so a batch run and a live run give the
same verdicts. A batch goes `validating` -> `in_progress` -> its end state as it is polled:
`polls_to_finish` polls see it in progress. Output and error files have OpenAI's line format:
`{"id", "custom_id", "response": {"status_code", "request_id", "body"}, "error"}`; requests
answered with HTTP >= 400 go to the error file, as OpenAI puts them there.

It also serves Anthropic's Messages API and Message Batches API, by translating each Anthropic
request to the chat-completions body it stands for (system prompt, base64 image blocks as data
URLs, the forced tool as a forced function, a structured-outputs `output_format` JSON schema as a
`json_schema` response format) and the answer back (tool calls as `tool_use` blocks, finish
reasons as stop reasons, usage as input/output tokens). As Anthropic does, a request with a
field the Messages API does not take is refused (`invalid_request_error`), and so is one with
`output_format` unless the request's `anthropic-beta` header (a batch's: its create request's)
names the structured-outputs beta:

* `POST /v1/messages` (live), `POST /v1/messages/batches` (`{"requests": [{"custom_id", "params"}]}`),
  `GET /v1/messages/batches` (newest first, `after_id` pages), `GET /v1/messages/batches/{id}`
  (`processing_status`, `request_counts`), `GET /v1/messages/batches/{id}/results` (JSONL of
  `{"custom_id", "result": {"type": succeeded | errored | expired, "message" | "error"}}`).

The batch faults below apply to both kinds of batch (Anthropic has no failed batch: `fail`
ends every request `errored`). `GET /v1/batches` lists OpenAI batches newest first, with
their metadata.

`http_requests` counts every HTTP request received, of any endpoint.

Faults a test can inject, besides the per-request ones:

* `upload_faults`: a queue of HTTP statuses for the next uploads (e.g. 500: the upload fails);
* `batch_faults`: a queue of `BatchFault`s for the next batches created: `expire` (only the first
  half is answered; the rest are in the error file as `batch_expired`, status `expired`),
  `fail` (status `failed`, batch-level errors, no files), `partial_output` (status `completed`,
  but the last request is in neither file).
"""

from __future__ import annotations

import itertools
import json
import time
from collections import deque
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from aiohttp import web

from rubric_judge.testing.loopback import LoopbackJudge, _error_response

TERMINAL = ("completed", "failed", "expired", "cancelled")
STRUCTURED_OUTPUTS_BETA = "structured-outputs-"  # Anthropic's beta for `output_format` (structured-outputs-2025-11-13)
# The Messages API's request fields: Anthropic refuses any other ("x: Extra inputs are not permitted").
ANTHROPIC_FIELDS = frozenset({"model", "messages", "max_tokens", "system", "temperature", "top_p", "top_k", "stop_sequences", "stream", "metadata",
                              "tools", "tool_choice", "thinking", "service_tier", "container", "mcp_servers", "context_management",
                              "output_config", "output_format"})


class BatchFault(StrEnum):
    expire = "expire"
    fail = "fail"
    partial_output = "partial_output"


_ids = itertools.count(1)


def _new_id(prefix: str) -> str:
    return f"{prefix}-{next(_ids):08x}"


class BatchLoopbackJudge(LoopbackJudge):
    """`LoopbackJudge` plus OpenAI-compatible files and batches (see the module docstring)."""

    def __init__(self, *args: Any, polls_to_finish: int = 1, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.polls_to_finish = polls_to_finish
        self.upload_faults: deque[int] = deque()
        self.batch_faults: deque[BatchFault | str | None] = deque()
        self.files: dict[str, dict[str, Any]] = {}
        self.batches: dict[str, dict[str, Any]] = {}
        self.batch_lines: list[dict[str, Any]] = []  # every JSONL request line answered, in order
        self.uploads = 0  # upload attempts, failed ones included
        self.polls = 0
        self.http_requests = 0  # every HTTP request received, of any endpoint (a re-run that should ask nothing counts them)
        self._batch_state: dict[str, dict[str, Any]] = {}
        self.anthropic_requests: dict[str, list[dict[str, Any]]] = {}  # batch id -> its requests
        self.anthropic_headers: list[dict[str, str]] = []  # the headers of every Anthropic request
        self._anthropic_output: dict[str, bytes] = {}

    @property
    def created_batches(self) -> list[str]:
        """Ids of every batch created, in order (a test of 'never submits twice' counts them)."""
        with self._lock:
            return list(self.batches)

    def input_lines(self, batch_id: str) -> list[dict[str, Any]]:
        """The decoded JSONL request lines of a batch's input file (an Anthropic batch's requests)."""
        if batch_id in self.anthropic_requests:
            return list(self.anthropic_requests[batch_id])
        file_id = self.batches[batch_id]["input_file_id"]
        return [json.loads(line) for line in self.files[file_id]["content"].splitlines() if line.strip()]

    def _add_routes(self, app: web.Application) -> None:
        app.middlewares.append(self._count_requests)
        for prefix in ("/v1", ""):
            app.router.add_post(f"{prefix}/files", self._upload)
            app.router.add_get(f"{prefix}/files/{{file_id}}", self._file)
            app.router.add_get(f"{prefix}/files/{{file_id}}/content", self._file_content)
            app.router.add_post(f"{prefix}/batches", self._create_batch)
            app.router.add_get(f"{prefix}/batches", self._list_batches)
            app.router.add_get(f"{prefix}/batches/{{batch_id}}", self._retrieve_batch)
        app.router.add_post("/v1/messages", self._anthropic_message)
        app.router.add_post("/v1/messages/batches", self._anthropic_create)
        app.router.add_get("/v1/messages/batches", self._anthropic_list)
        app.router.add_get("/v1/messages/batches/{batch_id}", self._anthropic_retrieve)
        app.router.add_get("/v1/messages/batches/{batch_id}/results", self._anthropic_results)

    @web.middleware
    async def _count_requests(self, request: web.Request, handler: Any) -> web.StreamResponse:
        with self._lock:
            self.http_requests += 1
        return await handler(request)

    # -- files ------------------------------------------------------------------------------

    async def _upload(self, request: web.Request) -> web.Response:
        self.uploads += 1
        if self.upload_faults:
            status = self.upload_faults.popleft()
            return _error_response(status, f"upload failed (injected by the loopback judge, HTTP {status})", "server_error")
        try:
            form = await request.post()
        except Exception as exc:  # not multipart
            return _error_response(400, f"expected a multipart upload: {exc}", "invalid_request_error")
        purpose, upload = form.get("purpose"), form.get("file")
        if purpose != "batch" or not isinstance(upload, web.FileField):
            return _error_response(400, "send purpose=batch and a `file` part", "invalid_request_error")
        content = upload.file.read()
        return web.json_response(self._store_file(content, upload.filename or "input.jsonl", "batch"))

    def _store_file(self, content: bytes, filename: str, purpose: str) -> dict[str, Any]:
        file_id = _new_id("file")
        meta = {"id": file_id, "object": "file", "bytes": len(content), "created_at": int(time.time()), "filename": filename, "purpose": purpose}
        with self._lock:
            self.files[file_id] = {**meta, "content": content}
        return meta

    async def _file(self, request: web.Request) -> web.Response:
        stored = self.files.get(request.match_info["file_id"])
        if stored is None:
            return _error_response(404, "no such file", "invalid_request_error")
        return web.json_response({key: value for key, value in stored.items() if key != "content"})

    async def _file_content(self, request: web.Request) -> web.Response:
        stored = self.files.get(request.match_info["file_id"])
        if stored is None:
            return _error_response(404, "no such file", "invalid_request_error")
        return web.Response(body=stored["content"], content_type="application/octet-stream")

    # -- batches ----------------------------------------------------------------------------

    async def _create_batch(self, request: web.Request) -> web.Response:
        try:
            body = await request.json()
        except ValueError:
            return _error_response(400, "request body is not JSON", "invalid_request_error")
        input_file_id = body.get("input_file_id")
        if input_file_id not in self.files:
            return _error_response(400, f"no such file {input_file_id!r}", "invalid_request_error")
        if body.get("endpoint") != "/v1/chat/completions" or body.get("completion_window") != "24h":
            return _error_response(400, "endpoint must be /v1/chat/completions and completion_window 24h", "invalid_request_error")
        lines = [line for line in self.files[input_file_id]["content"].splitlines() if line.strip()]
        batch_id = _new_id("batch")
        batch = {
            "id": batch_id, "object": "batch", "endpoint": body["endpoint"], "errors": None, "input_file_id": input_file_id,
            "completion_window": "24h", "status": "validating", "output_file_id": None, "error_file_id": None,
            "created_at": int(time.time()), "request_counts": {"total": len(lines), "completed": 0, "failed": 0},
            "metadata": body.get("metadata"),
        }
        fault = self.batch_faults.popleft() if self.batch_faults else None
        with self._lock:
            self.batches[batch_id] = batch
            self._batch_state[batch_id] = {"polls": 0, "fault": BatchFault(fault) if fault else None}
        return web.json_response(batch)

    async def _retrieve_batch(self, request: web.Request) -> web.Response:
        batch_id = request.match_info["batch_id"]
        batch = self.batches.get(batch_id)
        if batch is None:
            return _error_response(404, "no such batch", "invalid_request_error")
        self.polls += 1
        state = self._batch_state[batch_id]
        if batch["status"] not in TERMINAL:
            state["polls"] += 1
            if state["polls"] > self.polls_to_finish:
                self._finish(batch, state["fault"])
            else:
                batch["status"] = "in_progress"
        return web.json_response(batch)

    def _finish(self, batch: dict[str, Any], fault: BatchFault | None) -> None:
        if fault is BatchFault.fail:
            batch.update(status="failed", errors={"object": "list", "data": [
                {"code": "invalid_request", "message": "the batch failed (injected by the loopback judge)", "param": None, "line": 1}]})
            return
        lines = [json.loads(line) for line in self.files[batch["input_file_id"]]["content"].splitlines() if line.strip()]
        answered = lines[: len(lines) // 2] if fault is BatchFault.expire else lines
        if fault is BatchFault.partial_output:
            answered = lines[:-1]
        output, errors = [], []
        for line in answered:
            body = line["body"]
            with self._lock:
                index = len(self._requests) + len(self.batch_lines)
                self.batch_lines.append(line)
            response = self._respond(body, self._next_fault(body, index))
            result = {"id": _new_id("batch_req"), "custom_id": line["custom_id"],
                      "response": {"status_code": response.status, "request_id": _new_id("req"), "body": json.loads(response.body)}, "error": None}
            (output if response.status < 400 else errors).append(result)
        if fault is BatchFault.expire:
            errors += [{"id": _new_id("batch_req"), "custom_id": line["custom_id"], "response": None,
                        "error": {"code": "batch_expired", "message": "This request could not be executed before the completion window expired."}}
                       for line in lines[len(answered):]]
        batch["request_counts"] = {"total": len(lines), "completed": len(output), "failed": len(errors)}
        if output:
            batch["output_file_id"] = self._store_file(_jsonl(output), "batch_output.jsonl", "batch_output")["id"]
        if errors:
            batch["error_file_id"] = self._store_file(_jsonl(errors), "batch_errors.jsonl", "batch_output")["id"]
        batch["status"] = "expired" if fault is BatchFault.expire else "completed"


    async def _list_batches(self, request: web.Request) -> web.Response:
        with self._lock:
            batches = [b for b in reversed(self.batches.values()) if b.get("object") == "batch"]
        return web.json_response({"object": "list", "data": batches, "has_more": False})

    # -- Anthropic ----------------------------------------------------------------------------

    def _anthropic_answer(self, params: dict[str, Any], index: int) -> tuple[int, dict[str, Any]]:
        """(HTTP status, Anthropic message or error body) for one Messages API request."""
        body = chat_body(params)
        response = self._respond(body, self._next_fault(body, index))
        payload = json.loads(response.body)
        if response.status >= 400:
            error = payload.get("error") or {}
            return response.status, {"type": "error", "error": {"type": error.get("type") or "api_error", "message": error.get("message")}}
        return response.status, anthropic_message(payload)

    async def _anthropic_message(self, request: web.Request) -> web.Response:
        params = await request.json()
        with self._lock:
            index = len(self._requests) + len(self.batch_lines)
            self._requests.append(params)
            self._headers.append(dict(request.headers))
            self.anthropic_headers.append(dict(request.headers))
        refused = _params_refusal(params, request.headers)
        if refused is not None:
            return web.json_response(refused, status=400)
        status, payload = self._anthropic_answer(params, index)
        return web.json_response(payload, status=status)

    async def _anthropic_create(self, request: web.Request) -> web.Response:
        with self._lock:
            self.anthropic_headers.append(dict(request.headers))
        body = await request.json()
        requests = body.get("requests") if isinstance(body, dict) else None
        if not requests or any(not isinstance(r, dict) or "custom_id" not in r or "params" not in r for r in requests):
            return web.json_response({"type": "error", "error": {"type": "invalid_request_error", "message": "send requests: [{custom_id, params}]"}},
                                     status=400)
        batch_id = _new_id("msgbatch")
        now = datetime.now(UTC).isoformat().replace("+00:00", "Z")
        batch = {"id": batch_id, "type": "message_batch", "processing_status": "in_progress", "created_at": now, "ended_at": None,
                 "request_counts": {"processing": len(requests), "succeeded": 0, "errored": 0, "canceled": 0, "expired": 0},
                 "results_url": None}
        fault = self.batch_faults.popleft() if self.batch_faults else None
        with self._lock:
            self.batches[batch_id] = batch
            self.anthropic_requests[batch_id] = requests
            # Anthropic validates each request's params when the batch is processed, with the create's beta header.
            self._batch_state[batch_id] = {"polls": 0, "fault": BatchFault(fault) if fault else None,
                                           "headers": {key.lower(): value for key, value in request.headers.items()}}
        return web.json_response(batch)

    async def _anthropic_list(self, request: web.Request) -> web.Response:
        with self._lock:
            batches = [b for b in reversed(self.batches.values()) if b.get("type") == "message_batch"]
        after = request.query.get("after_id")
        if after:
            ids = [b["id"] for b in batches]
            batches = batches[ids.index(after) + 1:] if after in ids else []
        limit = int(request.query.get("limit", "20"))
        page = batches[:limit]
        return web.json_response({"data": page, "has_more": len(batches) > limit, "first_id": page[0]["id"] if page else None,
                                  "last_id": page[-1]["id"] if page else None})

    async def _anthropic_retrieve(self, request: web.Request) -> web.Response:
        with self._lock:
            self.anthropic_headers.append(dict(request.headers))
        batch_id = request.match_info["batch_id"]
        batch = self.batches.get(batch_id)
        if batch is None or batch.get("type") != "message_batch":
            return web.json_response({"type": "error", "error": {"type": "not_found_error", "message": "no such batch"}}, status=404)
        self.polls += 1
        state = self._batch_state[batch_id]
        if batch["processing_status"] != "ended":
            state["polls"] += 1
            if state["polls"] > self.polls_to_finish:
                self._anthropic_finish(batch, state["fault"])
        return web.json_response(batch)

    def _anthropic_finish(self, batch: dict[str, Any], fault: BatchFault | None) -> None:
        requests = self.anthropic_requests[batch["id"]]
        answered = requests[: len(requests) // 2] if fault is BatchFault.expire else requests[:-1] if fault is BatchFault.partial_output else requests
        rows = []
        counts = {"processing": 0, "succeeded": 0, "errored": 0, "canceled": 0, "expired": 0}
        for item in answered:
            with self._lock:
                index = len(self._requests) + len(self.batch_lines)
                self.batch_lines.append(item)
            refused = _params_refusal(item["params"], self._batch_state[batch["id"]]["headers"])
            if fault is BatchFault.fail:
                status, payload = 500, {"type": "error", "error": {"type": "api_error", "message": "the batch failed (injected by the loopback judge)"}}
            elif refused is not None:
                status, payload = 400, refused
            else:
                status, payload = self._anthropic_answer(item["params"], index)
            result = {"type": "succeeded", "message": payload} if status < 400 else {"type": "errored", "error": payload}
            counts[result["type"]] += 1
            rows.append({"custom_id": item["custom_id"], "result": result})
        if fault is BatchFault.expire:
            rows += [{"custom_id": item["custom_id"], "result": {"type": "expired"}} for item in requests[len(answered):]]
            counts["expired"] += len(requests) - len(answered)
        self._anthropic_output[batch["id"]] = _jsonl(rows)
        batch.update(processing_status="ended", request_counts=counts, ended_at=datetime.now(UTC).isoformat().replace("+00:00", "Z"),
                     results_url=f"{self.base_url.removesuffix('/v1')}/v1/messages/batches/{batch['id']}/results")

    async def _anthropic_results(self, request: web.Request) -> web.Response:
        with self._lock:
            self.anthropic_headers.append(dict(request.headers))
        content = self._anthropic_output.get(request.match_info["batch_id"])
        if content is None:
            return web.json_response({"type": "error", "error": {"type": "not_found_error", "message": "no results (yet)"}}, status=404)
        return web.Response(body=content, content_type="application/binary")


def chat_body(params: dict[str, Any]) -> dict[str, Any]:
    """The chat-completions body an Anthropic Messages request stands for (for the policy)."""
    messages: list[dict[str, Any]] = []
    system = params.get("system")
    if system:
        text = system if isinstance(system, str) else "\n".join(b.get("text") or "" for b in system if isinstance(b, dict))
        messages.append({"role": "system", "content": text})
    for message in params.get("messages") or []:
        content = message.get("content")
        if isinstance(content, list):
            parts = []
            for block in content:
                if block.get("type") == "image":
                    source = block.get("source") or {}
                    parts.append({"type": "image_url", "image_url": {"url": f"data:{source.get('media_type')};base64,{source.get('data')}"}})
                elif block.get("type") == "text":
                    parts.append({"type": "text", "text": block.get("text") or ""})
                else:
                    parts.append({"type": "text", "text": json.dumps(block)})
            content = parts
        messages.append({"role": message.get("role"), "content": content})
    body: dict[str, Any] = {"model": params.get("model"), "messages": messages, "max_tokens": params.get("max_tokens")}
    if "temperature" in params:
        body["temperature"] = params["temperature"]
    tools = params.get("tools") or []
    if tools:
        body["tools"] = [{"type": "function", "function": {"name": t.get("name"), "description": t.get("description"),
                                                           "parameters": t.get("input_schema") or {}}} for t in tools]
    choice = params.get("tool_choice") or {}
    if choice.get("type") == "tool":
        body["tool_choice"] = {"type": "function", "function": {"name": choice.get("name")}}
    output_format = params.get("output_format") or {}
    if output_format.get("type") == "json_schema":  # structured outputs: the answer is JSON text of this schema
        body["response_format"] = {"type": "json_schema", "json_schema": {"name": "output", "schema": output_format.get("schema") or {}}}
    return body


def _params_refusal(params: dict[str, Any], headers: Any) -> dict[str, Any] | None:
    """Anthropic's error for a Messages request with a field the API does not take, or with
    `output_format` without the structured-outputs beta header (headers: a mapping with
    case-insensitive or lower-case keys); None for a request it takes."""
    betas = [beta.strip() for beta in str(headers.get("anthropic-beta") or "").split(",")]
    allowed = ANTHROPIC_FIELDS if any(beta.startswith(STRUCTURED_OUTPUTS_BETA) for beta in betas) else ANTHROPIC_FIELDS - {"output_format"}
    unknown = sorted(set(params) - allowed)
    if not unknown:
        return None
    return {"type": "error", "error": {"type": "invalid_request_error", "message": f"{unknown[0]}: Extra inputs are not permitted"}}


def anthropic_message(completion: dict[str, Any]) -> dict[str, Any]:
    """A chat completion as the Anthropic message it stands for."""
    choice = (completion.get("choices") or [{}])[0]
    message = choice.get("message") or {}
    content: list[dict[str, Any]] = []
    if message.get("content"):
        content.append({"type": "text", "text": message["content"]})
    for call in message.get("tool_calls") or []:
        function = call.get("function") or {}
        try:
            arguments = json.loads(function.get("arguments") or "{}")
        except ValueError:
            arguments = {}  # a malformed or truncated answer: Anthropic's tool input is always an object
        content.append({"type": "tool_use", "id": f"toolu_{call.get('id')}", "name": function.get("name"), "input": arguments})
    stop = {"length": "max_tokens", "tool_calls": "tool_use"}.get(choice.get("finish_reason"), "end_turn")
    usage = completion.get("usage") or {}
    return {"id": f"msg_{completion.get('id')}", "type": "message", "role": "assistant", "model": completion.get("model"), "content": content,
            "stop_reason": stop, "stop_sequence": None,
            "usage": {"input_tokens": usage.get("prompt_tokens", 0), "output_tokens": usage.get("completion_tokens", 0)}}


def _jsonl(rows: list[dict[str, Any]]) -> bytes:
    return b"".join(json.dumps(row).encode() + b"\n" for row in rows)
