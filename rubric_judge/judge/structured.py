"""Structured answers from the judge: the request for a call's structured-output mode, the
answer's parsing and validation, and the re-asks after an invalid answer.

Both transports do this through one interface, `StructuredClient.ask`:

* `InstructorClient` (the `litellm` transport): instructor over litellm, which adapts the
  request to each provider (Anthropic, Gemini, Bedrock, ...).
* `DirectStructuredClient` (the `direct` transport, an OpenAI-compatible server): the same
  requests built here, with no OpenAI SDK. instructor's OpenAI handlers import the SDK's types,
  about 1.5 s of start-up on these machines, more than a small job's judging takes; their
  requests are plain JSON, built below as instructor 1.17 builds them (the tools, JSON-schema,
  JSON and markdown-JSON modes, and each mode's re-ask). tests/test_transport.py sends the same
  calls both ways, with answers that need re-asks, and requires identical request bodies and
  answers, so a cached answer never depends on the transport, and an instructor upgrade that
  changes its requests fails that test instead of drifting silently.

The answer models are the pydantic models of `planning.response` on both paths: instructor
validates with them and so does `DirectStructuredClient`.
"""

from __future__ import annotations

import json
import textwrap
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, Protocol

from pydantic import BaseModel, ValidationError

from rubric_judge.planning.response import response_schema, validation_model

if TYPE_CHECKING:
    from rubric_judge.planning.compile import JudgeCall


class InvalidAnswer(Exception):
    """The judge answered every ask, but never with a valid answer (after the re-asks)."""

    def __init__(self, message: str, n_attempts: int, total_usage: dict[str, int]):
        super().__init__(message)
        self.n_attempts = n_attempts
        self.total_usage = total_usage


class IncompleteAnswer(Exception):
    """The judge's answer was cut off at max_tokens; asking again would be cut off again."""

    def __init__(self, total_usage: dict[str, int]):
        super().__init__("the answer was cut off at max_tokens (finish_reason 'length'); raise the rubric's judge.max_tokens")
        self.total_usage = total_usage


class JudgeRefused(Exception):
    """The judge refused to answer (the OpenAI API's `refusal`)."""


class _Unparseable(Exception):
    """The answer holds no JSON where the mode expects it; re-asked like an invalid answer."""


class StructuredClient(Protocol):
    async def ask(self, call: JudgeCall, messages: list[dict[str, Any]], *, validation_retries: int, timeout: float) -> tuple[BaseModel, dict[str, int]]:
        """The call's validated answer and the tokens all its asks used.

        Args:
            call: the planned call (model, verdict kind, criteria, structured-output mode).
            messages: its chat messages (`messages.build_messages`).
            validation_retries: re-asks after an invalid answer (1 + N asks in all).
            timeout: seconds per ask.

        Returns:
            (the answer model, {"prompt_tokens": .., "completion_tokens": ..}).

        Raises:
            InvalidAnswer / IncompleteAnswer (or instructor's equivalents): the judge answered,
            but not validly; transport errors as the transport raises them.
        """
        ...


# The instruction instructor's JSON and markdown-JSON modes add to the system message, with its
# indentation: instructor dedents it, which leaves it as is once the indented schema is inside.
def _schema_instruction(schema: dict[str, Any]) -> str:
    return textwrap.dedent(
        f"""
            As a genius expert, your task is to understand the content and provide
            the parsed objects in json that match the following json_schema:\n

            {json.dumps(schema, indent=2, ensure_ascii=False)}

            Make sure to return an instance of the JSON, not the schema itself
            """
    )


_MD_JSON_REQUEST = "Return the correct JSON response within a ```json codeblock. not the JSON_SCHEMA"
_TOOLS_REASK = "Validation Error found:\n{error}\nRecall the function correctly, fix the errors"
_JSON_REASK = "Correct your JSON ONLY RESPONSE, based on the following errors:\n{error}"


