"""How judge requests reach the judge: through litellm, or straight to an OpenAI-compatible server.

Both transports send the same requests (prompts, structured output, re-asks) and validate
answers with the same pydantic models (judge/structured.py); they differ in who builds the
requests and in the HTTP layer.

* `litellm` speaks to every provider litellm knows (OpenAI, Anthropic, Gemini, Bedrock, ...) and
  maps parameters to each provider's quirks. That generality costs 10-17 ms of client CPU a
  call (the OpenAI SDK's request transform, litellm's dispatch, response and cost bookkeeping),
  which caps one process near 60-90 calls/s.
* `direct` posts the chat-completions body itself to a server you name with `--api-base` that
  speaks the OpenAI API (vLLM, SGLang, llama.cpp, Ollama, the loopback judge): pooled keep-alive
  connections of rubric-judge's lean HTTP client (judge/httpclient.py; aiohttp when a proxy is
  configured), one JSON encode, a fraction of a millisecond a call, and neither litellm nor
  instructor's OpenAI SDK imported (seconds of start-up). It sends the body instructor and
  litellm would send to such a server (a test compares the decoded bodies, re-asks included, in
  every structured-output mode), so the cache key does not depend on it.

Credentials in the base URL (`http://user:password@host/v1`, for a server behind a proxy with
basic auth) work the same on both: they are taken out of the URL and sent as an
`Authorization: Basic` header, in place of the API key's `Bearer` header. That is what httpx,
under the OpenAI SDK, does with such a URL on its own; aiohttp, the HTTP client of litellm's
async calls (and of `direct` through a proxy), refuses a URL with credentials next to an
Authorization header.

`auto` picks `direct` exactly when there is an `--api-base` and the model string names an
OpenAI-compatible provider, and litellm otherwise (`score` takes its built-in offline judge
through litellm, which that judge exists to exercise).
"""

from __future__ import annotations

import base64
import contextlib
import functools
import json
import os
import sys
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from rubric_judge.errors import Location, Problem, UserError
from rubric_judge.redaction import redact, register_secret, register_url, url_without_userinfo

if TYPE_CHECKING:
    from rubric_judge.judge.structured import StructuredClient

TRANSPORTS = ("auto", "litellm", "direct")
# litellm providers whose requests are plain OpenAI chat completions at the given base URL.
OPENAI_COMPATIBLE_PROVIDERS = ("openai", "hosted_vllm")

# The key sent to a self-hosted server that wants none (the OpenAI clients insist on one): no secret.
NO_KEY = "not-needed"


class JudgeHTTPError(Exception):
    """The judge's server answered with an HTTP error status."""

    def __init__(self, status_code: int, message: str, headers: dict[str, str]):
        super().__init__(f"HTTP {status_code}: {message}")
        self.status_code = status_code
        self.headers = headers  # Retry-After is read from here


class JudgeConnectionError(Exception):
    """No usable answer arrived: the connection failed or the server sent something not JSON."""


def provider_of(model: str) -> str:
    """litellm's provider prefix of a model string (`openai` when there is none)."""
    return model.split("/", 1)[0] if "/" in model else "openai"


def provider_api_key(model: str) -> str | None:
    """The key litellm would read from the environment for this model's provider."""
    return os.environ.get(f"{provider_of(model).upper()}_API_KEY")


def resolve_transport(requested: str, model: str, api_base: str | None) -> str:
    """`litellm` or `direct` for this judge; a `direct` that cannot work is a UserError."""
    if requested not in TRANSPORTS:
        raise UserError(_problem(f"unknown transport {requested!r}", f"use one of {', '.join(TRANSPORTS)}"))
    compatible = provider_of(model) in OPENAI_COMPATIBLE_PROVIDERS
    if requested == "direct":
        if not api_base:
            raise UserError(_problem("`direct` needs the URL of an OpenAI-compatible server",
                                     "give --api-base, or use --transport litellm for a hosted provider"))
        if not compatible:
            raise UserError(_problem(f"`direct` speaks only the OpenAI chat API, but litellm reads {model!r} as a {provider_of(model)!r} model",
                                     f"use --transport litellm, or name the model {' or '.join(p + '/...' for p in OPENAI_COMPATIBLE_PROVIDERS)}"))
        return "direct"
    if requested == "auto":
        return "direct" if api_base and compatible else "litellm"
    return "litellm"


