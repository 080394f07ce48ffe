"""A fake OpenAI-compatible judge on 127.0.0.1 that answers rubric questions with a pluggable policy.

Its one job: let the judge pipeline (instructor over either transport) run end to end without a
network or an API key. It reads the structured-output schema a request carries (a tool's parameters, a
`response_format` JSON schema, or the schema instructor writes into the prompt), asks a policy for
one verdict per criterion, and answers in the shape the request asked for. Tests can inject faults
(HTTP 429/500, slow, malformed or truncated answers, missing or out-of-range fields) one request
at a time, and read back every request body received.

The server runs its own asyncio loop in a daemon thread, so synchronous code and tests use it as a
plain context manager:

    with LoopbackJudge() as server:
        litellm.completion(model="openai/x", api_base=server.base_url, api_key="sk-test", ...)
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import concurrent.futures
import contextlib
import copy
import hashlib
import itertools
import json
import threading
import time
import traceback
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Literal

from aiohttp import web

VerdictKind = Literal["binary", "scale"]
Policy = Callable[["CriterionQuestion"], dict[str, Any]]
FaultRule = Callable[[dict[str, Any], int], "Fault | FaultKind | str | None"]

# Rough price of one image in prompt tokens (OpenAI's "low detail" tile cost); only used so that
# `usage` looks plausible to code that accounts for tokens.
IMAGE_PROMPT_TOKENS = 85
DEFAULT_MODEL_NAME = "loopback-judge"
DEFAULT_SCALE = (1, 10)
_START_TIMEOUT_S = 10.0


class FaultKind(StrEnum):
    """What goes wrong with one request."""

    http_429 = "http_429"  # rate limited, with a Retry-After header
    http_500 = "http_500"  # server error
    slow = "slow"  # answer only after `delay_s`, meant to exceed the client's timeout
    malformed = "malformed"  # answer text that is not JSON at all
    # The JSON answer cut off in the middle. finish_reason stays "stop"/"tool_calls" so it reaches
    # validation: with "length", instructor raises IncompleteOutputException and never retries.
    truncated = "truncated"
    drop_criterion = "drop_criterion"  # the first criterion missing from the answer
    out_of_range = "out_of_range"  # first criterion: scale score maximum+5, or binary confidence 7
    # 401 whose message repeats the request's Authorization header, as some proxies do: what a
    # client must keep out of its logs and files.
    http_401_echo = "http_401_echo"


@dataclass(frozen=True)
class Fault:
    """One injected fault; build it with the classmethods, e.g. `Fault.http_429(retry_after_s=0.1)`."""

    kind: FaultKind
    retry_after_s: float = 1.0
    delay_s: float = 30.0
    finish_reason: str | None = None  # overrides the natural finish_reason of the answer

    @classmethod
    def http_429(cls, retry_after_s: float = 1.0) -> Fault:
        return cls(FaultKind.http_429, retry_after_s=retry_after_s)

    @classmethod
    def http_500(cls) -> Fault:
        return cls(FaultKind.http_500)

    @classmethod
    def http_401_echo(cls) -> Fault:
        return cls(FaultKind.http_401_echo)

    @classmethod
    def slow(cls, delay_s: float = 30.0) -> Fault:
        return cls(FaultKind.slow, delay_s=delay_s)

    @classmethod
    def malformed(cls) -> Fault:
        return cls(FaultKind.malformed)

    @classmethod
    def truncated(cls, finish_reason: str | None = None) -> Fault:
        """Pass finish_reason="length" to imitate a max_tokens cut rather than a broken server."""
        return cls(FaultKind.truncated, finish_reason=finish_reason)

    @classmethod
    def drop_criterion(cls) -> Fault:
        return cls(FaultKind.drop_criterion)

    @classmethod
    def out_of_range(cls) -> Fault:
        return cls(FaultKind.out_of_range)


def as_fault(value: Fault | FaultKind | str | None) -> Fault | None:
    """Accept the shorthand forms tests like to write (`"http_500"`, `FaultKind.slow`)."""
    if value is None or isinstance(value, Fault):
        return value
    return Fault(FaultKind(value))


@dataclass(frozen=True)
class CriterionQuestion:
    """Everything a policy may look at to answer one criterion of one request."""

    criterion_id: str
    text: str  # the criterion's description in the schema
    kind: VerdictKind
    minimum: int | None  # scale bounds; None for binary criteria
    maximum: int | None
    images: tuple[bytes, ...]  # decoded data-URL images, in message order
    prompt_text: str  # every text part of every message, joined by newlines
    request: dict[str, Any] = field(repr=False, compare=False)


def criterion_digest(text: str) -> bytes:
    return hashlib.sha256(text.encode("utf-8")).digest()


def deterministic_policy(question: CriterionQuestion) -> dict[str, Any]:
    """The default policy: a fixed answer derived from sha256 of the criterion text."""
    digest = criterion_digest(question.text)
    reasoning = f"Deterministic test answer from the loopback judge for criterion {question.criterion_id}."
    if question.kind == "binary":
        return {"reasoning": reasoning, "satisfied": digest[0] % 2 == 0, "confidence": round(0.5 + digest[1] / 510, 3)}
    low, high = scale_bounds(question.minimum, question.maximum)
    return {"reasoning": reasoning, "score": low + digest[0] % (high - low + 1)}


def scale_bounds(minimum: int | None, maximum: int | None) -> tuple[int, int]:
    """The scale's bounds, falling back to 1..10 when the schema leaves one out."""
    low = minimum if minimum is not None else DEFAULT_SCALE[0]
    high = maximum if maximum is not None else DEFAULT_SCALE[1]
    return low, max(low, high)


