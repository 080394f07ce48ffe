"""`plan()`: what scoring a dataset would cost, per batching mode, before anything is paid.

Everything here is offline: prices come from litellm's bundled map, tokens are estimates, and
the verdict cache is only read, to tell the calls that are already paid for from those a run
would pay for. A batching mode the rubric's templates cannot be used with (a prompt that reads
`dimension.name` has no dimension in per_sample mode) says why instead of counting zero calls,
and the metric work (samples per metric, and whether the weights a metric needs are present)
is listed beside the judge's.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from rubric_judge.errors import Problem

if TYPE_CHECKING:
    from rubric_judge.planning.samples import Sample
    from rubric_judge.rubrics.schema import Rubric


@dataclass(frozen=True)
class ModePlan:
    """The judge calls of one batching mode and what they would cost.

    Attributes:
        mode: per_criterion | per_dimension | per_sample.
        configured: whether the rubric asks for this mode (what `score` would use).
        calls, criteria, images: judge calls, criterion verdicts and images they carry.
        prompt_tokens, completion_tokens: estimated over all calls.
        cost_usd: estimated over all calls; None when the judge has no known price.
        cached_calls: calls whose answer is already in the verdict cache.
        to_pay_cost_usd: estimated cost of the calls not in the cache.
        batch_to_pay_cost_usd: what the calls not in the cache would cost through the provider's
            batch API (`score --batch`); None when the price is unknown.
        unusable: why this mode cannot be used for some samples the rubric's own mode plans
            (its templates fail to render in it), with how many; None when it can. The counts
            above then cover only the samples it could plan.
    """

    mode: str
    configured: bool
    calls: int
    criteria: int
    images: int
    prompt_tokens: int
    completion_tokens: int
    cost_usd: float | None
    cached_calls: int
    to_pay_cost_usd: float | None
    unusable: str | None = None
    batch_to_pay_cost_usd: float | None = None

    @property
    def to_pay_calls(self) -> int:
        """Calls a run in this mode would pay for (not in the verdict cache)."""
        return self.calls - self.cached_calls


@dataclass(frozen=True)
class WeightState:
    """One set of weights a metric needs: its name, whether it is present, and how to get it."""

    name: str
    present: bool
    how_to_get: str = ""


@dataclass(frozen=True)
class MetricWork:
    """What one metric of the rubric computes.

    Attributes:
        metric: ssim | psnr | lpips | bertscore.
        output, reference: the sample fields it compares.
        pairs: samples it computes a value for (the metric applies and the output is there).
        missing_outputs: samples it applies to whose output is missing (no value; by the policy).
        weights: the weights it needs, each present or not (none for SSIM and PSNR); an absent
            one leaves the metric "not computed" (`rubric-judge weights --download` fetches it).
    """

    metric: str
    output: str
    reference: str
    pairs: int
    missing_outputs: int
    weights: tuple[WeightState, ...] = ()


@dataclass(frozen=True)
class Plan:
    """What `score` would do for a rubric over a dataset.

    Attributes:
        rubric_id, rubric_version: the rubric.
        judge_model: the judge whose calls and prices these are.
        samples: samples in the dataset.
        modes: one `ModePlan` per batching mode, the configured one marked.
        missing_outputs: ids of samples with no model output (no call; scored by the policy).
        missing_output_policy: the rubric's `scoring.missing_output` (fail | skip); None for a
            metrics-only rubric.
        warnings: problems that would stop `score` (an undecodable dataset image, a template
            error), and the model's output images that cannot be read (scored as missing).
        judged: whether a judge scores the rubric (False: metrics only, no calls in any mode).
        metrics: the metric work, one entry per metric of the rubric.
        batch_price_assumed: the batch prices are half the live ones (litellm's map has no
            batch price for the judge), not the provider's published batch prices.
    """

    rubric_id: str
    rubric_version: str
    judge_model: str
    samples: int
    modes: tuple[ModePlan, ...]
    missing_outputs: tuple[str, ...]
    missing_output_policy: str | None
    warnings: tuple[Problem, ...]
    judged: bool = True
    metrics: tuple[MetricWork, ...] = ()
    batch_price_assumed: bool = True

    @property
    def configured(self) -> ModePlan:
        """The mode `score` would use."""
        return next(m for m in self.modes if m.configured)


def plan(
    rubric: str | Path,
    *,
    data: str | Path,
    outputs: str | Path | None = None,
    judge: str | None = None,
    api_base: str | None = None,
    replicates: int = 1,
    max_image_side: int | None = None,
    cache_dir: str | Path | None = None,
) -> Plan:
    """Count and price the judge calls of every batching mode, reading the cache for what is paid.

    Args:
        rubric: a rubric file, a directory of task rubrics, or `builtin:...`.
        data: the dataset manifest (JSONL).
        outputs: the model's outputs (directory or JSONL); without them every output counts as
            present, so the plan is the full price.
        judge: litellm model string of the judge (default: the rubric's); "offline" for the
            built-in offline judge (its cache keys, and $0).
        api_base: the judge server's URL, part of the cache key (credentials in it are not).
        replicates: judge every call this many times.
        max_image_side: downscale images as `score` would.
        cache_dir: the verdict cache to read (default: `$RUBRIC_JUDGE_CACHE_DIR` or ~/.cache/rubric-judge).

    Returns:
        A `Plan`.

    Raises:
        UserError: the rubric, the manifest or the outputs are invalid.
    """
    from rubric_judge.cache.verdicts import CacheMode, VerdictCache, default_cache_dir
    from rubric_judge.planning.compile import build_plan
    from rubric_judge.planning.estimate import batch_price, batch_rates, estimate_calls
    from rubric_judge.planning.job import load_job
    from rubric_judge.planning.target import judge_target
    from rubric_judge.rubrics.schema import Batching

    job = load_job(Path(rubric), Path(data), Path(outputs) if outputs is not None else None)
    base = job.rubrics[0]
    target = judge_target(base, judge, api_base, max_image_side)
    model = target.model
    configured = base.judge.mode
    plans = {mode: build_plan(job.rubrics, job.samples, target, mode, replicates) for mode in Batching}
    compiled = plans[configured]
    # A sample the rubric's own mode plans but another mode cannot is that mode's problem (its
    # templates); problems every mode shares (an unreadable image) are the plan's warnings.
    planned_here = {str(sp.sample.source) for sp in compiled.samples}
    modes = []
    with VerdictCache(Path(cache_dir) if cache_dir is not None else default_cache_dir(), CacheMode.read_only) as cache:
        for mode, mode_plan in plans.items():
            calls = mode_plan.calls
            uncached = [c for c in calls if cache.get(c.cache_key) is None]
            full = estimate_calls(calls, model)
            to_pay = estimate_calls(uncached, model) if len(uncached) != len(calls) else full
            own = [p for p in mode_plan.problems if str(p.location) in planned_here] if mode is not configured else []
            unusable = (f"fails for {len(own)} of {len(job.samples)} samples, e.g. {own[0].message}" if own else None)
            modes.append(ModePlan(mode.value, mode is configured, full.calls, full.criteria, full.images, full.prompt_tokens,
                                  full.completion_tokens, full.cost_usd, len(calls) - len(uncached), to_pay.cost_usd, unusable,
                                  batch_price(model, to_pay.prompt_tokens, to_pay.completion_tokens)))
    return Plan(job.rubric_id, job.rubric_version, model if base.judged else "none", len(job.samples), tuple(modes),
                tuple(sp.sample.id for sp in compiled.samples if sp.unjudged), base.scoring.missing_output.value if base.scoring else None,
                (*compiled.problems, *(p for sp in compiled.samples for p in sp.unreadable_outputs)), base.judged,
                metric_work(base, job.samples), batch_rates(model)[1])


def metric_work(rubric: Rubric, samples: Sequence[Sample]) -> tuple[MetricWork, ...]:
    """Per metric of `rubric`: the samples it would compute, those missing the output, and the
    weights it needs with whether each is present (no file is read but the weights' locations).

    Args:
        rubric: the run's base rubric (its `metrics:`).
        samples: the run's samples.

    Returns:
        One `MetricWork` per metric, in the rubric's order.
    """
    if not rubric.metrics:
        return ()
    from rubric_judge.metrics.weights import bertscore_entry, lpips_entries
    from rubric_judge.rubrics.schema import MetricName

    work = []
    for spec in rubric.metrics:
        applies = [s for s in samples if spec.applies_to(s.fields)]
        missing = sum(1 for s in applies if s.fields.get(spec.output) in (None, ""))
        if spec.metric is MetricName.lpips:
            entries = lpips_entries(spec.model or "alex")
        elif spec.metric is MetricName.bertscore:
            from rubric_judge.metrics.text import DEFAULT_BERTSCORE_MODEL

            entries = [bertscore_entry(spec.model or DEFAULT_BERTSCORE_MODEL)]
        else:
            entries = []
        weights = tuple(WeightState(e.name, e.present, e.how_to_get) for e in entries)
        work.append(MetricWork(spec.metric.value, spec.output, spec.reference, len(applies) - missing, missing, weights))
    return tuple(work)
