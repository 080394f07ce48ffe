"""Judge calls through a provider's batch API: half the price, answers within 24 hours.

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

Providers (`BatchProvider`, chosen by `batch_provider` from the judge's model string):
OpenAI-compatible servers here (OpenAI itself, vLLM's batch server, the loopback judge of
`testing/batch_loopback.py`), directly over aiohttp like `transport.DirectClient`; Anthropic's
Message Batches API in `batch_anthropic.py`. Limits (`BatchLimits`): OpenAI 50,000 requests and
200 MB per input file, 500 images and 50 MB per request; Anthropic 100,000 requests or 256 MB
per batch, 100 images, 5 MB per image and 32 MB per request. A request over a per-request limit
is asked live or stored `unscored` (the `invalid` policy), never dropped.

Each batch is recorded as an intent (status `submitting`, a client token) before the provider
is asked to create it; a command killed between the create and the batch's record leaves the
intent, and the next command finds the created batch (`BatchProvider.find`) instead of
submitting the same calls again.
"""

from __future__ import annotations

import asyncio
import json
import os
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Protocol

from rubric_judge.cache.verdicts import CachedAnswer, VerdictCache
from rubric_judge.errors import Location, Problem, UserError
from rubric_judge.judge.batch_records import BatchRecord, BatchUpdate
from rubric_judge.judge.executor import Outcome
from rubric_judge.judge.structured import IncompleteAnswer, InvalidAnswer, JudgeRefused, parse_answer, request_body
from rubric_judge.judge.transport import JudgeConnectionError, JudgeHTTPError, _error_message, _proxy_for, _served_name
from rubric_judge.planning.estimate import batch_price
from rubric_judge.planning.response import verdicts_by_id
from rubric_judge.redaction import redact, redact_data

if TYPE_CHECKING:
    from rubric_judge.judge.batch_anthropic import AnthropicBatchAPI
    from rubric_judge.planning.compile import JudgeCall

BATCH_ENDPOINT = "/v1/chat/completions"
TOKEN_METADATA = "rubric_judge_token"  # our client token in an OpenAI batch's metadata
FIND_PAGES = 10  # pages of 100 batches searched for an orphan (the newest come first)
COMPLETION_WINDOW = "24h"
INVALID_POLICIES = ("reask", "unscored")
DEFAULT_POLL_S = 30.0


@dataclass(frozen=True)
class BatchLimits:
    """What one provider batch, and one request in it, may hold.

    Batch limits (`max_requests`, `max_bytes`) split the calls into several batches; a request
    over a per-request limit (`max_images_per_request`, `max_image_bytes`, `max_request_bytes`)
    is not put in any batch: it is asked live or stored unscored (`--batch-invalid`), never
    dropped. The defaults are OpenAI's documented limits: 50,000 requests and 200 MB per batch
    input file; per request, 500 images and 50 MB of body (images included). Anthropic's are
    `ANTHROPIC_LIMITS` (judge/batch_anthropic.py). `--provider-batch-size` lowers `max_requests`.
    """

    max_requests: int = 50_000
    max_bytes: int = 200 * 1024 * 1024
    max_images_per_request: int = 500
    max_image_bytes: int | None = None  # the base64 text of one data-URI image; None: only the request's bytes count
    max_request_bytes: int = 50 * 1024 * 1024

    def request_problem(self, messages: list[dict[str, Any]], encoded_bytes: int) -> str | None:
        """Why one request cannot go in a batch of this provider, or None when it can.

        Args:
            messages: the call's chat messages (images as data URLs).
            encoded_bytes: the size of its encoded batch line.
        """
        images = [url for url in _image_urls(messages)]
        if len(images) > self.max_images_per_request:
            return f"it has {len(images)} images; the provider's batch takes at most {self.max_images_per_request} per request"
        if self.max_image_bytes is not None:
            largest = max((len(url.partition(",")[2]) for url in images), default=0)
            if largest > self.max_image_bytes:
                return (f"an image is {largest:,} bytes as base64; the provider takes at most {self.max_image_bytes:,} per image "
                        "(--max-image-side makes images smaller)")
        limit = min(self.max_request_bytes, self.max_bytes)
        if encoded_bytes > limit:
            return f"the request is {encoded_bytes:,} bytes; the provider's batch takes at most {limit:,} per request (--max-image-side makes images smaller)"
        return None