def request_body(call: JudgeCall, messages: list[dict[str, Any]]) -> dict[str, Any]:
    """The chat-completions body of a call's first ask, less `model`, as instructor builds it.

    Args:
        call: the planned call; its `structured_output` picks the mode.
        messages: its chat messages.

    Returns:
        messages (with the schema instruction in the JSON modes), temperature, max_tokens when
        set, and the mode's `tools` + `tool_choice` or `response_format`.
    """
    schema = response_schema(call.criterion_texts, call.verdict)
    body: dict[str, Any] = {"messages": messages, "temperature": call.temperature}
    if call.max_tokens:
        body["max_tokens"] = call.max_tokens
    mode = call.structured_output
    if mode == "tools":
        parameters = {key: value for key, value in schema.items() if key not in ("title", "description")}
        parameters["required"] = sorted(schema.get("required", []))
        body["tools"] = [{"type": "function", "function": {"name": schema["title"], "description": schema["description"], "parameters": parameters}}]
        body["tool_choice"] = {"type": "function", "function": {"name": schema["title"]}}
    elif mode == "json_schema":
        body["response_format"] = {"type": "json_schema", "json_schema": {"name": schema["title"], "schema": schema}}
    elif mode in ("json", "md_json"):
        body["messages"] = _with_schema_instruction(messages, schema, ask_for_codeblock=mode == "md_json")
        if mode == "json":
            body["response_format"] = {"type": "json_object"}
    else:
        raise ValueError(f"unknown structured-output mode {mode!r}")
    return body


def _with_schema_instruction(messages: list[dict[str, Any]], schema: dict[str, Any], ask_for_codeblock: bool) -> list[dict[str, Any]]:
    from instructor.v2.core.messages import copy_messages_for_mutation, merge_consecutive_messages

    instruction = _schema_instruction(schema)
    messages = copy_messages_for_mutation(messages)
    if not messages or messages[0]["role"] != "system":
        messages.insert(0, {"role": "system", "content": instruction})
    elif isinstance(messages[0]["content"], str):
        messages[0]["content"] += f"\n\n{instruction}"
    else:
        messages[0]["content"][0]["text"] += f"\n\n{instruction}"
    if ask_for_codeblock:
        messages.append({"role": "user", "content": _MD_JSON_REQUEST})
    return merge_consecutive_messages(messages)


def _answer_json(mode: str, data: dict[str, Any]) -> str:
    """The JSON text of an answer, where the mode puts it."""
    choices = data.get("choices") or []
    if not choices:
        raise _Unparseable("No choices in OpenAI response")
    message = choices[0].get("message") or {}
    if mode != "tools":
        text = message.get("content") or ""
        if mode == "md_json":
            from instructor.v2.core.json import extract_json_from_codeblock

            return extract_json_from_codeblock(text)
        return text
    if message.get("refusal") is not None:
        raise JudgeRefused(f"Unable to generate a response due to {message['refusal']}")
    tool_calls = message.get("tool_calls") or []
    if tool_calls:
        arguments = (tool_calls[0].get("function") or {}).get("arguments")
    elif message.get("function_call") is not None:
        arguments = message["function_call"].get("arguments")
    else:
        raise _Unparseable("No tool calls or function call found in response")
    if arguments is None:
        raise _Unparseable("Tool call arguments missing in response")
    return arguments if isinstance(arguments, str) else json.dumps(arguments)


def _reask(mode: str, message: dict[str, Any], error: Exception) -> list[dict[str, Any]]:
    """The messages instructor appends after an invalid answer: the answer, then the error."""
    answer: dict[str, Any] = {"role": message.get("role") or "assistant", "content": message.get("content") or ""}
    tool_calls = message.get("tool_calls")
    if tool_calls is not None:
        answer["tool_calls"] = tool_calls
    if message.get("function_call") is not None:
        answer["content"] += json.dumps(message["function_call"])
    if mode != "tools":
        return [answer, {"role": "user", "content": _JSON_REASK.format(error=error)}]
    text = _TOOLS_REASK.format(error=error)
    if not tool_calls:
        return [answer, {"role": "user", "content": text}]
    return [answer, *({"role": "tool", "tool_call_id": tool_call.get("id"), "name": (tool_call.get("function") or {}).get("name"), "content": text}
                      for tool_call in tool_calls)]


