"""Judge calls through an OpenAI-compatible Batch API: half the price, answers within 24 hours.

`score --batch` sends the calls the verdict cache cannot answer as JSONL request lines, one per
call: `custom_id` is the call's cache key and `body` is exactly the body the `direct` transport
posts live (`structured.request_body` plus the served model name), so a batch answer and a live
answer to the same call are the same answer and share the cache. Lines are split into input
files under the provider's limits (`BatchLimits`: requests and bytes per file), each uploaded
(`POST /files`, purpose `batch`) and submitted (`POST /batches`); each batch is recorded in the
caller's `BatchLedger` (the results database) as soon as it exists, so a command killed while it
waits resumes polling and never submits the same calls twice.

When a batch ends, its output and error files are downloaded and every request line becomes an
executor `Outcome`, stored like a live one:

* an answer validated with the same response models as the live path (`structured.parse_answer`):
  `ok`, cached, costed at the batch price (`planning.estimate.batch_price`);
* an answer that fails validation: asked again live through the executor (`reask`), or stored
  `unscored` (`unscored`), as the caller chose;
* a request in the error file (a batch `completed` with failed requests is not success), one
  missing from both files (partial output), or one in a batch that `expired`, `failed` or was
  `cancelled`: `error`, with the provider's error text, redacted.

Only OpenAI-compatible servers are spoken to here (OpenAI itself, vLLM's batch server, the
loopback judge of `testing/batch_loopback.py`), directly over aiohttp like `transport.DirectClient`.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from rubric_judge.cache.verdicts import CachedAnswer, VerdictCache
from rubric_judge.errors import UserError
from rubric_judge.judge.batch_records import BatchRecord, BatchUpdate
from rubric_judge.judge.executor import Outcome
from rubric_judge.judge.structured import IncompleteAnswer, InvalidAnswer, JudgeRefused, parse_answer, request_body
from rubric_judge.judge.transport import JudgeConnectionError, JudgeHTTPError, _error_message, _proxy_for, _served_name
from rubric_judge.planning.estimate import batch_price
from rubric_judge.planning.response import verdicts_by_id
from rubric_judge.redaction import redact, redact_data

if TYPE_CHECKING:
    from rubric_judge.planning.compile import JudgeCall

BATCH_ENDPOINT = "/v1/chat/completions"
COMPLETION_WINDOW = "24h"
INVALID_POLICIES = ("reask", "unscored")
DEFAULT_POLL_S = 30.0


@dataclass(frozen=True)
class BatchLimits:
    """How much one batch input file may hold. The defaults are OpenAI's documented limits
    (50,000 requests, 200 MB per file); `--provider-batch-size` lowers the request count."""

    max_requests: int = 50_000
    max_bytes: int = 200 * 1024 * 1024


class BatchLedger(Protocol):
    """Where a run's batches are kept between commands (store/batches.py: the results database)."""

    def open_batches(self) -> list[BatchRecord]:
        """The run's batches whose answers were not yet stored, oldest first."""
        ...

    def save(self, record: BatchRecord) -> None:
        """Record a new batch, or a batch's new state (committed at once)."""
        ...


@dataclass
class BatchResult:
    """What the batch phase decided.

    Attributes:
        decided: cache key -> the outcome of every call the batches answered or failed
            (the executor uses it instead of asking; the call in it is one of the key's calls).
        pending: batches not finished yet (`wait=False`); their calls are not decided.
        batches: every batch of the run this command saw, in order.
    """

    decided: dict[str, Outcome]
    pending: list[BatchRecord]
    batches: list[BatchRecord]

    @property
    def pending_keys(self) -> set[str]:
        return {key for record in self.pending for key in record.custom_ids}


def poll_interval_s() -> float:
    """Seconds between polls: RUBRIC_JUDGE_BATCH_POLL_S when set (tests use ~0.01), else 30."""
    configured = os.environ.get("RUBRIC_JUDGE_BATCH_POLL_S")
    if not configured:
        return DEFAULT_POLL_S
    try:
        return max(0.0, float(configured))
    except ValueError:
        raise UserError(f"RUBRIC_JUDGE_BATCH_POLL_S must be a number of seconds, not {configured!r}") from None