OPENAI_LIMITS = BatchLimits()


def _image_urls(messages: list[dict[str, Any]]) -> list[str]:
    urls = []
    for message in messages:
        content = message.get("content")
        for part in content if isinstance(content, list) else ():
            if isinstance(part, dict) and part.get("type") == "image_url":
                url = (part.get("image_url") or {}).get("url")
                if isinstance(url, str):
                    urls.append(url)
    return urls


class BatchProvider(Protocol):
    """One provider's batch endpoints (OpenAI-compatible here, Anthropic in batch_anthropic.py).

    Every method speaks the provider's own format outwards and the OpenAI one inwards: batch
    objects come back as OpenAI batch objects (`BatchRecord.update` reads them) and answers as
    chat completions (`structured.parse_answer` reads them).
    """

    limits: BatchLimits

    def encode(self, call: JudgeCall, messages: list[dict[str, Any]]) -> bytes:
        """The call's request line (custom_id = its cache key), encoded, newline-terminated."""
        ...

    async def upload(self, content: bytes) -> str:
        """Store a batch's request lines where the provider wants them first; the input's id ("" when none)."""
        ...

    async def create(self, input_file_id: str, content: bytes, token: str) -> dict[str, Any]:
        """Create the batch; its state as an OpenAI batch object."""
        ...

    async def retrieve(self, batch_id: str) -> dict[str, Any]:
        """A batch's state as an OpenAI batch object."""
        ...

    async def results(self, record: BatchRecord) -> dict[str, tuple[dict[str, Any] | None, str | None]]:
        """An ended batch's answers: custom_id -> (chat completion, None) or (None, the provider's error)."""
        ...

    async def find(self, intent: BatchRecord, known: set[str]) -> dict[str, Any] | None:
        """The batch created for an intent (see batch_records.SUBMITTING), or None when the
        provider holds none; `known` are batch ids already recorded, never an answer."""
        ...


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