# ---------------------------------------------------------------------------------------------
# Reading a request


class UnsupportedRequest(ValueError):
    """The body is not a chat-completions request this server can answer; becomes an HTTP 400."""


@dataclass(frozen=True)
class AnswerShape:
    """Where the answer goes: a forced tool call, plain JSON content, or JSON in a markdown fence."""

    schema: dict[str, Any]
    style: Literal["tool_call", "json", "fenced_json"]
    tool_name: str | None = None


@dataclass(frozen=True)
class CriterionSlot:
    criterion_id: str
    text: str
    kind: VerdictKind | None  # None: not a verdict object, filled from its schema instead
    minimum: int | None
    maximum: int | None
    schema: dict[str, Any]


def answer_shape(body: dict[str, Any]) -> AnswerShape:
    tools = body.get("tools") or []
    if tools:
        wanted = _forced_tool_name(body.get("tool_choice"))
        functions = [tool.get("function") or {} for tool in tools if isinstance(tool, dict)]
        chosen = next((f for f in functions if f.get("name") == wanted), functions[0] if functions else {})
        return AnswerShape(chosen.get("parameters") or {}, "tool_call", chosen.get("name") or wanted or "answer")
    response_format = body.get("response_format") or {}
    if response_format.get("type") == "json_schema":
        return AnswerShape((response_format.get("json_schema") or {}).get("schema") or {}, "json")
    schema = _schema_in_text(_all_text(body.get("messages") or []))
    if schema is None:
        raise UnsupportedRequest("found no tool, no response_format schema and no JSON schema in the messages")
    # instructor's MD_JSON mode sends no response_format and extracts the answer from a ```json fence.
    style = "json" if response_format.get("type") == "json_object" else "fenced_json"
    return AnswerShape(schema, style)


def _forced_tool_name(tool_choice: Any) -> str | None:
    if isinstance(tool_choice, dict):
        return (tool_choice.get("function") or {}).get("name")
    return None


def _schema_in_text(text: str) -> dict[str, Any] | None:
    # The schema is pretty-printed JSON inside prose; try every "{" until one decodes to a schema.
    decoder = json.JSONDecoder()
    position = text.find("{")
    while position != -1:
        try:
            value, end = decoder.raw_decode(text, position)
        except json.JSONDecodeError:
            position = text.find("{", position + 1)
            continue
        if isinstance(value, dict) and ("properties" in value or "$defs" in value):
            return value
        position = text.find("{", end)
    return None


