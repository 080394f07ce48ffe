"""Pixel and text metrics for a run: SSIM, PSNR, LPIPS (image.py) and BERTScore (text.py).

`compute_run_metrics` turns a rubric's `metrics:` block and the run's samples into one
`MetricRow` per (sample, metric): values come from the metric cache when the same metric with
the same options already saw the same bytes, otherwise from one batched computation per metric
group, and each value's `pass` condition is applied. A sample whose reference is absent is
outside that metric (MedGEN's image tier has no VQA samples) unless the metric's `when` selects
it; a missing model output, a bad image or an unavailable model is a row with that status and a
detail, never a number -- except an empty text under `empty_text: score_zero`, scored 0 as
bert_score scores it.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rubric_judge.cache.key import cache_key, text_sha256
from rubric_judge.imageio import file_sha256
from rubric_judge.metrics.types import MetricValue
from rubric_judge.planning.samples import Sample
from rubric_judge.rubrics.schema import IMAGE_METRICS, PASS_CONDITION, MetricName, MetricSpec

_COMPARE: dict[str, Callable[[float, float], bool]] = {">=": operator.ge, "<=": operator.le, ">": operator.gt, "<": operator.lt, "==": operator.eq}
METRIC_CACHE_VERSION = 1


@dataclass(frozen=True)
class MetricRow:
    sample_id: str
    metric: str
    value: float | None
    passed: bool | None  # None: no pass condition, or no value
    status: str
    detail: str = ""


@dataclass(frozen=True)
class _GroupWork:
    """One metric group's samples after the cache look-up: what is known, and what to compute."""

    group: list[MetricSpec]
    pairs: list[tuple[str, Any, Any]]  # (sample id, output, reference) of every sample it applies to
    names: list[str]  # the metric names the group produces
    keys: dict[str, str | None]  # metric cache key per sample id (None: not cacheable)
    values: dict[tuple[str, str], MetricValue]  # (sample id, name) -> value, from the cache so far
    todo: list[tuple[str, Any, Any]]  # the pairs to compute


def passes(condition: str | None, value: float | None) -> bool | None:
    if condition is None or value is None:
        return None
    match = PASS_CONDITION.match(condition)
    if match is None:  # validated when the rubric loaded
        raise ValueError(f"bad pass condition {condition!r}")
    return _COMPARE[match.group(1)](value, float(match.group(2)))


class MetricCache:
    """Metric values by key, over the cache folder's metric value store (cache/metric_values.py).

    Args:
        directory: the cache folder.
        writes: False for `--cache read-only`: nothing is created or written.
    """

    def __init__(self, directory: Path, writes: bool = True):
        from rubric_judge.cache.metric_values import MetricValueStore

        self._store = MetricValueStore(Path(directory), writes)
        self.writes = writes

    def get(self, key: str) -> MetricValue | None:
        value = self._store.get(key)
        try:
            return MetricValue(**value) if value is not None else None
        except TypeError:  # an entry from another version of MetricValue
            return None

    def put(self, key: str, value: MetricValue) -> None:
        # Only computed values are kept: a missing file or an unavailable model may be fixed.
        if value.status == "ok":
            self._store.put(key, value.__dict__)

    def close(self) -> None:
        self._store.close()


def compute_run_metrics(
    specs: Sequence[MetricSpec],
    samples: Sequence[Sample],
    device: str = "auto",
    cache: MetricCache | None = None,
    on_progress: Callable[[int], None] | None = None,
) -> list[MetricRow]:
    """Every metric of every applicable sample, batched per group, cached per value.

    Image metrics over the same output/reference pair and preset form one group, so each image
    is decoded once for SSIM, PSNR and LPIPS together.
    """
    pending: list[_GroupWork] = []
    for group in metric_groups(specs):
        first = group[0]
        pairs = [_texts(first, s) for s in samples if first.applies_to(s.fields)]
        # `empty_text: score_zero` scores a missing text as bert_score scores an empty one (0).
        scores_missing = first.empty_text == "score_zero" and first.metric not in IMAGE_METRICS
        names = [name for spec in group for name in _metric_names(spec)]
        keys = {sample_id: _key(group, output, reference) for sample_id, output, reference in pairs}
        values: dict[tuple[str, str], MetricValue] = {}
        todo = []
        for sample_id, output, reference in pairs:
            if output in (None, "") and not scores_missing:
                values.update({(sample_id, name): MetricValue(None, "missing_output", f"the model produced no {first.output}") for name in names})
                continue
            key = keys[sample_id]
            cached = {name: cache.get(f"{key}:{name}") for name in names} if cache is not None and key else {}
            if cached and all(v is not None for v in cached.values()):
                values.update({(sample_id, name): v for name, v in cached.items()})
            else:
                todo.append((sample_id, output, reference))
        pending.append(_GroupWork(group, pairs, names, keys, values, todo))
    _load_text_models_meanwhile(pending, device)
    rows: list[MetricRow] = []
    for work in pending:
        group, pairs, names, keys, values, todo = work.group, work.pairs, work.names, work.keys, work.values, work.todo
        if todo:
            computed = _compute(group, todo, device)
            values.update(computed)
            if cache is not None:
                for (sample_id, name), value in computed.items():
                    if keys.get(sample_id):
                        cache.put(f"{keys[sample_id]}:{name}", value)
        conditions = {spec.metric.value: spec.pass_condition for spec in group}
        for sample_id, _, _ in pairs:
            for name in names:
                value = values.get((sample_id, name), MetricValue(None, "error", "the metric produced no value"))
                passed = passes(conditions.get(name), value.value) if value.status == "ok" else None
                rows.append(MetricRow(sample_id, name, value.value, passed, value.status, value.detail))
        if on_progress:
            on_progress(len(pairs))
    return rows


