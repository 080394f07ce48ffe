"""Compile rubric x sample into `JudgeCall` plans: messages, response model and cache key.

Criteria are grouped into calls by the batching mode (one call per criterion, per dimension or
per sample); dimensions whose `when` does not match the sample are left out. Images appear in
the rubric's declared order, each announced by its grounding label. A sample missing a model
output gets no call: it is reported as missing, and scored by the rubric's explicit policy.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path

from rubric_judge.cache.key import cache_key
from rubric_judge.errors import Location, Problem
from rubric_judge.imageio import ImageError, ImageTooLarge, open_image, sniff_media_type
from rubric_judge.planning.images import ImageInfo, encoded_image, image_info
from rubric_judge.planning.response import response_model, response_schema
from rubric_judge.planning.samples import Sample, missing_outputs
from rubric_judge.rubrics import templates
from rubric_judge.rubrics.context import criterion_context, template_context
from rubric_judge.rubrics.schema import Batching, Criterion, Dimension, Rubric, VerdictSpec


class TemplateRenderError(Exception):
    """A rubric template that validated but cannot render for a particular sample or mode."""


class UnreadableOutput(ImageError):
    """An image the model produced that cannot be read or decoded (`field` names its output).

    The model's failure, not the dataset's: `plan_samples` scores the sample as if that output
    were absent (the rubric's missing-output policy), and the run goes on. An output over the
    pixel limit is not one: that limit is the user's to raise.
    """

    def __init__(self, output_field: str, message: str):
        super().__init__(message)
        self.field = output_field


@dataclass(frozen=True)
class TextPart:
    text: str


@dataclass(frozen=True)
class ImagePart:
    field: str
    label: str | None
    strip: bool
    max_side: int | None
    path: Path
    info: ImageInfo


@dataclass(frozen=True)
class JudgeTarget:
    """Which judge answers: a litellm model string and, for local servers, its base URL."""

    model: str
    api_base: str | None = None
    max_image_side: int | None = None


@dataclass(frozen=True)
class JudgeCall:
    rubric_id: str
    rubric_version: str
    sample_id: str
    group: str  # the dimension id, criterion id or "all", by batching mode
    replicate: int
    criteria: tuple[Criterion, ...]
    verdict: VerdictSpec
    system: str | None
    parts: tuple[TextPart | ImagePart, ...]
    model: str
    temperature: float
    max_tokens: int | None
    structured_output: str
    cache_key: str

    @property
    def criterion_texts(self) -> tuple[tuple[str, str], ...]:
        return tuple((c.id, c.text) for c in self.criteria)

    @property
    def response_model(self):
        return response_model(self.criterion_texts, self.verdict)

    @property
    def images(self) -> tuple[ImagePart, ...]:
        return tuple(p for p in self.parts if isinstance(p, ImagePart))


@dataclass(frozen=True)
class SamplePlan:
    sample: Sample
    rubric: Rubric
    calls: tuple[JudgeCall, ...]
    # Criteria not judged because the model produced no output for this sample.
    unjudged: tuple[Criterion, ...] = ()
    # The criteria that apply to the sample, for an outline (`outline_sample`) that has no calls yet.
    criteria: tuple[Criterion, ...] = ()
    # Output images that could not be read, scored as absent (`plan_samples`): one problem each.
    unreadable_outputs: tuple[Problem, ...] = ()


@dataclass(frozen=True)
class Plan:
    samples: tuple[SamplePlan, ...]
    problems: tuple[Problem, ...] = field(default=())

    @property
    def calls(self) -> list[JudgeCall]:
        return [call for sample in self.samples for call in sample.calls]


def applicable_criteria(rubric: Rubric, sample: Sample, render: bool = True) -> list[Criterion]:
    """The criteria of the dimensions that apply to the sample, in rubric order, their texts
    rendered for it (template variables such as `{{ body_part }}`; see `render_criterion`).

    Raises:
        TemplateRenderError: a criterion text cannot render for this sample (with `render`).
    """
    fields = dict(sample.fields)
    dims = {d.id: d for d in rubric.dimensions if d.applies_to(fields)}
    criteria = [c for c in rubric.criteria if c.dimension in dims]
    if not render:
        return criteria
    return [render_criterion(rubric, c, sample.id, fields, rubric.verdict_for(dims[c.dimension])) for c in criteria]


def render_criterion(rubric: Rubric, criterion: Criterion, sample_id: str, fields: dict, verdict: VerdictSpec) -> Criterion:
    """The criterion with its text rendered in the prompt sandbox for one sample: what the judge
    sees, what the cache key covers and what is stored. A text without template syntax is
    returned as it is."""
    if not templates.is_template(criterion.text):
        return criterion
    try:
        text = templates.render(criterion.text, criterion_context(rubric, sample_id, fields, verdict)).strip()
    except Exception as exc:  # e.g. an optional input the sample lacks
        raise TemplateRenderError(f"criterion {criterion.id!r} text fails for sample {sample_id!r}: {exc}") from None
    return criterion.model_copy(update={"text": text})


def group_criteria(rubric: Rubric, criteria: list[Criterion], mode: Batching) -> list[tuple[str, Dimension | None, list[Criterion]]]:
    """Criteria into calls by batching mode. One call never mixes verdicts (a rubric may have a
    binary checklist and 1-10 dimensions): in per_sample mode each verdict gets its own call,
    grouped `all` when the rubric has one verdict and `all-binary` / `all-scale1-10` otherwise."""
    if mode is Batching.per_criterion:
        return [(c.id, rubric.dimension(c.dimension), [c]) for c in criteria]
    if mode is Batching.per_sample:
        by_verdict: dict[VerdictSpec, list[Criterion]] = {}
        for c in criteria:
            by_verdict.setdefault(rubric.verdict_for(rubric.dimension(c.dimension)), []).append(c)
        if len(by_verdict) <= 1 and not rubric.mixed_verdicts:
            return [("all", None, members) for members in by_verdict.values()]
        return [(f"all-{_verdict_label(verdict)}", None, members) for verdict, members in by_verdict.items()]
    groups = []
    for dim in rubric.dimensions:
        members = [c for c in criteria if c.dimension == dim.id]
        if members:
            groups.append((dim.id, dim, members))
    return groups


def _verdict_label(verdict: VerdictSpec) -> str:
    return "binary" if verdict.kind == "binary" else f"scale{verdict.min}-{verdict.max}"


def call_verdict(rubric: Rubric, members: Sequence[Criterion]) -> VerdictSpec:
    """The verdict of a call's criteria (one per call, see `group_criteria`)."""
    return rubric.verdict_for(rubric.dimension(members[0].dimension)) if members else rubric.verdict


def outline_sample(rubric: Rubric, sample: Sample) -> SamplePlan:
    """A sample's plan without its calls (no image is read): what the samples and criteria
    tables need, written before judging starts so an interrupted run still shows its coverage.
    A criterion text that cannot render for the sample keeps its template here; compiling the
    sample reports the problem."""
    try:
        criteria = tuple(applicable_criteria(rubric, sample))
    except TemplateRenderError:
        criteria = tuple(applicable_criteria(rubric, sample, render=False))
    if sample.missing_outputs:
        return SamplePlan(sample, rubric, (), criteria)
    return SamplePlan(sample, rubric, (), (), criteria)


def compile_sample(rubric: Rubric, sample: Sample, target: JudgeTarget, mode: Batching | None = None, replicates: int = 1) -> SamplePlan:
    criteria = applicable_criteria(rubric, sample)
    if sample.missing_outputs:
        return SamplePlan(sample, rubric, (), tuple(criteria))
    groups = group_criteria(rubric, criteria, mode or rubric.judge.mode)
    images = _image_parts(rubric, sample, target) if groups else []  # no call, no image to encode (a metrics-only rubric)
    calls = []
    for group, dimension, members in groups:
        verdict = call_verdict(rubric, members)
        context = template_context(rubric, sample.id, dict(sample.fields), members, dimension, verdict)
        try:
            system = templates.render(rubric.system, context) if rubric.system else None
            prompt = templates.render(rubric.prompt, context)
        except Exception as exc:  # e.g. a per_dimension template used in per_sample mode
            raise TemplateRenderError(f"prompt template fails for sample {sample.id!r} ({group}): {exc}") from None
        parts: list[TextPart | ImagePart] = [TextPart(prompt)]
        for number, image in enumerate(images, start=1):
            parts.append(TextPart(f"Image {number}: {image.label}" if image.label else f"Image {number}"))
            parts.append(image)
        for replicate in range(replicates):
            calls.append(_call(rubric, sample, target, group, replicate, tuple(members), verdict, system, tuple(parts)))
    return SamplePlan(sample, rubric, tuple(calls))


def _image_parts(rubric: Rubric, sample: Sample, target: JudgeTarget) -> list[ImagePart]:
    parts = []
    for slot in rubric.images:
        path = sample.fields.get(slot.field)
        if path is None:
            continue
        try:
            info = image_info(path, slot.label, slot.strip, target.max_image_side)
        except ImageTooLarge:
            raise
        except ImageError as exc:
            if slot.field in rubric.outputs:
                raise UnreadableOutput(slot.field, str(exc)) from None
            raise
        parts.append(ImagePart(slot.field, slot.label, slot.strip, target.max_image_side, Path(path), info))
    return parts


def _images_of(rubric: Rubric, sample: Sample, target: JudgeTarget) -> list[tuple[Path, str | None, bool, int | None]]:
    """The `encoded_image` arguments of each image the sample's calls carry (as `_image_parts`)."""
    return [(sample.fields[slot.field], slot.label, slot.strip, target.max_image_side)
            for slot in rubric.images if sample.fields.get(slot.field) is not None]


def _encode_quietly(image: tuple[Path, str | None, bool, int | None]) -> None:
    """Encode ahead into the encoded-image cache; a failure is raised again, and reported, when
    the sample is compiled."""
    with contextlib.suppress(ImageError):
        encoded_image(*image)


def _call(
    rubric: Rubric,
    sample: Sample,
    target: JudgeTarget,
    group: str,
    replicate: int,
    criteria: tuple[Criterion, ...],
    verdict: VerdictSpec,
    system: str | None,
    parts: tuple[TextPart | ImagePart, ...],
) -> JudgeCall:
    judge = rubric.judge
    texts = tuple((c.id, c.text) for c in criteria)
    material = {
        "model": target.model,
        "api_base": target.api_base,
        "params": {"temperature": judge.temperature, "max_tokens": judge.max_tokens, "structured_output": judge.structured_output},
        "system": system,
        "messages": [
            {"text": p.text} if isinstance(p, TextPart) else {"image_sha256": p.info.sha256, "media_type": p.info.media_type} for p in parts
        ],
        "schema": response_schema(texts, verdict),
        "rubric": {"id": rubric.rubric, "version": str(rubric.version), "namespace": rubric.cache.namespace},
        "criteria": [list(t) for t in texts],  # as rendered for the sample: a template variable's value changes the key
        "replicate": replicate,
    }
    return JudgeCall(
        rubric_id=rubric.rubric,
        rubric_version=str(rubric.version),
        sample_id=sample.id,
        group=group,
        replicate=replicate,
        criteria=criteria,
        verdict=verdict,
        system=system,
        parts=parts,
        model=target.model,
        temperature=judge.temperature,
        max_tokens=judge.max_tokens,
        structured_output=judge.structured_output,
        cache_key=cache_key(material),
    )


def match_rubrics(rubrics: Sequence[Rubric], samples: Iterable[Sample]) -> tuple[list[tuple[Rubric, Sample]], list[Problem]]:
    """Pair each sample with its rubric: a task rubric (`task: <id>`) or the general one."""
    by_task = {r.task: r for r in rubrics if r.task is not None}
    general = [r for r in rubrics if r.task is None]
    pairs, problems, used = [], [], set()
    for sample in samples:
        stem = Path(sample.id).stem
        rubric = by_task.get(sample.id) or by_task.get(stem) or (general[0] if len(general) == 1 else None)
        if rubric is None:
            reason = "several general rubrics match" if len(general) > 1 else "no task rubric has `task: " + sample.id + "`"
            problems.append(
                Problem(
                    sample.source,
                    f"sample {sample.id!r} has no rubric: {reason}",
                    fix="add a task rubric for it or remove it from the manifest",
                )
            )
            continue
        used.add(rubric.task)
        pairs.append((rubric, sample))
    for task in sorted(set(by_task) - used):
        problems.append(
            Problem(
                Location(None),
                f"task rubric for {task!r} matches no sample in the manifest",
                fix="check the `task:` id against the manifest ids",
            )
        )
    return pairs, problems


def compile_without_unreadable_outputs(rubric: Rubric, sample: Sample, target: JudgeTarget, mode: Batching | None = None,
                                        replicates: int = 1) -> SamplePlan:
    """`compile_sample`, with every output image that cannot be read treated as absent.

    An unreadable image from the model is a missing output, scored by the rubric's
    missing-output policy like a file that was never written: the official MedGEN-Bench code
    leaves such a pair out, and one broken file must not stop a 6,000-sample run. The plan
    carries one problem per such image (`unreadable_outputs`), for the run to report.

    Raises:
        ImageError: a dataset image (not an output) cannot be read, or an image is over the pixel limit.
        TemplateRenderError: as `compile_sample`.
    """
    unreadable: list[Problem] = []
    while True:
        try:
            plan = compile_sample(rubric, sample, target, mode, replicates)
        except UnreadableOutput as exc:
            unreadable.append(Problem(sample.source, f"output image cannot be read, treated as absent: {exc}", field=exc.field,
                                      fix="regenerate or remove the image"))
            fields = {**sample.fields, exc.field: None}
            sample = replace(sample, fields=fields, missing_outputs=missing_outputs(fields, rubric.inputs, rubric.outputs, rubric.required_outputs))
            continue
        return replace(plan, unreadable_outputs=tuple(unreadable)) if unreadable else plan


def planning_workers() -> int:
    """Threads that prepare images: one per core (decoding, drawing and PNG encoding run in
    Pillow's C code, which releases the GIL, so threads use every core)."""
    return max(1, min(32, os.cpu_count() or 1))


def plan_samples(
    pairs: Sequence[tuple[Rubric, Sample]], target: JudgeTarget, mode: Batching | None = None, replicates: int = 1, workers: int | None = None
) -> Iterator[SamplePlan | Problem]:
    """Each (rubric, sample) pair's plan, or the problem that stops it, in the pairs' order, as
    soon as it is ready: the pairs are compiled on a thread pool (image load, encode and hash
    on every core), so a consumer can start judging the first samples while later ones are
    still being prepared.

    Args:
        pairs: from `match_rubrics`.
        target, mode, replicates: as for `compile_sample`.
        workers: threads (default: `planning_workers()`).

    Yields:
        A `SamplePlan` (one whose output images cannot be read plans the sample without them and
        lists them in `unreadable_outputs`), or a `Problem` naming the sample's file for a
        dataset image that cannot be encoded or a template that cannot render for it.
    """

    def one(pair: tuple[Rubric, Sample]) -> SamplePlan | Problem:
        rubric, sample = pair
        try:
            return compile_without_unreadable_outputs(rubric, sample, target, mode, replicates)
        except ImageError as exc:
            return Problem(sample.source, str(exc), fix="replace or remove the image")
        except TemplateRenderError as exc:
            return Problem(sample.source, str(exc), fix="guard optional values with {% if ... %} in the template")

    count = workers or planning_workers()
    if count == 1 or len(pairs) < 2:
        yield from map(one, pairs)
        return
    with ThreadPoolExecutor(count, thread_name_prefix="rubric-judge-plan") as pool:
        # The first pair alone, so it is ready soonest and a consumer that sends its first request
        # before asking for more has the cores to itself: its images encoded side by side first
        # (PIL's PNG encoder releases the GIL: two 512-px MedGEN images with label strips take
        # 0.1 s instead of 0.2 s), then compiled from the encoded-image cache. Then the pairs in
        # windows, not all at once: a consumer that stops early leaves little work behind.
        for warming in [pool.submit(_encode_quietly, image) for image in _images_of(*pairs[0], target)]:
            warming.result()
        window = count * 4
        futures = [pool.submit(one, pairs[0])]
        submitted = 1
        for index in range(len(pairs)):
            result = futures[index].result()
            futures[index] = None  # type: ignore[call-overload]  # let the plan's memory go once handed over
            yield result
            while submitted < len(pairs) and submitted - index <= window:
                futures.append(pool.submit(one, pairs[submitted]))
                submitted += 1


def image_header_problems(pairs: Sequence[tuple[Rubric, Sample]], workers: int | None = None) -> list[Problem]:
    """The cheap checks of every image a judge call will carry, before anything is judged: the
    file can be read, is an image format, and declares no more pixels than the limit (only the
    header is read). A file that passes and still fails to decode shows up while planning. An
    output image (the model's) is held only to the pixel limit here: one that cannot be read is
    a missing output (`compile_without_unreadable_outputs`), not a reason to stop the run.

    Returns:
        One problem per unusable image, naming the sample's file and the image.
    """
    checks: list[tuple[Sample, Path, bool]] = []
    for rubric, sample in pairs:
        if sample.missing_outputs or not rubric.judged:
            continue
        checks.extend((sample, Path(path), slot.field in rubric.outputs)
                      for slot in rubric.images if (path := sample.fields.get(slot.field)) is not None)

    def check(item: tuple[Sample, Path, bool]) -> Problem | None:
        sample, path, is_output = item
        try:
            with open(path, "rb") as handle:
                head = handle.read(16)
            if sniff_media_type(head) is None:
                raise ImageError(f"{path} is not a recognised image (PNG, JPEG, WebP, GIF, BMP or TIFF)")
            with open_image(path):
                pass
        except ImageTooLarge as exc:
            return Problem(sample.source, str(exc), fix="replace or remove the image")
        except (OSError, ImageError) as exc:
            if is_output:  # the model's broken image: a missing output, found and reported while planning
                return None
            detail = f"cannot read image {path}: {exc.strerror}" if isinstance(exc, OSError) else str(exc)
            return Problem(sample.source, detail, fix="replace or remove the image")
        return None

    with ThreadPoolExecutor(workers or planning_workers(), thread_name_prefix="rubric-judge-check") as pool:
        return [problem for problem in pool.map(check, checks) if problem is not None]


def build_plan(
    rubrics: Sequence[Rubric], samples: Sequence[Sample], target: JudgeTarget, mode: Batching | None = None, replicates: int = 1
) -> Plan:
    """Every sample's plan at once (images prepared on every core); `plan_samples` streams them."""
    pairs, problems = match_rubrics(rubrics, samples)
    planned = []
    for result in plan_samples(pairs, target, mode, replicates):
        if isinstance(result, Problem):
            problems.append(result)
        else:
            planned.append(result)
    return Plan(tuple(planned), tuple(problems))
