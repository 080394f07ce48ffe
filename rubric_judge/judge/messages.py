"""Build what is sent to the judge: the chat messages of a call and the instructor client.

`build_messages` turns a planned `JudgeCall` into OpenAI-style messages, encoding each image
as the planner hashed it (and refusing one that changed since). `instructor_client` wraps the
litellm transport's completion function in instructor, in the call's structured-output mode.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from rubric_judge.planning.compile import ImagePart, JudgeCall, TextPart
from rubric_judge.planning.images import EncodedImage, planned_image

INSTRUCTOR_MODES = {"tools": "TOOLS", "json": "JSON", "json_schema": "JSON_SCHEMA", "md_json": "MD_JSON"}


def instructor_client(completion: Callable[..., Awaitable[Any]], structured_output: str) -> Any:
    """An async instructor client over a transport's completion function.

    Args:
        completion: an OpenAI-shaped async completion function (litellm's `acompletion`).
        structured_output: the rubric's `judge.structured_output` (tools, json, json_schema, md_json).

    Returns:
        The instructor client, with instructor's own logging silenced.
    """
    import logging

    import instructor

    # instructor logs every failed attempt at ERROR on stderr (two lines each: 600 KB for a run
    # against a judge that is down). Each call's outcome and error are recorded by the executor
    # and stored in judge_calls, so its log adds only noise under the progress bar.
    logging.getLogger("instructor").setLevel(logging.CRITICAL)

    # from_litellm takes any OpenAI-shaped async completion function, which both transports are.
    return instructor.from_litellm(completion, mode=getattr(instructor.Mode, INSTRUCTOR_MODES[structured_output]))


def _encoded(part: ImagePart) -> EncodedImage:
    encoded = planned_image(part.path, part.info.sha256, part.label, part.strip, part.max_side)
    if encoded.sha256 != part.info.sha256:
        raise RuntimeError(f"{part.path} changed after the run was planned; re-run to judge the new file")
    return encoded


def build_messages(call: JudgeCall) -> list[dict[str, Any]]:
    """OpenAI-style chat messages: the system prompt, then text and image parts in order.

    Args:
        call: the planned call.

    Returns:
        The messages, each image as a data URL.

    Raises:
        RuntimeError: an image changed after the run was planned.
        OSError: an image can no longer be read.
    """
    content: list[dict[str, Any]] = []
    for part in call.parts:
        if isinstance(part, TextPart):
            content.append({"type": "text", "text": part.text})
        else:
            content.append({"type": "image_url", "image_url": {"url": _encoded(part).data_url()}})
    messages: list[dict[str, Any]] = []
    if call.system:
        messages.append({"role": "system", "content": call.system})
    messages.append({"role": "user", "content": content})
    return messages