def _load_text_models_meanwhile(pending: Sequence[_GroupWork], device: str) -> None:
    """Start loading the BERTScore model of each text group with work to do, on a thread of its
    own, when another group's work comes first: reading the weights (0.3-0.9 s for a BERT
    checkpoint; 4-6 s of mostly single-threaded CPU for one that needs transformers' imports)
    then overlaps the image metrics, whose torch kernels leave a core idle much of the time,
    instead of following them. `get_bertscorer` keeps the
    loaded model; the text group's own call then finds it, or waits for the load to end. A load
    that fails here fails again there, where its error becomes the rows' `unavailable` status."""
    import contextlib
    import threading

    work_before = False
    for work in pending:
        if not work.todo:
            continue
        group = work.group
        if group[0].metric not in IMAGE_METRICS and work_before:
            from rubric_judge.metrics.text import BertScoreOptions, get_bertscorer

            options = BertScoreOptions(**({"model": group[0].model} if group[0].model else {}), num_layers=group[0].num_layers)

            def load(options: BertScoreOptions = options) -> None:
                with contextlib.suppress(Exception):  # reported by the group's own call (see above)
                    get_bertscorer(options, device)

            threading.Thread(target=load, name="rubric-judge-bertscore-load", daemon=True).start()
        work_before = True


def metric_groups(specs: Sequence[MetricSpec]) -> list[list[MetricSpec]]:
    groups: dict[tuple, list[MetricSpec]] = {}
    for spec in specs:
        if spec.metric in IMAGE_METRICS:
            key: tuple = ("image", spec.output, spec.reference, spec.preset or "medgen", _when_key(spec))
        else:
            key = ("text", spec.output, spec.reference, spec.model, spec.num_layers, spec.metric.value, _when_key(spec), spec.empty_text,
                   spec.text_form)
        groups.setdefault(key, []).append(spec)
    return list(groups.values())


def _when_key(spec: MetricSpec) -> tuple:
    """`when` as a hashable group key: specs that apply to different samples are separate groups."""
    return tuple(sorted((k, tuple(v)) for k, v in (spec.when or {}).items()))


def _metric_names(spec: MetricSpec) -> tuple[str, ...]:
    if spec.metric is MetricName.bertscore:
        from rubric_judge.metrics.text import BERTSCORE_METRICS

        return BERTSCORE_METRICS
    return (spec.metric.value,)


def _compute(group: list[MetricSpec], pairs: list[tuple[str, Any, Any]], device: str) -> dict[tuple[str, str], MetricValue]:
    first = group[0]
    if first.metric in IMAGE_METRICS:
        from rubric_judge.metrics.image import ImageMetricOptions, compute_image_metrics

        lpips_net = next((spec.model for spec in group if spec.metric is MetricName.lpips and spec.model), "alex")
        options = ImageMetricOptions(preset=first.preset or "medgen", lpips_net=lpips_net)
        return compute_image_metrics(pairs, [spec.metric.value for spec in group], options, device)
    from rubric_judge.metrics.text import BertScoreOptions, compute_bertscore

    options = BertScoreOptions(**({"model": first.model} if first.model else {}), num_layers=first.num_layers)
    return compute_bertscore(pairs, options, device, empty_text=first.empty_text)


def _texts(spec: MetricSpec, sample: Sample) -> tuple[str, Any, Any]:
    """(sample id, output, reference) as the metric compares them: a text metric with
    `text_form: medgen_eval` gets both texts in the official MedGEN-Bench evaluation's form (a
    missing output stays missing, unless `empty_text: score_zero` scores it as "")."""
    output, reference = sample.fields.get(spec.output), sample.fields.get(spec.reference)
    if spec.text_form == "medgen_eval" and spec.metric not in IMAGE_METRICS:
        from rubric_judge.metrics.medgen_text import medgen_eval_text

        if output not in (None, "") or spec.empty_text == "score_zero":
            output = medgen_eval_text(output, sample.fields)
        reference = medgen_eval_text(reference, sample.fields, answer=True)
    return sample.id, output, reference


def _key(group: list[MetricSpec], output: Any, reference: Any) -> str | None:
    """None when an input is missing or unreadable: such values are never cached."""
    digests = []
    for value in (output, reference):
        if value in (None, ""):
            return None
        if isinstance(value, Path):
            try:
                digests.append(file_sha256(value))
            except OSError:
                return None
        else:
            digests.append(text_sha256(str(value)))
    material = {
        "metric_cache_version": METRIC_CACHE_VERSION,
        "metrics": sorted([spec.metric.value, spec.preset or "medgen", spec.model or "", spec.num_layers or 0] for spec in group),
        "inputs": digests,
    }
    if any(spec.empty_text != "error" for spec in group):
        # An empty text's 0 under score_zero must never answer a rubric that reports it as an error.
        material["empty_text"] = sorted({spec.empty_text for spec in group})
    return cache_key(material)  # the verdict cache's key scheme: canonical JSON, sha256
