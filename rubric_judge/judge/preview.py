"""`preview()`: what the judge would be sent for one sample, before anything is paid.

For each judge call of the sample: the messages as they would be sent (text verbatim, each image
described by its label, field, file, media type, pixel size and byte count after any downscale,
never its bytes), the JSON schema of the answer and the structured-output mode that carries it,
the cache key and whether the verdict cache already holds the answer, and the estimated tokens
and cost. Offline: no judge is called and the cache is only read.

The messages are read back from the request body the executor would send (`_request_body`), not
rebuilt beside it, so what the preview shows is what the judge gets.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from rubric_judge.errors import Location, Problem, UserError
from rubric_judge.planning.compile import ImagePart, JudgeCall


@dataclass(frozen=True)
class PreviewImage:
    """An image part of a message, described instead of sent.

    Attributes:
        label: the grounding label the rubric gives it (None without one).
        field: the sample field the image comes from.
        file: the image file.
        media_type: what it is sent as (image/png, image/jpeg).
        width, height: pixels as sent (after --max-image-side and any label strip).
        bytes: size as sent (after any downscale or re-encoding), before base64.
        sha256: digest of the bytes sent (part of the cache key).
    """

    label: str | None
    field: str
    file: str
    media_type: str
    width: int
    height: int
    bytes: int
    sha256: str
    kind: str = "image"


@dataclass(frozen=True)
class PreviewText:
    """A text part of a message, verbatim."""

    text: str
    kind: str = "text"


@dataclass(frozen=True)
class PreviewMessage:
    """One chat message: its role (system, user) and its parts in order."""

    role: str
    parts: tuple[PreviewText | PreviewImage, ...]


@dataclass(frozen=True)
class PreviewCall:
    """One judge call of the sample.

    Attributes:
        index: 1-based position among the sample's calls (`--call N`).
        group: the dimension id, criterion id or "all", by batching mode.
        replicate: the replicate index (part of the cache key).
        criteria: ids of the criteria it asks about, in prompt order.
        messages: the messages as sent.
        structured_output: the rubric's `judge.structured_output` mode (tools, json, json_schema,
            md_json), which decides how the request carries `response_schema`.
        response_schema: the JSON schema the answer must follow (every mode sends it).
        request: the rest of the request body (model, parameters, the mode's schema fields),
            without the messages.
        cache_key: the verdict cache's key for this call.
        cached: whether the cache holds its answer (a run would not pay for it).
        prompt_tokens, completion_tokens: estimated.
        cost_usd: estimated; None when the judge has no known price.
    """

    index: int
    group: str
    replicate: int
    criteria: tuple[str, ...]
    messages: tuple[PreviewMessage, ...]
    structured_output: str
    response_schema: Mapping[str, Any]
    request: Mapping[str, Any]
    cache_key: str
    cached: bool
    prompt_tokens: int
    completion_tokens: int
    cost_usd: float | None


@dataclass(frozen=True)
class Preview:
    """What `score` would send the judge for one sample.

    Attributes:
        rubric_id, rubric_version: the rubric (for a task rubric set, the sample's).
        task: the task rubric's `task` when a task rubric judges the sample; None for a general one.
        judge_model: the judge the calls are for.
        api_base: the judge server's URL (part of the cache key), without credentials.
        sample_id: the sample previewed.
        batching: the batching mode of the calls.
        calls: the sample's calls (only the one asked for with `call`).
        call_count: how many calls the sample makes in all.
        missing_outputs: outputs the model did not produce; the sample then gets no call.
        missing_output_policy: the rubric's `scoring.missing_output` (fail | skip), how such a
            sample is scored.
        cache_dir: the verdict cache read.
    """

    rubric_id: str
    rubric_version: str
    task: str | None
    judge_model: str
    api_base: str | None
    sample_id: str
    batching: str
    calls: tuple[PreviewCall, ...]
    call_count: int
    missing_outputs: tuple[str, ...]
    missing_output_policy: str | None
    cache_dir: str

    @property
    def cost_usd(self) -> float | None:
        """Estimated cost of the calls shown; None when the judge has no known price."""
        costs = [c.cost_usd for c in self.calls]
        return None if any(c is None for c in costs) else sum(c for c in costs if c is not None)

    @property
    def to_pay_usd(self) -> float | None:
        """Estimated cost of the calls shown that the cache does not answer."""
        costs = [c.cost_usd for c in self.calls if not c.cached]
        return None if any(c is None for c in costs) else sum(c for c in costs if c is not None)

    def to_dict(self) -> dict[str, Any]:
        """The preview as plain JSON-ready data (what `preview --format json` prints)."""
        return {**asdict(self), "cost_usd": self.cost_usd, "to_pay_usd": self.to_pay_usd}


def preview(
    rubric: str | Path,
    *,
    data: str | Path,
    outputs: str | Path | None = None,
    sample: str | None = None,
    call: int | None = None,
    judge: str | None = None,
    api_base: str | None = None,
    max_image_side: int | None = None,
    cache_dir: str | Path | None = None,
) -> Preview:
    """The exact messages, schema, cache key and estimate of one sample's judge calls, offline.

    Args:
        rubric: a rubric file, a directory of task rubrics, or `builtin:...`.
        data: the dataset manifest (JSONL).
        outputs: the model's outputs (directory or JSONL); without them every output the rubric
            declares is missing, so give them to see the calls.
        sample: the sample's id (default: the manifest's first sample).
        call: only this call (1-based, in the order `score` makes them); None for all of them.
        judge: litellm model string of the judge (default: the rubric's); "offline" for the
            built-in offline judge.
        api_base: the judge server's URL, part of the cache key.
        max_image_side: downscale images as `score --max-image-side` would.
        cache_dir: the verdict cache to read (default: `$RUBRIC_JUDGE_CACHE_DIR` or ~/.cache/rubric-judge).

    Returns:
        A `Preview`.

    Raises:
        UserError: invalid rubric, manifest or outputs; an unknown sample id; a call index out of
            range; a rubric with no judge; a template that cannot render for the sample or an
            image that cannot be read.
    """
    from rubric_judge.cache.verdicts import CacheMode, VerdictCache, default_cache_dir
    from rubric_judge.planning.compile import build_plan
    from rubric_judge.planning.estimate import estimate_calls
    from rubric_judge.planning.job import load_job
    from rubric_judge.planning.selection import select_samples
    from rubric_judge.planning.target import judge_target
    from rubric_judge.redaction import redact_url

    job = load_job(Path(rubric), Path(data), Path(outputs) if outputs is not None else None)
    chosen = sample if sample is not None else job.samples[0].id
    job, _ = select_samples(job, Path(data), None, [chosen])
    base = job.rubrics[0]
    if not base.judged:
        raise UserError(Problem(Location(Path(str(rubric))), "this rubric has no judge calls (metrics only): there is nothing to preview",
                                fix="use `rubric-judge plan` to see its metric work"))
    target = judge_target(base, judge, api_base, max_image_side)
    plan = build_plan(job.rubrics, job.samples, target)
    if plan.problems:
        raise UserError([*plan.problems, Problem(Location(None), f"sample {chosen!r} cannot be previewed until the problems above are fixed")])
    sample_plan = plan.samples[0]
    calls = list(sample_plan.calls)
    if call is not None and not 1 <= call <= len(calls):
        counted = f"calls 1..{len(calls)}" if calls else "no judge call"
        raise UserError(Problem(Location(None), f"call {call} is out of range: sample {chosen!r} has {counted}", field="call",
                                fix=f"give --call between 1 and {len(calls)}" if calls else "leave out --call"))
    folder = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    shown = []
    with VerdictCache(folder, CacheMode.read_only) as cache:
        for index, judge_call in enumerate(calls, start=1):
            if call is not None and index != call:
                continue
            estimate = estimate_calls([judge_call], target.model)
            shown.append(_preview_call(index, judge_call, cache.get(judge_call.cache_key) is not None,
                                       estimate.prompt_tokens, estimate.completion_tokens, estimate.cost_usd))
    rubric_of_sample = sample_plan.rubric
    return Preview(
        rubric_id=rubric_of_sample.rubric, rubric_version=str(rubric_of_sample.version),
        task=rubric_of_sample.task,
        judge_model=target.model, api_base=redact_url(target.api_base), sample_id=chosen, batching=rubric_of_sample.judge.mode.value,
        calls=tuple(shown), call_count=len(calls), missing_outputs=tuple(sample_plan.sample.missing_outputs),
        missing_output_policy=rubric_of_sample.scoring.missing_output.value if rubric_of_sample.scoring else None, cache_dir=str(folder),
    )


def _request_body(call: JudgeCall) -> dict[str, Any]:
    """The request the executor makes for `call`, as the direct transport sends it: model,
    messages (images as data URLs), parameters and the structured-output mode's fields (a
    `tools` entry, a `response_format`, or the schema added to the messages). litellm adapts
    this body to a provider that is not OpenAI-compatible."""
    from rubric_judge.judge.messages import build_messages
    from rubric_judge.judge.structured import request_body

    return {"model": call.model, **request_body(call, build_messages(call))}


_DATA_URL = re.compile(r"data:(?P<media>[\w.+/-]+);base64,(?P<data>.*)", re.DOTALL)


def _preview_call(index: int, call: JudgeCall, cached: bool, prompt_tokens: int, completion_tokens: int, cost: float | None) -> PreviewCall:
    """A call's preview, read from its request body: text verbatim, each data-URL image replaced
    by its description (the i-th image of the body is the call's i-th image part)."""
    from rubric_judge.planning.response import response_schema

    body = _request_body(call)
    images = iter(call.images)
    messages = []
    for message in body["messages"]:
        content = message["content"]
        parts: list[PreviewText | PreviewImage] = []
        for part in [{"type": "text", "text": content}] if isinstance(content, str) else content:
            if part.get("type") == "image_url":
                parts.append(_describe_image(part["image_url"]["url"], next(images)))
            else:
                parts.append(PreviewText(part.get("text", "")))
        messages.append(PreviewMessage(message["role"], tuple(parts)))
    request = {key: value for key, value in body.items() if key != "messages"}
    return PreviewCall(
        index=index, group=call.group, replicate=call.replicate, criteria=tuple(c.id for c in call.criteria), messages=tuple(messages),
        structured_output=call.structured_output, response_schema=response_schema(call.criterion_texts, call.verdict), request=request,
        cache_key=call.cache_key, cached=cached, prompt_tokens=prompt_tokens, completion_tokens=completion_tokens, cost_usd=cost,
    )


def _describe_image(url: str, part: ImagePart) -> PreviewImage:
    """What an image part of the body carries, measured from the data URL itself."""
    match = _DATA_URL.fullmatch(url)
    size = len(base64.b64decode(match["data"])) if match else 0
    return PreviewImage(part.label, part.field, str(part.path), match["media"] if match else part.info.media_type,
                        part.info.width, part.info.height, size, part.info.sha256)