def request_line(call: JudgeCall) -> dict[str, Any]:
    """The JSONL request line of a call: its cache key as custom_id, the live request as body.

    Raises:
        Exception: the call's images cannot be read (as `build_messages` raises).
    """
    from rubric_judge.judge.messages import build_messages

    return {"custom_id": call.cache_key, "method": "POST", "url": BATCH_ENDPOINT,
            "body": {"model": _served_name(call.model), **request_body(call, build_messages(call))}}


def encode_line(line: dict[str, Any]) -> bytes:
    # The live transport's encoding (transport.DirectClient.post), so the bodies are byte-equal.
    return json.dumps(line, ensure_ascii=False, separators=(",", ":")).encode("utf-8") + b"\n"


def split_lines(lines: Sequence[tuple[str, bytes]], limits: BatchLimits) -> tuple[list[list[tuple[str, bytes]]], list[str]]:
    """Request lines grouped into input files under the limits, in order.

    Args:
        lines: (custom_id, encoded line).
        limits: requests and bytes per file.

    Returns:
        (the files' lines, the custom_ids of lines that alone exceed the byte limit).
    """
    files: list[list[tuple[str, bytes]]] = []
    too_large: list[str] = []
    current: list[tuple[str, bytes]] = []
    size = 0
    for custom_id, line in lines:
        if len(line) > limits.max_bytes:
            too_large.append(custom_id)
            continue
        if current and (len(current) >= limits.max_requests or size + len(line) > limits.max_bytes):
            files.append(current)
            current, size = [], 0
        current.append((custom_id, line))
        size += len(line)
    if current:
        files.append(current)
    return files, too_large