def _content_parts(message: dict[str, Any]) -> Iterator[dict[str, Any]]:
    content = message.get("content")
    if isinstance(content, str):
        yield {"type": "text", "text": content}
    elif isinstance(content, list):
        yield from (part for part in content if isinstance(part, dict))


def _all_text(messages: list[dict[str, Any]]) -> str:
    texts = (part.get("text") or "" for message in messages for part in _content_parts(message) if part.get("type") == "text")
    return "\n".join(text for text in texts if text)


def _image_urls(messages: list[dict[str, Any]]) -> list[str]:
    urls: list[str] = []
    for message in messages:
        for part in _content_parts(message):
            if part.get("type") != "image_url":
                continue
            image_url = part.get("image_url")
            url = image_url.get("url") if isinstance(image_url, dict) else image_url
            if isinstance(url, str):
                urls.append(url)
    return urls


def decode_data_url(url: str) -> bytes | None:
    """The bytes of a base64 `data:` URL; None for remote URLs, which this offline server cannot fetch."""
    if not url.startswith("data:"):
        return None
    header, _, payload = url.partition(",")
    if not header.endswith(";base64"):
        return None
    try:
        return base64.b64decode(payload, validate=False)
    except (binascii.Error, ValueError):
        return None


def _resolve(schema: Any, root: dict[str, Any], seen: frozenset[str] = frozenset()) -> dict[str, Any]:
    """Follow `$ref`, single-branch `allOf` and nullable `anyOf`, keeping the outer description."""
    if not isinstance(schema, dict):
        return {}
    outer = {key: value for key, value in schema.items() if key not in ("$ref", "allOf", "anyOf", "oneOf")}
    ref = schema.get("$ref")
    if isinstance(ref, str) and ref.startswith("#/") and ref not in seen:
        target: Any = root
        for token in ref[2:].split("/"):
            target = target.get(token.replace("~1", "/").replace("~0", "~"), {}) if isinstance(target, dict) else {}
        return {**_resolve(target, root, seen | {ref}), **outer}
    for combinator in ("allOf", "anyOf", "oneOf"):
        branches = [b for b in schema.get(combinator) or [] if isinstance(b, dict) and b.get("type") != "null"]
        if branches:
            return {**_resolve(branches[0], root, seen), **outer}
    return schema


def criterion_slots(schema: dict[str, Any]) -> list[CriterionSlot]:
    """One slot per top-level property, in schema order; verdict objects are recognised by their fields."""
    slots: list[CriterionSlot] = []
    for name, raw in (schema.get("properties") or {}).items():
        resolved = _resolve(raw, schema)
        fields = resolved.get("properties") or {}
        text = str(resolved.get("description") or resolved.get("title") or name)
        kind: VerdictKind | None = None
        minimum = maximum = None
        if "satisfied" in fields:
            kind = "binary"
        elif "score" in fields:
            kind = "scale"
            score = _resolve(fields["score"], schema)
            minimum = _int_or_none(score.get("minimum", score.get("exclusiveMinimum")))
            maximum = _int_or_none(score.get("maximum", score.get("exclusiveMaximum")))
        slots.append(CriterionSlot(name, text, kind, minimum, maximum, resolved))
    return slots