@contextlib.asynccontextmanager
async def judge_client(transport: str, api_base: str | None, api_key: str | None, concurrency: int, structured_output: str) -> AsyncIterator[StructuredClient]:
    """The client that asks the judge for structured answers, open for a run.

    Args:
        transport: `direct` or `litellm` (resolved, see `resolve_transport`).
        api_base: the judge's base URL, possibly with `user:password@`; None for a hosted provider.
        api_key: the key sent as a Bearer token (NO_KEY for a server that wants none).
        concurrency: connections kept open to the server (`direct`).
        structured_output: the rubric's `judge.structured_output` mode.

    Yields:
        A `StructuredClient`: `DirectStructuredClient` for `direct`, `InstructorClient` for `litellm`.
    """
    from rubric_judge.judge.structured import DirectStructuredClient, InstructorClient

    if api_key != NO_KEY:
        register_secret(api_key)
    register_url(api_base)
    url, basic_auth = split_credentials(api_base)
    if transport == "direct":
        async with DirectClient(url or "", api_key, concurrency, authorization=basic_auth) as client:
            yield DirectStructuredClient(client.post)
        return
    from rubric_judge.llm import litellm_module

    litellm = litellm_module()
    endpoint: dict[str, Any] = {key: value for key, value in (("api_base", url), ("api_key", api_key)) if value}
    if basic_auth:
        # The OpenAI SDK lets extra headers override the Authorization it builds from the key.
        endpoint["extra_headers"] = {"Authorization": basic_auth}
    # The OpenAI SDK under litellm and litellm itself both retry on their own; retries belong to
    # the executor alone, so every attempt is counted and the backoff policy is ours.
    yield InstructorClient(functools.partial(litellm.acompletion, max_retries=0, num_retries=0, **endpoint), structured_output)


def split_credentials(api_base: str | None) -> tuple[str | None, str | None]:
    """(the URL without `user:password@`, the `Basic` Authorization value for them, or None).

    Percent-escapes in the user name and password are decoded first, and the pair is sent as
    UTF-8, as httpx does for a URL with credentials.

    Args:
        api_base: the judge's base URL, possibly None.
    Returns:
        The URL requests go to, and the header value when the URL carried credentials.
    """
    if not api_base:
        return api_base, None
    from urllib.parse import unquote, urlsplit

    parts = urlsplit(api_base)
    if parts.username is None and parts.password is None:
        return api_base, None
    pair = f"{unquote(parts.username or '')}:{unquote(parts.password or '')}".encode()
    return url_without_userinfo(api_base), "Basic " + base64.b64encode(pair).decode("ascii")


class DirectClient:
    """POST /chat/completions on one OpenAI-compatible server, over pooled keep-alive connections:
    rubric-judge's lean client (judge/httpclient.py), or aiohttp when a proxy is configured for
    the URL (aiohttp speaks proxies: CONNECT tunnels and proxy credentials)."""

    def __init__(self, api_base: str, api_key: str | None, concurrency: int, authorization: str | None = None):
        """`authorization`, when given, is sent instead of `Bearer <api_key>` (see split_credentials);
        `api_base` must then be free of credentials, which aiohttp would refuse next to it."""
        self.url = api_base.rstrip("/") + "/chat/completions"
        self.headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if authorization or api_key:
            self.headers["Authorization"] = authorization or f"Bearer {api_key}"
        self.concurrency = concurrency
        self.proxy = _proxy_for(self.url)
        self._pool: Any = None
        self._session: Any = None

    async def __aenter__(self) -> DirectClient:
        if self.proxy is None:
            from rubric_judge.judge.httpclient import ConnectionPool

            self._pool = ConnectionPool(self.url, self.concurrency)
            return self
        import aiohttp

        connector = aiohttp.TCPConnector(limit=self.concurrency, ttl_dns_cache=300)
        self._session = aiohttp.ClientSession(connector=connector)
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        if self._pool is not None:
            await self._pool.close()
        if self._session is not None:
            await self._session.close()

    async def post(self, model: str, body: dict[str, Any], timeout: float) -> dict[str, Any]:
        """One chat completion: `body` (with `model`) posted, the decoded answer returned.

        Raises:
            JudgeHTTPError: the server answered with an error status.
            JudgeConnectionError: no connection, or an answer that is not a JSON object with `choices`.
            TimeoutError: no answer within `timeout` seconds.
        """
        payload = encode_json({"model": _served_name(model), **body})
        if self._pool is not None:
            from rubric_judge.judge.httpclient import HTTPClientError

            try:
                response = await self._pool.post(self.url, self.headers, payload, timeout)
            except HTTPClientError as exc:
                raise JudgeConnectionError(str(exc)) from exc
            status, headers, raw = response.status, response.headers, response.body
        else:
            status, headers, raw = await self._post_through_proxy(payload, timeout)
        if status >= 400:
            raise JudgeHTTPError(status, _error_message(raw), headers)
        try:
            data = json.loads(raw)
        except ValueError as exc:
            raise JudgeConnectionError(f"the server answered HTTP {status} with a body that is not JSON: {_excerpt(raw)}") from exc
        if not isinstance(data, dict) or not isinstance(data.get("choices"), list):
            raise JudgeConnectionError(f"the server's answer has no `choices` list: {_excerpt(raw)}")
        return data

    async def _post_through_proxy(self, payload: bytes, timeout: float) -> tuple[int, dict[str, str], bytes]:
        import aiohttp

        try:
            async with self._session.post(self.url, data=payload, headers=self.headers, proxy=self.proxy,
                                          timeout=aiohttp.ClientTimeout(total=timeout)) as response:
                return response.status, {key.lower(): value for key, value in response.headers.items()}, await response.read()
        except TimeoutError:
            raise  # aiohttp's socket timeouts are ClientErrors too; the executor reports these as timeouts
        except aiohttp.ClientError as exc:
            raise JudgeConnectionError(f"{type(exc).__name__}: {exc}") from exc