def encode_line(line: dict[str, Any]) -> bytes:
    # The live transport's encoding (transport.DirectClient.post), so the bodies are byte-equal.
    from rubric_judge.judge.transport import encode_json

    return encode_json(line) + b"\n"


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
    """An OpenAI-compatible server's files and batches endpoints, over one aiohttp session
    (a `BatchProvider`)."""

    limits = OPENAI_LIMITS

    def __init__(self, api_base: str, api_key: str | None, authorization: str | None = None, timeout_s: float = 600.0,
                 limits: BatchLimits | None = None):
        self.limits = limits or self.limits
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

    async def _request(self, method: str, path: str, extra_headers: dict[str, str] | None = None, **kwargs: Any) -> bytes:
        """One request's raw answer (`extra_headers`: added to the client's own for this request)."""
        import aiohttp

        try:
            async with self._session.request(method, self.base + path, headers={**self.headers, **(extra_headers or {})}, proxy=self.proxy,
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

    def encode(self, call: JudgeCall, messages: list[dict[str, Any]]) -> bytes:
        return encode_line({"custom_id": call.cache_key, "method": "POST", "url": BATCH_ENDPOINT,
                            "body": {"model": _served_name(call.model), **request_body(call, messages)}})

    async def create(self, input_file_id: str, content: bytes = b"", token: str | None = None) -> dict[str, Any]:
        """Submit a batch of an uploaded file (our token in its metadata); the provider's batch object."""
        body: dict[str, Any] = {"input_file_id": input_file_id, "endpoint": BATCH_ENDPOINT, "completion_window": COMPLETION_WINDOW}
        if token:
            body["metadata"] = {TOKEN_METADATA: token}
        return await self._json("POST", "/batches", json=body)

    async def retrieve(self, batch_id: str) -> dict[str, Any]:
        return await self._json("GET", f"/batches/{batch_id}")

    async def content(self, file_id: str) -> bytes:
        return await self._request("GET", f"/files/{file_id}/content")

    async def results(self, record: BatchRecord) -> dict[str, tuple[dict[str, Any] | None, str | None]]:
        """The output and error files' lines (OpenAI puts requests answered >= 400 in the error file)."""
        results: dict[str, tuple[dict[str, Any] | None, str | None]] = {}
        for file_id in (record.output_file_id, record.error_file_id):
            if not file_id:
                continue
            for raw in (await self.content(file_id)).splitlines():
                if not raw.strip():
                    continue
                line = json.loads(raw)
                response = line.get("response") or {}
                if line.get("error") or response.get("status_code") != 200:
                    answer = (None, _line_error(line))
                else:
                    answer = (response.get("body") or {}, None)
                results.setdefault(str(line.get("custom_id")), answer)
        return results

    async def find(self, intent: BatchRecord, known: set[str]) -> dict[str, Any] | None:
        """The batch whose metadata holds the intent's token, or whose input file is the
        intent's upload (a server that drops metadata), among the newest batches listed."""
        after: str | None = None
        for _ in range(FIND_PAGES):
            page = await self._json("GET", "/batches", params={"limit": "100", **({"after": after} if after else {})})
            batches = [b for b in page.get("data") or [] if isinstance(b, dict)]
            for batch in batches:
                metadata = batch.get("metadata") or {}
                mine = metadata.get(TOKEN_METADATA) == intent.client_token if isinstance(metadata, dict) else False
                if str(batch.get("id")) not in known and (mine or (intent.input_file_id and batch.get("input_file_id") == intent.input_file_id)):
                    return batch
            if not page.get("has_more") or not batches:
                return None
            after = str(batches[-1].get("id"))
        return None


async def run_batches(calls: Sequence[JudgeCall], api: BatchProvider, ledger: BatchLedger, cache: VerdictCache, *, limits: BatchLimits | None = None,
                      wait: bool = True, invalid: str = "reask", poll_s: float | None = None,
                      on_update: Callable[[BatchUpdate], None] = lambda update: None) -> BatchResult:
    """Submit the calls the cache cannot answer (unless a batch of this run already holds them),
    poll the run's batches, and turn the finished ones into outcomes.

    Args:
        calls: the run's planned calls.
        api: the provider's batch endpoints, open (`BatchAPI`, `batch_anthropic.AnthropicBatchAPI`).
        ledger: where the run's batches are kept; batches in it are polled, never resubmitted.
        cache: the verdict cache; validated answers are put in it.
        limits: what a batch and a request may hold (default: the provider's, `api.limits`).
        wait: poll until every batch has ended; False: poll once and return.
        invalid: `reask` (leave answers that fail validation, and requests over the provider's
            per-request limits, to the live executor) or `unscored` (store them unscored).
        poll_s: seconds between polls (default `poll_interval_s()`).
        on_update: called after each submission and each round of polls.

    Returns:
        A `BatchResult`.
    """
    from rubric_judge.judge.messages import build_messages

    if invalid not in INVALID_POLICIES:
        raise UserError(f"--batch-invalid must be one of {', '.join(INVALID_POLICIES)}, not {invalid!r}")
    limits = limits or api.limits
    poll_s = poll_interval_s() if poll_s is None else poll_s
    by_key: dict[str, list[JudgeCall]] = {}
    for call in calls:
        by_key.setdefault(call.cache_key, []).append(call)
    records = await _resolve_intents(api, ledger, ledger.open_batches())
    in_batches = {key for record in records for key in record.custom_ids}
    decided: dict[str, Outcome] = {}
    lines: list[tuple[str, bytes]] = []
    for key, same in by_key.items():
        if key in in_batches or cache.get(key) is not None:
            continue
        try:
            messages = build_messages(same[0])
            line = api.encode(same[0], messages)
        except Exception as exc:  # an image that vanished or changed since planning
            decided[key] = Outcome(same[0], "error", error=f"cannot prepare the request: {redact(str(exc))}")
            continue
        problem = limits.request_problem(messages, len(line))
        if problem is None:
            lines.append((key, line))
        elif invalid == "unscored":
            decided[key] = Outcome(same[0], "unscored", error=f"not sent in a batch: {problem}; score it without --batch, or with --batch-invalid reask")
        # else (reask): left to the executor, which asks it live
    files, _ = split_lines(lines, limits)  # no line is over max_bytes: request_problem caught those
    for file_lines in files:
        record = await _submit(api, ledger, file_lines, by_key, decided)
        if record is not None:
            records.append(record)
            on_update(BatchUpdate(tuple(records), (record.batch_id,)))
    await _poll(api, ledger, records, wait, poll_s, on_update)
    for record in records:
        if record.terminal:
            decided.update(await _collect(api, record, by_key, cache, invalid))
    return BatchResult(decided, [r for r in records if not r.terminal], records)


async def _submit(api: BatchProvider, ledger: BatchLedger, file_lines: list[tuple[str, bytes]], by_key: dict[str, list[JudgeCall]],
                  decided: dict[str, Outcome]) -> BatchRecord | None:
    """Upload and create one batch, recording it as an intent first: a command killed between
    the provider's create and our record of it leaves the intent, which the next command
    resolves (`_resolve_intents`) instead of creating the batch again. None when it failed
    (its calls are then decided as errors)."""
    content = b"".join(line for _, line in file_lines)
    keys = tuple(key for key, _ in file_lines)

    def failed(exc: BaseException) -> None:
        message = redact(f"the batch could not be submitted: {exc}")
        decided.update((key, Outcome(by_key[key][0], "error", error=message, attempts=1)) for key in keys)

    try:
        file_id = await api.upload(content)
    except (JudgeHTTPError, JudgeConnectionError, TimeoutError) as exc:
        failed(exc)
        return None
    intent = BatchRecord.intent(uuid.uuid4().hex, file_id, keys)
    ledger.save(intent)
    try:
        batch = await api.create(file_id, content, intent.client_token or "")
    except (JudgeHTTPError, JudgeConnectionError, TimeoutError) as exc:
        # A create that timed out or lost its answer may still have created the batch.
        try:
            batch = await api.find(intent, ledger.known_batch_ids()) if not isinstance(exc, JudgeHTTPError) or exc.status_code >= 500 else None
        except (JudgeHTTPError, JudgeConnectionError, TimeoutError):
            batch = None  # the intent stays: the next command looks again
            failed(exc)
            return None
        if batch is None:
            ledger.forget(intent)
            failed(exc)
            return None
    record = BatchRecord(str(batch["id"]), file_id, keys, client_token=intent.client_token, submitted_at=intent.submitted_at)
    record.update(batch)
    ledger.save(record)  # replaces the intent (same token)
    return record


async def _resolve_intents(api: BatchProvider, ledger: BatchLedger, records: list[BatchRecord]) -> list[BatchRecord]:
    """The open batches, each intent replaced by the batch the provider created for it; an
    intent the provider holds no batch for is forgotten (its calls are submitted again)."""
    resolved: list[BatchRecord] = []
    for record in records:
        if not record.intended:
            resolved.append(record)
            continue
        try:
            batch = await api.find(record, ledger.known_batch_ids())
        except (JudgeHTTPError, JudgeConnectionError, TimeoutError) as exc:
            raise UserError(redact(f"a batch of this run was being created when the last command stopped, and the provider cannot be asked "
                                   f"whether it exists ({exc}); run the same command again when the provider answers")) from None
        if batch is None:
            ledger.forget(record)
            continue
        adopted = BatchRecord(str(batch["id"]), record.input_file_id, record.custom_ids, client_token=record.client_token,
                              submitted_at=record.submitted_at)
        adopted.update(batch)
        ledger.save(adopted)
        resolved.append(adopted)
    return resolved


async def _poll(api: BatchProvider, ledger: BatchLedger, records: list[BatchRecord], wait: bool, poll_s: float,
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


async def _collect(api: BatchProvider, record: BatchRecord, by_key: dict[str, list[JudgeCall]], cache: VerdictCache, invalid: str) -> dict[str, Outcome]:
    """The outcomes of an ended batch's requests (see the module docstring)."""
    results = await api.results(record) if record.status != "failed" else {}
    decided: dict[str, Outcome] = {}
    for key in record.custom_ids:
        if key not in by_key:
            continue  # a call this run no longer makes (the rubric or data changed)
        call = by_key[key][0]
        if key not in results:
            why = f": {record.errors}" if record.errors else ""
            decided[key] = Outcome(call, "error", attempts=1, error=f"batch {record.batch_id} ended {record.status} without an answer to this request{why}")
            continue
        body, error = results[key]
        if body is None:
            decided[key] = Outcome(call, "error", attempts=1, error=f"batch {record.batch_id}: {error}")
            continue
        outcome = _answered(call, body, record.batch_id, invalid)
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


def batch_provider(judge_model: str, api_base: str | None, api_key: str | None, timeout_s: float,
                   max_requests: int | None = None) -> BatchAPI | AnthropicBatchAPI:
    """The batch endpoints for a judge, not yet open (`async with` it).

    An `anthropic/` judge: Anthropic's Message Batches API at --api-base, else
    https://api.anthropic.com. An `openai/` or `hosted_vllm/` judge with --api-base: that
    server's Files and Batch API (OpenAI itself: https://api.openai.com/v1).

    Args:
        judge_model: the judge's litellm model string.
        api_base: --api-base, possibly with `user:password@`.
        api_key: the provider's key (never stored; redaction knows it).
        timeout_s: seconds per HTTP request.
        max_requests: --provider-batch-size: at most this many requests per batch.

    Raises:
        UserError: a judge whose provider has no batch API here.
    """
    from rubric_judge.judge.transport import OPENAI_COMPATIBLE_PROVIDERS, provider_of, split_credentials

    url, basic_auth = split_credentials(api_base)
    provider = provider_of(judge_model)
    if provider == "anthropic":
        from rubric_judge.judge.batch_anthropic import ANTHROPIC_LIMITS, AnthropicBatchAPI

        limits = replace(ANTHROPIC_LIMITS, max_requests=max_requests) if max_requests else ANTHROPIC_LIMITS
        return AnthropicBatchAPI(url or "https://api.anthropic.com", api_key, judge_model, authorization=basic_auth, timeout_s=timeout_s, limits=limits)
    if not api_base or provider not in OPENAI_COMPATIBLE_PROVIDERS:
        raise UserError(Problem(Location(None), f"--batch speaks the OpenAI Files and Batch API or Anthropic's Message Batches API, but {judge_model!r} "
                                "is neither an anthropic/ judge nor an OpenAI-compatible one with --api-base",
                                field="--batch", fix="give --api-base of a server with /v1/files and /v1/batches (OpenAI: https://api.openai.com/v1) and "
                                                     "an openai/ model, or an anthropic/ judge; other providers' batch APIs are not supported yet, "
                                                     "or leave out --batch"))
    limits = replace(OPENAI_LIMITS, max_requests=max_requests) if max_requests else OPENAI_LIMITS
    return BatchAPI(url or "", api_key, authorization=basic_auth, timeout_s=timeout_s, limits=limits)


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