def _int_or_none(value: Any) -> int | None:
    return int(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def placeholder_for(schema: dict[str, Any], root: dict[str, Any]) -> Any:
    """A schema-valid filler for properties that are not verdicts, so unexpected extras do not break answers."""
    resolved = _resolve(schema, root)
    if "default" in resolved:
        return resolved["default"]
    if resolved.get("enum"):
        return resolved["enum"][0]
    kind = resolved.get("type")
    if kind == "object" or "properties" in resolved:
        return {key: placeholder_for(value, root) for key, value in (resolved.get("properties") or {}).items()}
    fillers: dict[str, Any] = {"string": "", "integer": resolved.get("minimum", 0), "number": resolved.get("minimum", 0.0)}
    return fillers.get(kind, [] if kind == "array" else False if kind == "boolean" else None)


# ---------------------------------------------------------------------------------------------
# Answering


def build_answer(body: dict[str, Any], policy: Policy, fault: Fault | None) -> tuple[AnswerShape, dict[str, Any]]:
    shape = answer_shape(body)
    messages = body.get("messages") or []
    # Decoded once per request and shared by every criterion, so policies can cache on the tuple.
    images = tuple(data for data in map(decode_data_url, _image_urls(messages)) if data is not None)
    prompt_text = _all_text(messages)
    answer: dict[str, Any] = {}
    slots = criterion_slots(shape.schema)
    for slot in slots:
        if slot.kind is None:
            answer[slot.criterion_id] = placeholder_for(slot.schema, shape.schema)
            continue
        question = CriterionQuestion(slot.criterion_id, slot.text, slot.kind, slot.minimum, slot.maximum, images, prompt_text, body)
        answer[slot.criterion_id] = policy(question)
    verdicts = [slot for slot in slots if slot.kind is not None]
    if fault and fault.kind is FaultKind.drop_criterion and slots:
        answer.pop((verdicts or slots)[0].criterion_id, None)
    if fault and fault.kind is FaultKind.out_of_range and verdicts:
        first = verdicts[0]
        value = dict(answer[first.criterion_id])
        if first.kind == "scale":
            value["score"] = scale_bounds(first.minimum, first.maximum)[1] + 5
        else:
            value["confidence"] = 7
        answer[first.criterion_id] = value
    return shape, answer


def render_answer_text(answer: dict[str, Any], shape: AnswerShape, fault: Fault | None) -> str:
    text = json.dumps(answer, ensure_ascii=False)
    if fault and fault.kind is FaultKind.malformed:
        text = "I am not able to produce JSON right now, sorry {"
    elif fault and fault.kind is FaultKind.truncated:
        text = text[: max(1, len(text) // 2)]
    if shape.style == "fenced_json":
        # A truncated answer also loses its closing fence, as a real cut-off would.
        closing = "" if fault and fault.kind is FaultKind.truncated else "\n```"
        text = f"```json\n{text}{closing}"
    return text


def estimate_prompt_tokens(body: dict[str, Any]) -> int:
    messages = body.get("messages") or []
    tool_chars = len(json.dumps(body.get("tools") or body.get("response_format") or ""))
    return (len(_all_text(messages)) + tool_chars) // 4 + IMAGE_PROMPT_TOKENS * len(_image_urls(messages))


def completion_payload(body: dict[str, Any], shape: AnswerShape, text: str, fault: Fault | None) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": text}
    finish_reason = "stop"
    if shape.style == "tool_call":
        call = {"id": f"call_{_short_id()}", "type": "function", "function": {"name": shape.tool_name, "arguments": text}}
        message = {"role": "assistant", "content": None, "tool_calls": [call]}
        finish_reason = "tool_calls"
    if fault and fault.finish_reason:
        finish_reason = fault.finish_reason
    prompt_tokens = estimate_prompt_tokens(body)
    completion_tokens = max(1, len(text) // 4)
    return {
        "id": f"chatcmpl-{_short_id()}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": body.get("model") or DEFAULT_MODEL_NAME,
        "choices": [{"index": 0, "message": message, "finish_reason": finish_reason, "logprobs": None}],
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        },
    }


_id_counter = itertools.count(1)


def _short_id() -> str:
    return f"{next(_id_counter):012x}"


def _error_response(status: int, message: str, error_type: str, headers: dict[str, str] | None = None) -> web.Response:
    payload = {"error": {"message": message, "type": error_type, "param": None, "code": error_type}}
    return web.json_response(payload, status=status, headers=headers)


def _format_seconds(seconds: float) -> str:
    return f"{seconds:g}"


# ---------------------------------------------------------------------------------------------
# The server


class LoopbackJudge:
    """An OpenAI-compatible chat-completions server on 127.0.0.1, served from a background thread.

    `faults` is a FIFO queue consumed one fault per request; when it is empty, `fault_rule(body, index)`
    (if set) may choose a fault for that request. Both may be changed while the server runs.
    `latency` is the time from a request's arrival to its answer (at least the time to build it).
    """

    def __init__(
        self,
        policy: Policy | None = None,
        latency: float = 0.0,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        model_name: str = DEFAULT_MODEL_NAME,
    ) -> None:
        self.policy: Policy = policy or deterministic_policy
        self.latency = latency
        self.host = host
        self.model_name = model_name
        self.faults: deque[Fault | FaultKind | str] = deque()
        self.fault_rule: FaultRule | None = None
        self._requested_port = port
        self._port: int | None = None
        self._requests: list[dict[str, Any]] = []
        self._headers: list[dict[str, str]] = []
        self._in_flight = 0
        self._peak_in_flight = 0
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None
        self._stopping: asyncio.Event | None = None
        self._startup_error: BaseException | None = None

    # -- lifecycle ------------------------------------------------------------------------

    def start(self) -> LoopbackJudge:
        if self._thread is not None:
            return self
        ready = threading.Event()
        self._startup_error = None
        self._thread = threading.Thread(target=self._serve, args=(ready,), name="loopback-judge", daemon=True)
        self._thread.start()
        if not ready.wait(_START_TIMEOUT_S):
            raise RuntimeError(f"loopback judge did not start within {_START_TIMEOUT_S:.0f} s")
        if self._startup_error is not None:
            self._thread.join()
            self._thread = None
            raise RuntimeError(f"loopback judge failed to start: {self._startup_error}") from self._startup_error
        return self

    def stop(self) -> None:
        thread, loop = self._thread, self._loop
        if thread is None or loop is None:
            return
        try:
            asyncio.run_coroutine_threadsafe(self._shutdown(), loop).result(timeout=_START_TIMEOUT_S)
        except concurrent.futures.TimeoutError:
            # A handler ignored the stop signal; stopping the loop still ends the thread.
            loop.call_soon_threadsafe(loop.stop)
        except RuntimeError:
            pass  # the loop already closed
        thread.join(timeout=_START_TIMEOUT_S)
        self._thread = None
        self._loop = None
        self._port = None

    def __enter__(self) -> LoopbackJudge:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def running(self) -> bool:
        return self._thread is not None

    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError("loopback judge is not running; call start() or use it as a context manager")
        return self._port

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}/v1"

    @property
    def requests(self) -> list[dict[str, Any]]:
        with self._lock:
            return copy.deepcopy(self._requests)

    @property
    def request_count(self) -> int:
        with self._lock:
            return len(self._requests)

    @property
    def request_headers(self) -> list[dict[str, str]]:
        """HTTP headers of each request, in order (tests check what credentials were sent)."""
        with self._lock:
            return [dict(h) for h in self._headers]

    @property
    def peak_in_flight(self) -> int:
        """The most requests this server was handling at the same moment."""
        with self._lock:
            return self._peak_in_flight

    def clear_requests(self) -> None:
        with self._lock:
            self._requests.clear()
            self._headers.clear()
            self._peak_in_flight = 0

    # -- inside the server thread ---------------------------------------------------------

    def _serve(self, ready: threading.Event) -> None:
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        self._loop = loop
        try:
            loop.run_until_complete(self._open())
        except BaseException as error:  # reported to start() in the caller's thread
            self._startup_error = error
            ready.set()
            loop.close()
            return
        ready.set()
        try:
            loop.run_forever()
        finally:
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

    async def _open(self) -> None:
        self._stopping = asyncio.Event()
        app = web.Application(client_max_size=256 * 1024 * 1024)  # many large base64 images per request
        for prefix in ("/v1", ""):
            app.router.add_post(f"{prefix}/chat/completions", self._chat_completions)
            app.router.add_get(f"{prefix}/models", self._models)
        self._add_routes(app)
        # A short shutdown_timeout: in-flight handlers wake on `_stopping`, nothing should linger.
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=2.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self._requested_port, backlog=1024)
        await site.start()
        # With port 0 the OS picks a free port; the runner knows which.
        self._port = int(self._runner.addresses[0][1])

    def _add_routes(self, app: web.Application) -> None:
        """More endpoints, for a subclass (testing/batch_loopback.py adds files and batches)."""

    async def _shutdown(self) -> None:
        assert self._stopping is not None and self._runner is not None
        self._stopping.set()
        await self._runner.cleanup()
        asyncio.get_running_loop().call_soon(asyncio.get_running_loop().stop)

    async def _pause(self, seconds: float) -> None:
        """Sleep, but wake at once when the server stops, so stop() never waits for slow faults."""
        if seconds <= 0 or self._stopping is None:
            return
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), seconds)

    def _next_fault(self, body: dict[str, Any], index: int) -> Fault | None:
        try:
            return as_fault(self.faults.popleft())
        except IndexError:
            pass
        return as_fault(self.fault_rule(body, index)) if self.fault_rule else None

    async def _models(self, request: web.Request) -> web.Response:
        model = {"id": self.model_name, "object": "model", "created": 0, "owned_by": "rubric-judge-loopback"}
        return web.json_response({"object": "list", "data": [model]})

    async def _chat_completions(self, request: web.Request) -> web.Response:
        arrived = asyncio.get_running_loop().time()
        try:
            body = await request.json()
        except (json.JSONDecodeError, UnicodeDecodeError):
            return _error_response(400, "request body is not JSON", "invalid_request_error")
        if not isinstance(body, dict):
            return _error_response(400, "request body must be a JSON object", "invalid_request_error")
        with self._lock:
            index = len(self._requests)
            self._requests.append(body)
            self._headers.append(dict(request.headers))
            self._in_flight += 1
            self._peak_in_flight = max(self._peak_in_flight, self._in_flight)
        try:
            fault = self._next_fault(body, index)
            response = self._respond(body, fault, request.headers)
            # The latency runs from the request's arrival and includes building the answer, as a
            # judge that works on requests in parallel would: after a shared sleep, a burst of
            # answers would queue for this one thread and arrive later the later they came.
            await self._pause(self.latency - (asyncio.get_running_loop().time() - arrived))
            if fault and fault.kind is FaultKind.slow:
                await self._pause(fault.delay_s)
            return response
        finally:
            with self._lock:
                self._in_flight -= 1

    def _respond(self, body: dict[str, Any], fault: Fault | None, headers: Mapping[str, str] | None = None) -> web.Response:
        if fault and fault.kind is FaultKind.http_401_echo:
            sent = (headers or {}).get("Authorization")
            return _error_response(401, f"Unauthorized: the credentials in 'Authorization: {sent}' were rejected (injected by the loopback judge)",
                                   "invalid_api_key", {"WWW-Authenticate": 'Bearer realm="loopback"'})
        if fault and fault.kind is FaultKind.http_429:
            headers = {"Retry-After": _format_seconds(fault.retry_after_s)}
            return _error_response(429, "Rate limit reached (injected by the loopback judge)", "rate_limit_exceeded", headers)
        if fault and fault.kind is FaultKind.http_500:
            return _error_response(500, "Internal server error (injected by the loopback judge)", "server_error")
        if body.get("stream"):
            return _error_response(400, "the loopback judge does not stream; send stream=false", "invalid_request_error")
        try:
            shape, answer = build_answer(body, self.policy, fault)
        except UnsupportedRequest as error:
            return _error_response(400, str(error), "invalid_request_error")
        except Exception:
            # A failing policy is a bug in the test setup; surface the traceback to the client.
            return _error_response(500, f"loopback judge policy failed:\n{traceback.format_exc()}", "server_error")
        text = render_answer_text(answer, shape, fault)
        return web.json_response(completion_payload(body, shape, text, fault))
