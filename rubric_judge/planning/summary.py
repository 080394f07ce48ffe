"""`plan()`: what scoring a dataset would cost, per batching mode, before anything is paid.

Everything here is offline: prices come from litellm's bundled map, tokens are estimates, and
the verdict cache is only read, to tell the calls that are already paid for from those a run
would pay for.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from rubric_judge.errors import Problem


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


@dataclass(frozen=True)
class Plan:
    """What `score` would do for a rubric over a dataset.

    Attributes:
        rubric_id, rubric_version: the rubric.
        judge_model: the judge whose calls and prices these are.
        samples: samples in the dataset.
        modes: one `ModePlan` per batching mode, the configured one marked.
        missing_outputs: ids of samples with no model output (no call; scored by the policy).
        missing_output_policy: the rubric's `scoring.missing_output` (fail | skip).
        warnings: problems that would stop `score` (an undecodable image, a template error).
    """

    rubric_id: str
    rubric_version: str
    judge_model: str
    samples: int
    modes: tuple[ModePlan, ...]
    missing_outputs: tuple[str, ...]
    missing_output_policy: str
    warnings: tuple[Problem, ...]

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
        judge: litellm model string of the judge (default: the rubric's).
        api_base: the judge server's URL, part of the cache key.
        replicates: judge every call this many times.
        max_image_side: downscale images as `score` would.
        cache_dir: the verdict cache to read (default: `$RUBRIC_JUDGE_CACHE_DIR` or ~/.cache/rubric-judge).

    Returns:
        A `Plan`.

    Raises:
        UserError: the rubric, the manifest or the outputs are invalid.
    """
    from rubric_judge.cache.verdicts import CacheMode, VerdictCache, default_cache_dir
    from rubric_judge.planning.compile import JudgeTarget, build_plan
    from rubric_judge.planning.estimate import estimate_calls
    from rubric_judge.planning.job import load_job
    from rubric_judge.rubrics.schema import Batching

    job = load_job(Path(rubric), Path(data), Path(outputs) if outputs is not None else None)
    base = job.rubrics[0]
    model = judge or base.judge.model
    target = JudgeTarget(model, api_base, max_image_side)
    configured = base.judge.mode
    modes, compiled = [], None
    with VerdictCache(Path(cache_dir) if cache_dir is not None else default_cache_dir(), CacheMode.read_only) as cache:
        for mode in Batching:
            mode_plan = build_plan(job.rubrics, job.samples, target, mode, replicates)
            if mode is configured:
                compiled = mode_plan
            calls = mode_plan.calls
            uncached = [c for c in calls if cache.get(c.cache_key) is None]
            full = estimate_calls(calls, model)
            to_pay = estimate_calls(uncached, model) if len(uncached) != len(calls) else full
            modes.append(ModePlan(mode.value, mode is configured, full.calls, full.criteria, full.images, full.prompt_tokens,
                                  full.completion_tokens, full.cost_usd, len(calls) - len(uncached), to_pay.cost_usd))
    assert compiled is not None
    return Plan(job.rubric_id, job.rubric_version, model, len(job.samples), tuple(modes),
                tuple(sp.sample.id for sp in compiled.samples if sp.unjudged), base.scoring.missing_output.value if base.scoring else None, tuple(compiled.problems))