# What stands in for a verbatim string while the rest is encoded; it encodes as "\u0000rj\u0000".
_MARKER = "\x00rj\x00"
_MARKER_JSON = json.dumps(_MARKER)


def encode_json(value: Any) -> bytes:
    """`json.dumps(value, ensure_ascii=False, separators=(",", ":"))` in UTF-8, byte for byte, with
    the images' data URLs (`planning.images.JSONVerbatim`) copied in instead of scanned.

    json.dumps scans every string character by character, about 5 ms a megabyte: 5-6 ms of the
    event loop's CPU for a call with two 300 KB images, 30 ms for two of IlluGenBench's 1024-px
    illustrations. A data URL is its own JSON text, so it is swapped for a marker, the rest is
    encoded, and the URLs are put back where the markers are. When a marker appears more often
    than it was put in (a string of the input holds it), the plain encoding is used.

    Args:
        value: the request body (dicts, lists, strings, numbers, booleans, None).

    Returns:
        The body's JSON, UTF-8 encoded.
    """
    from rubric_judge.planning.images import JSONVerbatim

    verbatim: list[str] = []

    def swap(node: Any) -> Any:
        if isinstance(node, JSONVerbatim):
            verbatim.append(node)
            return _MARKER
        if isinstance(node, dict):
            return {key: swap(item) for key, item in node.items()}
        if isinstance(node, list):
            return [swap(item) for item in node]
        return node

    skeleton = json.dumps(swap(value), ensure_ascii=False, separators=(",", ":"))
    if not verbatim:
        return skeleton.encode("utf-8")
    pieces = skeleton.split(_MARKER_JSON)
    if len(pieces) != len(verbatim) + 1:
        return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    parts = [pieces[0].encode("utf-8")]
    for text, piece in zip(verbatim, pieces[1:], strict=True):
        parts.extend((b'"', text.encode("ascii"), b'"', piece.encode("utf-8")))
    return b"".join(parts)


def _proxy_for(url: str) -> str | None:
    """The proxy HTTP(S)_PROXY / NO_PROXY name for this URL, read once per run: aiohttp's own
    `trust_env` looks it up again on a worker thread for every request (~8% of the client CPU)."""
    if sys.platform not in ("darwin", "win32") and not any(name.lower().endswith("_proxy") for name in os.environ):
        # There urllib reads proxies from *_proxy variables only: with none set, none applies,
        # and its import (50-70 ms, http.client with it) stays off the first request's path.
        return None
    import urllib.request
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    if urllib.request.proxy_bypass(parts.hostname or ""):
        return None
    return urllib.request.getproxies().get(parts.scheme)


def _problem(message: str, fix: str) -> Problem:
    return Problem(Location(None), message, field="--transport", fix=fix)


def _served_name(model: str) -> str:
    """The model name the server knows: litellm's provider prefix removed (`openai/Qwen/X` -> `Qwen/X`)."""
    provider, _, name = model.partition("/")
    return name if name and provider in OPENAI_COMPATIBLE_PROVIDERS else model


def _error_message(raw: bytes) -> str:
    text = raw.decode("utf-8", "replace")
    with contextlib.suppress(ValueError, AttributeError, TypeError):
        error = json.loads(text).get("error")
        text = error.get("message", text) if isinstance(error, dict) else str(error or text)
    # Redacted before it is cut: a cut through an echoed key would leave a part no longer matched.
    return " ".join(redact(text).split())[:500]


def _excerpt(raw: bytes) -> str:
    """The start of a body, for an error message: redacted, then cut."""
    return repr(redact(raw.decode("utf-8", "replace"))[:200])