class BatchAPI:
    """An OpenAI-compatible server's files and batches endpoints, over one aiohttp session."""

    def __init__(self, api_base: str, api_key: str | None, authorization: str | None = None, timeout_s: float = 600.0):
        self.base = api_base.rstrip("/")
        self.headers: dict[str, str] = {}
        if authorization or api_key:
            self.headers["Authorization"] = authorization or f"Bearer {api_key}"
        self.timeout_s = timeout_s
        self.proxy = _proxy_for(self.base)
        self._session: Any = None

    async def __aenter__(self) -> BatchAPI:
        import aiohttp

        self._session = aiohttp.ClientSession()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self._session.close()

    async def _request(self, method: str, path: str, **kwargs: Any) -> bytes:
        import aiohttp

        try:
            async with self._session.request(method, self.base + path, headers=self.headers, proxy=self.proxy,
                                             timeout=aiohttp.ClientTimeout(total=self.timeout_s), **kwargs) as response:
                raw = await response.read()
                status, headers = response.status, {key.lower(): value for key, value in response.headers.items()}
        except TimeoutError:
            raise
        except aiohttp.ClientError as exc:
            raise JudgeConnectionError(f"{type(exc).__name__}: {exc}") from exc
        if status >= 400:
            raise JudgeHTTPError(status, _error_message(raw), headers)
        return raw

    async def _json(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        raw = await self._request(method, path, **kwargs)
        try:
            data = json.loads(raw)
        except ValueError as exc:
            raise JudgeConnectionError(f"{method} {path}: the answer is not JSON") from exc
        if not isinstance(data, dict):
            raise JudgeConnectionError(f"{method} {path}: the answer is not a JSON object")
        return data

    async def upload(self, content: bytes) -> str:
        """Upload a JSONL input file (purpose `batch`); its file id."""
        import aiohttp

        form = aiohttp.FormData()
        form.add_field("purpose", "batch")
        form.add_field("file", content, filename="rubric-judge-batch.jsonl", content_type="application/jsonl")
        data = await self._json("POST", "/files", data=form)
        if not isinstance(data.get("id"), str):
            raise JudgeConnectionError("the upload's answer has no file id")
        return data["id"]

    async def create(self, input_file_id: str) -> dict[str, Any]:
        """Submit a batch of an uploaded file; the provider's batch object."""
        return await self._json("POST", "/batches", json={"input_file_id": input_file_id, "endpoint": BATCH_ENDPOINT,
                                                          "completion_window": COMPLETION_WINDOW})

    async def retrieve(self, batch_id: str) -> dict[str, Any]:
        return await self._json("GET", f"/batches/{batch_id}")

    async def content(self, file_id: str) -> bytes:
        return await self._request("GET", f"/files/{file_id}/content")


async def run_batches(calls: Sequence[JudgeCall], api: BatchAPI, ledger: BatchLedger, cache: VerdictCache, *, limits: BatchLimits = BatchLimits(),
                      wait: bool = True, invalid: str = "reask", poll_s: float | None = None,
                      on_update: Callable[[BatchUpdate], None] = lambda update: None) -> BatchResult:
    """Submit the calls the cache cannot answer (unless a batch of this run already holds them),
    poll the run's batches, and turn the finished ones into outcomes.

    Args:
        calls: the run's planned calls.
        api: the server's files and batches endpoints, open.
        ledger: where the run's batches are kept; batches in it are polled, never resubmitted.
        cache: the verdict cache; validated answers are put in it.
        limits: requests and bytes per input file.
        wait: poll until every batch has ended; False: poll once and return.
        invalid: `reask` (leave answers that fail validation to the live executor) or `unscored`.
        poll_s: seconds between polls (default `poll_interval_s()`).
        on_update: called after each submission and each round of polls.

    Returns:
        A `BatchResult`.
    """
    if invalid not in INVALID_POLICIES:
        raise UserError(f"--batch-invalid must be one of {', '.join(INVALID_POLICIES)}, not {invalid!r}")
    poll_s = poll_interval_s() if poll_s is None else poll_s
    by_key: dict[str, list[JudgeCall]] = {}
    for call in calls:
        by_key.setdefault(call.cache_key, []).append(call)
    records = ledger.open_batches()
    in_batches = {key for record in records for key in record.custom_ids}
    decided: dict[str, Outcome] = {}
    lines: list[tuple[str, bytes]] = []
    for key, same in by_key.items():
        if key in in_batches or cache.get(key) is not None:
            continue
        try:
            lines.append((key, encode_line(request_line(same[0]))))
        except Exception as exc:  # an image that vanished or changed since planning
            decided[key] = Outcome(same[0], "error", error=f"cannot prepare the request: {redact(str(exc))}")
    files, too_large = split_lines(lines, limits)
    for key in too_large:
        decided[key] = Outcome(by_key[key][0], "error", error=f"the request is larger than a batch input file may be ({limits.max_bytes} bytes); "
                                                              "score it without --batch, or with smaller images (--max-image-side)")
    for file_lines in files:
        try:
            file_id = await api.upload(b"".join(line for _, line in file_lines))
            batch = await api.create(file_id)
        except (JudgeHTTPError, JudgeConnectionError, TimeoutError) as exc:
            message = redact(f"the batch could not be submitted: {exc}")
            decided.update((key, Outcome(by_key[key][0], "error", error=message, attempts=1)) for key, _ in file_lines)
            continue
        record = BatchRecord(str(batch["id"]), file_id, tuple(key for key, _ in file_lines))
        record.update(batch)
        ledger.save(record)  # at once: a command killed from here on polls it, never resubmits
        records.append(record)
        on_update(BatchUpdate(tuple(records), (record.batch_id,)))
    await _poll(api, ledger, records, wait, poll_s, on_update)
    for record in records:
        if record.terminal:
            decided.update(await _collect(api, record, by_key, cache, invalid))
    return BatchResult(decided, [r for r in records if not r.terminal], records)


async def _poll(api: BatchAPI, ledger: BatchLedger, records: list[BatchRecord], wait: bool, poll_s: float,
                on_update: Callable[[BatchUpdate], None]) -> None:
    first = True
    while any(not r.terminal for r in records):
        if not first:
            if not wait:
                return
            await asyncio.sleep(poll_s)
        first = False
        for record in records:
            if record.terminal:
                continue
            try:
                batch = await api.retrieve(record.batch_id)
            except JudgeHTTPError as exc:
                if exc.status_code not in (404, 410):
                    continue  # a passing failure (429, 5xx): asked again at the next poll
                # The provider no longer knows the batch: its calls end as errors, and a re-run submits them again.
                batch = {"status": "failed", "errors": {"data": [{"code": str(exc.status_code), "message": str(exc)}]}}
            except (JudgeConnectionError, TimeoutError):
                continue
            record.update(batch)
            ledger.save(record)
        on_update(BatchUpdate(tuple(records)))


async def _collect(api: BatchAPI, record: BatchRecord, by_key: dict[str, list[JudgeCall]], cache: VerdictCache, invalid: str) -> dict[str, Outcome]:
    """The outcomes of an ended batch's requests (see the module docstring)."""
    results: dict[str, dict[str, Any]] = {}
    for file_id in (record.output_file_id, record.error_file_id):
        if file_id:
            for raw in (await api.content(file_id)).splitlines():
                if raw.strip():
                    line = json.loads(raw)
                    results.setdefault(str(line.get("custom_id")), line)
    decided: dict[str, Outcome] = {}
    for key in record.custom_ids:
        if key not in by_key:
            continue  # a call this run no longer makes (the rubric or data changed)
        call = by_key[key][0]
        line = results.get(key)
        if line is None:
            why = f": {record.errors}" if record.errors else ""
            decided[key] = Outcome(call, "error", attempts=1, error=f"batch {record.batch_id} ended {record.status} without an answer to this request{why}")
            continue
        response = line.get("response") or {}
        if line.get("error") or response.get("status_code") != 200:
            decided[key] = Outcome(call, "error", attempts=1, error=f"batch {record.batch_id}: {_line_error(line)}")
            continue
        outcome = _answered(call, response.get("body") or {}, record.batch_id, invalid)
        if outcome is None:
            continue  # reask: asked live by the executor
        if outcome.status == "ok" and outcome.answer is not None:
            cache.put(key, CachedAnswer(outcome.answer, outcome.prompt_tokens, outcome.completion_tokens, outcome.cost_usd, call.model))
        decided[key] = outcome
    return decided


def _answered(call: JudgeCall, body: dict[str, Any], batch_id: str, invalid: str) -> Outcome | None:
    try:
        answer, usage = parse_answer(call, body)
    except (InvalidAnswer, IncompleteAnswer) as exc:
        if invalid == "reask":
            return None
        prompt, completion = exc.total_usage.get("prompt_tokens", 0), exc.total_usage.get("completion_tokens", 0)
        return Outcome(call, "unscored", error=redact(f"batch {batch_id}: invalid answer: {exc}"), attempts=1, prompt_tokens=prompt,
                       completion_tokens=completion, cost_usd=batch_price(call.model, prompt, completion))
    except JudgeRefused as exc:
        return Outcome(call, "error", error=redact(f"batch {batch_id}: {exc}"), attempts=1)
    prompt, completion = usage["prompt_tokens"], usage["completion_tokens"]
    # A judge can echo what it was sent in its reasoning too; the answer is cached and stored.
    verdicts = {criterion_id: redact_data(value.model_dump()) for criterion_id, value in verdicts_by_id(answer).items()}
    return Outcome(call, "ok", verdicts, attempts=1, prompt_tokens=prompt, completion_tokens=completion,
                   cost_usd=batch_price(call.model, prompt, completion))


def _line_error(line: dict[str, Any]) -> str:
    """The provider's error of a failed request line, redacted and cut."""
    error = line.get("error")
    response = line.get("response") or {}
    if isinstance(error, dict):
        text = f"{error.get('code')}: {error.get('message')}"
    elif error:
        text = str(error)
    else:
        body = response.get("body") or {}
        detail = body.get("error") if isinstance(body, dict) else body
        message = detail.get("message") if isinstance(detail, dict) else detail
        text = f"HTTP {response.get('status_code')}: {message}"
    return " ".join(redact(text).split())[:500]


def decided_for(result: BatchResult, calls: Iterable[JudgeCall]) -> dict[str, Outcome]:
    """What the executor is told for each key: the batch's outcome, or for a call still in a
    batch (`wait=False`), `skipped` naming the batch, so its rows say where the answer is."""
    decided = dict(result.decided)
    first = {}
    for call in calls:
        first.setdefault(call.cache_key, call)
    for record in result.pending:
        for key in record.custom_ids:
            if key in first:
                decided.setdefault(key, Outcome(
                    first[key], "skipped",
                    error=f"waiting for batch {record.batch_id} ({record.status}); run the same command again to collect its answers"))
    return decided