def _add_usage(total: dict[str, int], data: dict[str, Any]) -> None:
    usage = data.get("usage") or {}
    for key in total:
        value = usage.get(key) if isinstance(usage, dict) else None
        total[key] += value if isinstance(value, int) else 0


def parse_answer(call: JudgeCall, data: dict[str, Any]) -> tuple[BaseModel, dict[str, int]]:
    """One chat-completions answer to a call, validated with the call's answer model, as the
    live path validates it (also a batch's output line: judge/batch.py).

    Args:
        call: the planned call (its criteria, verdict kind and structured-output mode).
        data: the decoded chat-completions response.

    Returns:
        (the answer model, the answer's token usage).

    Raises:
        IncompleteAnswer: cut off at max_tokens.
        InvalidAnswer: no valid answer where the mode puts it (n_attempts 1); its __cause__ is
            the validation error, whose text a re-ask quotes.
        JudgeRefused: the judge refused (tools mode).
    """
    model = validation_model(tuple(c.id for c in call.criteria), call.verdict)
    usage = {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0}
    _add_usage(usage, data)
    choices = data.get("choices") or []
    if choices and choices[0].get("finish_reason") == "length":
        raise IncompleteAnswer(usage)
    try:
        return model.model_validate_json(_answer_json(call.structured_output, data)), usage
    except (ValidationError, json.JSONDecodeError, _Unparseable) as exc:
        raise InvalidAnswer(str(exc), 1, usage) from exc


def _merged(total: dict[str, int], usage: dict[str, int]) -> dict[str, int]:
    return {key: total[key] + usage.get(key, 0) for key in total}


class DirectStructuredClient:
    """Structured answers over a `post(model, body, timeout)` to an OpenAI-compatible server."""

    def __init__(self, post: Callable[..., Awaitable[dict[str, Any]]]):
        self.post = post

    async def ask(self, call: JudgeCall, messages: list[dict[str, Any]], *, validation_retries: int, timeout: float) -> tuple[BaseModel, dict[str, int]]:
        body = request_body(call, messages)
        mode = call.structured_output
        usage = {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0}
        for ask in range(1, validation_retries + 2):
            data = await self.post(call.model, body, timeout)
            try:
                answer, used = parse_answer(call, data)
            except IncompleteAnswer as exc:
                raise IncompleteAnswer(_merged(usage, exc.total_usage)) from None
            except InvalidAnswer as exc:
                usage = _merged(usage, exc.total_usage)
                if ask > validation_retries:
                    raise InvalidAnswer(str(exc), ask, usage) from exc.__cause__
                choices = data.get("choices") or []
                message = (choices[0].get("message") or {}) if choices else {}
                # A new list each time: the body of an earlier ask is not changed after it was sent.
                body = {**body, "messages": [*body["messages"], *_reask(mode, message, exc.__cause__ or exc)]}
                continue
            return answer, _merged(usage, used)
        raise AssertionError("unreachable")


class InstructorClient:
    """Structured answers through instructor, over a transport's completion function."""

    def __init__(self, completion: Callable[..., Awaitable[Any]], structured_output: str):
        from rubric_judge.judge.messages import instructor_client

        self.client = instructor_client(completion, structured_output)

    async def ask(self, call: JudgeCall, messages: list[dict[str, Any]], *, validation_retries: int, timeout: float) -> tuple[BaseModel, dict[str, int]]:
        kwargs: dict[str, Any] = {"temperature": call.temperature}
        if call.max_tokens:
            kwargs["max_tokens"] = call.max_tokens
        answer, completion = await self.client.chat.completions.create_with_completion(
            model=call.model, messages=messages, response_model=call.response_model,
            # instructor's (v2) retry loop counts re-asks after the first ask: 1 + N asks in all.
            max_retries=validation_retries, timeout=timeout, **kwargs)
        usage = getattr(completion, "usage", None)
        return answer, {"prompt_tokens": getattr(usage, "prompt_tokens", 0) or 0, "completion_tokens": getattr(usage, "completion_tokens", 0) or 0}
