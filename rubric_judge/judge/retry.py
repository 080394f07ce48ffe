"""Classify failed judge attempts: retry, give up, or record the answer as unscored.

`classify` sorts an exception from one attempt into `transient` (retry with backoff, honouring
Retry-After), `invalid` (the judge answered, but never validly) or `fatal`, with a one-line
redacted message. `Reachability` counts attempts in a row that could not connect at all, so a
judge that is down stops the run in seconds. `usage_tokens` reads the token counts a failed or
successful attempt reports.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from rubric_judge.judge.transport import JudgeConnectionError
from rubric_judge.redaction import redact

if TYPE_CHECKING:
    from rubric_judge.judge.executor import Progress


class Reachability:
    """Counts attempts in a row that could not connect to the judge at all; at the limit it
    marks the run's progress as stopped, so no further call starts and no retry waits."""

    def __init__(self, limit: int, progress: Progress):
        self.limit = limit
        self.progress = progress
        self.failures_in_a_row = 0

    def attempt_ended(self, connected: bool, error: str = "") -> None:
        if connected:
            self.failures_in_a_row = 0
            return
        self.failures_in_a_row += 1
        if self.limit and self.failures_in_a_row >= self.limit and not self.progress.judge_unreachable:
            self.progress.judge_unreachable = f"the judge was unreachable for {self.failures_in_a_row} attempts in a row ({error})"


# Exceptions (by class name, across httpx, aiohttp, openai and litellm) that mean no connection
# could be opened at all, as opposed to a server that answered badly or slowly. A certificate
# the client does not trust fails every attempt the same way (ssl's and aiohttp's names).
_CONNECT_FAILURES = {"ConnectError", "ClientConnectorError", "ClientConnectorDNSError", "ConnectionRefusedError", "gaierror",
                     "SSLCertVerificationError", "ClientConnectorCertificateError"}


# What the OpenAI SDK says, through litellm, for every transport failure that is not a timeout;
# litellm keeps no cause chain (its __context__ is an unrelated RuntimeError), so the text is all
# there is. A server that drops every connection is as unusable as one that refuses them.
_SDK_CONNECTION_ERROR = "Connection error."


def is_unreachable(exc: BaseException | None) -> bool:
    """Whether an attempt's exception (or one in its cause chain) means no connection opened.

    Args:
        exc: the exception the attempt raised.

    Returns:
        True for a refused connection, an unknown host or a dropped connection.
    """
    seen = 0
    while exc is not None and seen < 10:
        if type(exc).__name__ in _CONNECT_FAILURES or str(exc).endswith(_SDK_CONNECTION_ERROR):
            return True
        exc, seen = exc.__cause__ or exc.__context__, seen + 1
    return False


# Exception classes, by name anywhere in their class hierarchy, as litellm and the OpenAI SDK
# name them: matched by name so that classifying needs neither library imported (the direct
# transport never loads litellm).
_TIMEOUTS = {"Timeout", "APITimeoutError", "TimeoutError"}
_RATE_LIMITED = {"RateLimitError"}
_SERVER_ERRORS = {"InternalServerError", "ServiceUnavailableError", "APIConnectionError", "BadGatewayError"}
_INCOMPLETE = {"IncompleteOutputException", "IncompleteAnswer"}


def _named(exc: BaseException, names: set[str]) -> bool:
    return any(cls.__name__ in names for cls in type(exc).__mro__)


def classify(exc: BaseException, litellm: Any = None) -> tuple[str, float | None, str]:
    """(transient | invalid | fatal, Retry-After seconds, message) for a failed attempt.

    Args:
        exc: what the attempt raised.
        litellm: unused; kept so older callers still work (classes are matched by name).
    """
    # instructor's exceptions (the litellm transport) and judge/structured.py's (direct), by
    # name, so that classifying never imports instructor.
    if _named(exc, _INCOMPLETE):
        # The judge did answer, but its answer was cut off at max_tokens (instructor raises this unwrapped).
        return "invalid", None, f"invalid answer: {_short(exc)}"
    if type(exc).__name__ == "InvalidAnswer":
        return "invalid", None, f"invalid answer after {exc.n_attempts} attempt(s): {_short(exc)}"
    if type(exc).__name__ == "InstructorRetryException":
        cause = exc.__cause__ or exc.__context__
        inner = _unwrap(cause)
        if inner is not None and not _is_validation(inner):
            return classify(inner)
        return "invalid", None, f"invalid answer after {exc.n_attempts} attempt(s): {_short(exc)}"
    if isinstance(exc, asyncio.TimeoutError) or _named(exc, _TIMEOUTS):
        return "transient", None, "timed out"
    if isinstance(exc, JudgeConnectionError):
        return "transient", None, f"no usable answer: {_short(exc)}"
    if _named(exc, _RATE_LIMITED):
        return "transient", _retry_after(exc), f"rate limited (429): {_short(exc)}"
    if _named(exc, _SERVER_ERRORS):
        return "transient", _retry_after(exc), f"server error: {_short(exc)}"
    status = getattr(exc, "status_code", None)
    if isinstance(status, int) and (status == 429 or status >= 500):
        return "transient", _retry_after(exc), f"HTTP {status}: {_short(exc)}"
    return "fatal", None, f"{type(exc).__name__}: {_short(exc)}"


def _unwrap(exc: BaseException | None) -> BaseException | None:
    seen = 0
    while exc is not None and seen < 5:
        if not _is_retry_wrapper(exc):
            return exc
        exc = exc.__cause__ or exc.__context__
        seen += 1
    return exc


def _is_retry_wrapper(exc: BaseException) -> bool:
    return type(exc).__name__ in ("RetryError", "InstructorRetryException")


def _is_validation(exc: BaseException) -> bool:
    import json

    from pydantic import ValidationError

    return isinstance(exc, ValidationError | json.JSONDecodeError) or type(exc).__name__ in ("IncompleteOutputException", "ValidationError")


def _retry_after(exc: BaseException) -> float | None:
    # litellm keeps the provider's headers on the exception, not on exc.response; the direct
    # transport's JudgeHTTPError keeps them as `headers`.
    headers = (getattr(exc, "litellm_response_headers", None) or getattr(exc, "headers", None)
               or getattr(getattr(exc, "response", None), "headers", None) or {})
    value = headers.get("retry-after") if hasattr(headers, "get") else None
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None


def _short(exc: BaseException) -> str:
    """The exception's message on one line, secrets redacted before it is cut (a cut could
    leave part of a key that no longer matches), at most 500 characters."""
    text = " ".join(redact(str(exc)).split())
    return text[:500]


def usage_tokens(usage: Any) -> tuple[int, int]:
    """(prompt tokens, completion tokens) from a usage object or dict; (0, 0) when absent.

    Args:
        usage: the `usage` of a completion, or instructor's total over its re-asks.

    Returns:
        The two counts, 0 where the judge reported none.
    """
    if usage is None:
        return 0, 0
    get = usage.get if isinstance(usage, dict) else (lambda k, d=0: getattr(usage, k, d))
    return int(get("prompt_tokens", 0) or 0), int(get("completion_tokens", 0) or 0)
