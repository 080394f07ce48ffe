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
from enum import StrEnum
from typing import Any

from aiohttp import web

from rubric_judge.testing.loopback import LoopbackJudge, _error_response

TERMINAL = ("completed", "failed", "expired", "cancelled")


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
        self._batch_state: dict[str, dict[str, Any]] = {}

    @property
    def created_batches(self) -> list[str]:
        """Ids of every batch created, in order (a test of 'never submits twice' counts them)."""
        with self._lock:
            return list(self.batches)

    def input_lines(self, batch_id: str) -> list[dict[str, Any]]:
        """The decoded JSONL request lines of a batch's input file."""
        file_id = self.batches[batch_id]["input_file_id"]
        return [json.loads(line) for line in self.files[file_id]["content"].splitlines() if line.strip()]

    def _add_routes(self, app: web.Application) -> None:
        for prefix in ("/v1", ""):
            app.router.add_post(f"{prefix}/files", self._upload)
            app.router.add_get(f"{prefix}/files/{{file_id}}", self._file)
            app.router.add_get(f"{prefix}/files/{{file_id}}/content", self._file_content)
            app.router.add_post(f"{prefix}/batches", self._create_batch)
            app.router.add_get(f"{prefix}/batches/{{batch_id}}", self._retrieve_batch)

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


def _jsonl(rows: list[dict[str, Any]]) -> bytes:
    return b"".join(json.dumps(row).encode() + b"\n" for row in rows)
